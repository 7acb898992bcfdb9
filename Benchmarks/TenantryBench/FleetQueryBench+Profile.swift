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
///   read-only transaction, the describe and type queries, the text casts; no COPY, no scratch session);
/// - `profile_router_warm`: the aggregate through `withConnection(tenant:intent:)` of the warm
///   router (one statement per tenant: the floor of a warm fan-out through the router);
/// - `profile_router_warm_tx`: the same in `withTransaction` with `SET TRANSACTION READ ONLY` and a
///   `statement_timeout` set in one statement (what a leaner FleetQuery session would send);
/// - `profile_router_warm_fleet_statements`: the statements FleetQuery's session sends per tenant
///   (`SET TRANSACTION READ ONLY`, `set_config('statement_timeout')`, the describe query, the
///   `format_type` lookup, the query with its columns cast to text), sent from here through
///   `withTransaction` on the warm router;
/// - `profile_router_warm_lean`: the same with the two settings in one statement and the describe
///   and type lookup left out (done once, as a per-run or per-schema-version cache would);
/// - `profile_fleet_query_rows_warm`: ``FleetQuery/run(router:combineURL:logger:onBatch:)`` on the
///   warm router without a combine SQL (its difference to `fleet_query_warm_…` is the combine step).
extension FleetQueryBench {
    static func profileContestants(
        _ operations: Operations, keyring: Keyring, ids: [TenantID], tenants: [PostgresURL], concurrency: Int,
        warm: TenantRouter
    ) -> [Contestant] {
        [
            Contestant(name: "profile_router_warm") {
                var rows: [(String, Int, Int)] = []
                let seconds = try await Bench.time {
                    rows = try await concurrentMap(ids, concurrency: concurrency) { id in
                        try await warm.withConnection(tenant: id, intent: .read) { try await aggregate(on: $0.connection) }
                    }.flatMap { $0 }
                }
                return (seconds * 1000, combine(rows))
            },
            Contestant(name: "profile_router_warm_tx") {
                var rows: [(String, Int, Int)] = []
                let seconds = try await Bench.time {
                    rows = try await concurrentMap(ids, concurrency: concurrency) { id in
                        try await warm.withTransaction(tenant: id, intent: .read) { routed in
                            try await routed.connection.query(
                                "SELECT set_config('transaction_read_only', 'on', true), set_config('statement_timeout', '30000', true)",
                                logger: Bench.logger)
                            return try await aggregate(on: routed.connection)
                        }
                    }.flatMap { $0 }
                }
                return (seconds * 1000, combine(rows))
            },
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
            Contestant(name: "profile_router_warm_fleet_statements") {
                let rows = try await timedRows {
                    try await concurrentMap(ids, concurrency: concurrency) { id in
                        try await warm.withTransaction(tenant: id, intent: .read) { routed in
                            try await fleetStatements(routed.connection, lean: false)
                        }
                    }.flatMap { $0 }
                }
                return (rows.ms, combine(rows.rows))
            },
            Contestant(name: "profile_router_warm_lean") {
                let rows = try await timedRows {
                    try await concurrentMap(ids, concurrency: concurrency) { id in
                        try await warm.withTransaction(tenant: id, intent: .read) { routed in
                            try await fleetStatements(routed.connection, lean: true)
                        }
                    }.flatMap { $0 }
                }
                return (rows.ms, combine(rows.rows))
            },
            Contestant(name: "profile_fleet_query_rows_warm") {
                var query = FleetQuery(sql: perTenantSQL)
                query.concurrency = concurrency
                var result: FleetQuery.Result?
                let seconds = try await Bench.time { result = try await query.run(router: warm, logger: Bench.logger) }
                return (seconds * 1000, try rowsCombined(result, tenants: ids.count))
            },
            Contestant(name: "profile_fleet_query_rows") {
                var query = FleetQuery(sql: perTenantSQL)
                query.concurrency = concurrency
                var result: FleetQuery.Result?
                let seconds = try await Bench.time { result = try await operations.fleetQuery(query) }
                return (seconds * 1000, try rowsCombined(result, tenants: ids.count))
            },
        ]
    }

    /// FleetQuery's uncombined rows (`tenant_id, state, n, cents`) summed in Swift.
    static func rowsCombined(_ result: FleetQuery.Result?, tenants: Int) throws -> Combined {
        guard let result, result.answered == tenants, result.columns.map(\.name) == ["tenant_id", "state", "n", "cents"] else {
            throw ValidationError("FleetQuery without combine: unexpected result")
        }
        return combine(result.rows.map { row in (row[1] ?? "", Int(row[2] ?? "") ?? -1, Int(row[3] ?? "") ?? -1) })
    }

    static func timedRows(
        _ body: () async throws -> [(String, Int, Int)]
    ) async throws -> (ms: Double, rows: [(String, Int, Int)]) {
        var rows: [(String, Int, Int)] = []
        let seconds = try await Bench.time { rows = try await body() }
        return (seconds * 1000, rows)
    }

    /// FleetQuery's per-tenant statements (FleetSession.restrict and FleetSession.read, as of
    /// their first version), or with `lean` the restriction in one statement and no describe.
    static func fleetStatements(_ connection: PostgresConnection, lean: Bool) async throws -> [(String, Int, Int)] {
        let logger = Bench.logger
        if lean {
            try await connection.query(
                "SELECT set_config('transaction_read_only', 'on', true), set_config('statement_timeout', '30000', true)",
                logger: logger)
        } else {
            try await connection.query("SET TRANSACTION READ ONLY", logger: logger)
            try await connection.query("SELECT set_config('statement_timeout', '30000', true)", logger: logger)
            let describe = """
                SELECT fleet_query.* FROM (VALUES (1)) AS fleet_one (one) LEFT JOIN (SELECT * FROM (
                \(perTenantSQL)
                ) AS fleet_inner LIMIT 0) AS fleet_query ON true
                """
            var oids: [Int64] = []
            for try await row in try await connection.query(PostgresQuery(unsafeSQL: describe), logger: logger) {
                for cell in row { oids.append(Int64(cell.dataType.rawValue)) }
            }
            let types = try await connection.query("""
                SELECT format_type(t.oid, NULL), t.typnamespace = 'pg_catalog'::regnamespace
                FROM unnest(\(oids)::bigint[]) WITH ORDINALITY AS u (type_oid, position) JOIN pg_type t ON t.oid = u.type_oid::oid
                ORDER BY u.position
                """, logger: logger)
            for try await _ in types.decode((String, Bool).self) {}
        }
        let main = """
            SELECT fleet_query.fleet_c1::text, fleet_query.fleet_c2::text, fleet_query.fleet_c3::text FROM (
            \(perTenantSQL)
            ) AS fleet_query (fleet_c1, fleet_c2, fleet_c3)
            """
        var rows: [(String, Int, Int)] = []
        for try await (state, n, cents) in try await connection.query(PostgresQuery(unsafeSQL: main), logger: logger)
            .decode((String, String, String).self) {
            rows.append((state, Int(n) ?? -1, Int(cents) ?? -1))
        }
        return rows
    }
}
