import ArgumentParser
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// The Tenantry contestants of the fleet-query benchmark.
extension FleetQueryBench {
    /// The query every Tenantry contestant runs: the per-tenant aggregate, combined by `combineSQL`.
    static func query(concurrency: Int?) -> FleetQuery {
        var query = FleetQuery(sql: perTenantSQL, combine: combineSQL)
        if let concurrency { query.concurrency = concurrency }
        return query
    }

    /// The library's default concurrency.
    static var defaultConcurrency: Int { FleetQuery(sql: perTenantSQL).concurrency }

    /// **Cold**, as `tenantry query --combine` runs it: ``Operations/fleetQuery(_:onBatch:)``, which
    /// makes and runs a router of its own (the configured pool caps: 50 connections per server by
    /// default), so every run opens its tenant connections anew — like the sequential loop and the
    /// fdw anchor in a new session.
    static func fleetQueryContestant(_ operations: Operations, tenants: Int, concurrency: Int?) -> Contestant {
        let query = query(concurrency: concurrency)
        return Contestant(name: "fleet_query_c\(query.concurrency)") {
            var result: FleetQuery.Result?
            let seconds = try await Bench.time { result = try await operations.fleetQuery(query) }
            return (seconds * 1000, try combined(result!, tenants: tenants))
        }
    }

    /// **Warm**, as a long-running service would run it: ``FleetQuery/run(router:combineURL:logger:onBatch:)``
    /// on `router`, which stays running across runs with a cap that holds a connection per tenant
    /// (compare with the fdw anchor's cached session and the loop over open connections).
    static func warmContestant(_ router: TenantRouter, combineURL: PostgresURL, tenants: Int, concurrency: Int?) -> Contestant {
        let query = query(concurrency: concurrency)
        return Contestant(name: "fleet_query_warm_c\(query.concurrency)") {
            var result: FleetQuery.Result?
            let seconds = try await Bench.time {
                result = try await query.run(router: router, combineURL: combineURL, logger: Bench.logger)
            }
            return (seconds * 1000, try combined(result!, tenants: tenants))
        }
    }

    /// A long-lived router over the fleet whose default server's cap holds `tenants` connections,
    /// one per tenant at most, that stay open, unchecked, with their routes cached, for the whole
    /// benchmark (10 minutes each: the defaults — 30 s idle, a `SELECT 1` check after 5 s idle, 30 s
    /// route cache — would expire between two runs of the benchmark and measure a half-cold pool).
    static func warmRouter(_ operations: Operations, keyring: Keyring, tenants: Int) -> TenantRouter {
        operations.router(keyring: keyring, monitor: nil) { configuration in
            configuration.pool.maxConnections = tenants + 10
            configuration.pool.maxPerKey = 1
            configuration.pool.idleTimeout = .seconds(600)
            configuration.pool.healthCheckAfter = .seconds(600)
            configuration.routeTTL = .seconds(600)
        }
    }

    /// The combined rows as the anchors give them; every tenant must have answered.
    static func combined(_ result: FleetQuery.Result, tenants: Int) throws -> Combined {
        guard result.combined, result.answered == tenants, result.missing.isEmpty else {
            throw ValidationError("FleetQuery answered for \(result.answered) of \(tenants) tenants (missing: \(result.missing.count))")
        }
        return result.rows.map { $0.map { $0 ?? "NULL" } }
    }
}
