import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// The fleet the fleet-query benchmark asks: N provisioned, dedicated tenant databases (``BenchFleet``,
/// from the migration below), each holding `rows` HandyShop-like repairs whose state mix and prices
/// differ per tenant, and, for the `postgres_fdw` anchor, one database holding a foreign server,
/// user mapping and foreign table per tenant and a `UNION ALL` view over them.
extension FleetQueryBench {
    /// The tenant schema (fleet migration V1): repairs with a `state`.
    static let migration = MigrationFile(version: 1, name: "repairs", sql: """
        CREATE TABLE repairs (
            id bigint PRIMARY KEY,
            state text NOT NULL,
            price_cents bigint NOT NULL,
            received_at timestamptz NOT NULL
        );
        CREATE INDEX repairs_state ON repairs (state);
        """)

    /// The repair states (HandyShop's `repair_status`).
    static let states = ["received", "diagnosed", "waiting_parts", "in_repair", "ready", "done"]

    /// Fills tenant number `index`'s `repairs` with `rows` rows (deterministic, different per
    /// tenant), then `VACUUM ANALYZE`, as the admin login.
    static func fill(_ url: PostgresURL, index: Int, rows: Int) async throws {
        let states = "ARRAY[\(Self.states.map { SchemaDDL.literal($0) }.joined(separator: ", "))]"
        try await Database.withConnection(url, logger: Bench.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO repairs
                SELECT i, (\(states))[1 + (i * 7 + \(index) * 13 + (i * \(index)) % 11) % \(Self.states.count)],
                       500 + (i * 37 + \(index) * 101) % 20000,
                       timestamptz '2026-01-01 00:00:00+00' + i * interval '17 minutes'
                FROM generate_series(1, \(rows)) i
                """), logger: Bench.logger)
            try await connection.query("VACUUM ANALYZE repairs", logger: Bench.logger)
        }
    }

    /// The fdw anchor's database: `postgres_fdw`, then per tenant a foreign server
    /// (`async_capable 'true'`, `fetch_size` large enough for one round trip), a user mapping with
    /// the tenant's own login (as the router logs in) and a foreign table, and the view
    /// `all_repairs` = `UNION ALL` of the foreign tables. Returns the seconds it took.
    static func makeForeignTables(admin: PostgresURL, tenants: [PostgresURL], rows: Int) async throws -> Double {
        try await Self.execute("CREATE DATABASE \(fdwDatabase)", on: admin)
        return try await Bench.time {
            try await Database.withConnection(admin.with(database: fdwDatabase), logger: Bench.logger) { connection in
                try await connection.query("CREATE EXTENSION postgres_fdw", logger: Bench.logger)
                var selects: [String] = []
                for (offset, tenant) in tenants.enumerated() {
                    let server = "t_\(offset + 1)"
                    let table = "repairs_\(offset + 1)"
                    let options = [
                        "host": tenant.host, "port": "\(tenant.port)", "dbname": tenant.database,
                        "async_capable": "true", "fetch_size": "\(max(100, rows))",
                    ].sorted { $0.key < $1.key }.map { "\($0.key) \(SchemaDDL.literal($0.value))" }.joined(separator: ", ")
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        CREATE SERVER \(server) FOREIGN DATA WRAPPER postgres_fdw OPTIONS (\(options))
                        """), logger: Bench.logger)
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        CREATE USER MAPPING FOR CURRENT_USER SERVER \(server)
                        OPTIONS (user \(SchemaDDL.literal(tenant.user)), password \(SchemaDDL.literal(tenant.password ?? "")))
                        """), logger: Bench.logger)
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        CREATE FOREIGN TABLE \(table) (id bigint, state text, price_cents bigint, received_at timestamptz)
                        SERVER \(server) OPTIONS (schema_name 'public', table_name 'repairs')
                        """), logger: Bench.logger)
                    selects.append("SELECT * FROM \(table)")
                }
                try await connection.query(PostgresQuery(unsafeSQL:
                    "CREATE VIEW all_repairs AS \(selects.joined(separator: " UNION ALL "))"), logger: Bench.logger)
            }
        }
    }

    static let fdwDatabase = "bench_fdw"

    /// The rows of the fdw query's plan that are `Async Foreign Scan`s (0 means async is off).
    static func asyncForeignScans(admin: PostgresURL) async throws -> Int {
        try await Database.withConnection(admin.with(database: fdwDatabase), logger: Bench.logger) { connection in
            var count = 0
            for try await line in try await connection.query(
                PostgresQuery(unsafeSQL: "EXPLAIN \(fdwSQL)"), logger: Bench.logger).decode(String.self)
            where line.contains("Async Foreign Scan") {
                count += 1
            }
            return count
        }
    }

    static func execute(_ sql: String, on url: PostgresURL) async throws {
        try await Database.withConnection(url, logger: Bench.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Bench.logger)
        }
    }
}
