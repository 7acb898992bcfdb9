import ArgumentParser
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// `--profile`: the cold FleetQuery run taken apart, each part a contestant of its own (same
/// concurrency, results summed in Swift where FleetQuery would combine, so every result is
/// compared as well):
///
/// - `profile_parallel_connect`: no router — `Database.connect` with each tenant's login, the
///   aggregate, close; `concurrency` tenants at a time (the floor of any cold fan-out);
/// - `profile_router`: a new router (``Operations/router(keyring:monitor:configure:)``, the
///   configured caps), the aggregate through `withConnection(tenant:intent:)`, no transaction;
/// - `profile_fleet_query_rows`: ``Operations/fleetQuery(_:onBatch:)`` without a combine SQL (the
///   read-only transaction, the describe and type queries, the text casts; no COPY, no scratch session).
extension FleetQueryBench {
    static func profileContestants(
        _ operations: Operations, keyring: Keyring, ids: [TenantID], tenants: [PostgresURL], concurrency: Int
    ) -> [Contestant] {
        [
            Contestant(name: "profile_parallel_connect") {
                var rows: [(String, Int, Int)] = []
                let seconds = try await Bench.time {
                    let perTenant = try await concurrentMap(tenants, concurrency: concurrency) { url in
                        try await Database.withConnection(url, logger: Bench.logger) { try await aggregate(on: $0) }
                    }
                    rows = perTenant.flatMap { $0 }
                }
                return (seconds * 1000, combine(rows))
            },
            Contestant(name: "profile_router") {
                var rows: [(String, Int, Int)] = []
                let seconds = try await Bench.time {
                    let router = operations.router(keyring: keyring, monitor: nil)
                    let perTenant = try await router.running {
                        try await concurrentMap(ids, concurrency: concurrency) { id in
                            try await router.withConnection(tenant: id, intent: .read) { try await aggregate(on: $0.connection) }
                        }
                    }
                    rows = perTenant.flatMap { $0 }
                }
                return (seconds * 1000, combine(rows))
            },
            Contestant(name: "profile_fleet_query_rows") {
                var query = FleetQuery(sql: perTenantSQL)
                query.concurrency = concurrency
                var result: FleetQuery.Result?
                let seconds = try await Bench.time { result = try await operations.fleetQuery(query) }
                guard let result, result.answered == ids.count, result.columns.map(\.name) == ["tenant_id", "state", "n", "cents"] else {
                    throw ValidationError("FleetQuery without combine: unexpected result")
                }
                let rows = result.rows.map { row in (row[1] ?? "", Int(row[2] ?? "") ?? -1, Int(row[3] ?? "") ?? -1) }
                return (seconds * 1000, combine(rows))
            },
        ]
    }
}
