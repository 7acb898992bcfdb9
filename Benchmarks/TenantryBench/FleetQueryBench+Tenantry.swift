import ArgumentParser
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// The Tenantry contestant of the fleet-query benchmark.
extension FleetQueryBench {
    /// ``FleetQuery`` over every tenant with `concurrency` (nil: the library's default).
    static func fleetQueryContestant(_ operations: Operations, ids: [TenantID], concurrency: Int?) -> Contestant {
        Contestant(name: "fleet_query_c\(concurrency.map(String.init) ?? "default")") {
            throw ValidationError("FleetQuery is not in this build yet")
        }
    }
}
