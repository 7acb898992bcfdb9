import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport

/// A small fleet for fleet queries: tenants 1–3 dedicated (each database with its own `orders`
/// rows), tenant 4 shared (its rows in the unified database), shop 5's rows in the unified
/// database but not a tenant of the catalog; the unified rows of 1–3 differ from their databases'
/// (so a query that read the wrong side would show).
struct FleetQueryFixture {
    let move: MoveFixture
    static let logger = TestPostgres.logger

    /// `orders` per tenant: (id, state, amount), as inserted.
    static let tenantRows: [String: [(Int, String, String?)]] = [
        "1": [(1, "paid", "10.00"), (2, "open", "5.50")],
        "2": [(1, "paid", "20.00"), (2, "paid", "1.25"), (3, "open", nil)],
        "3": [(1, "open", "7.00")],
        "4": [(1, "paid", "3.00"), (2, "open", "4.00")],
    ]

    static func make() async throws -> FleetQueryFixture {
        let move = try await MoveFixture.make(tenants: 3) { connection in
            try await connection.query("""
                CREATE TABLE orders (shop_id bigint NOT NULL, id bigint NOT NULL, state text NOT NULL, amount numeric(10,2),
                                     PRIMARY KEY (shop_id, id))
                """, logger: logger)
            try await connection.query("""
                INSERT INTO orders VALUES (1, 1, 'stale', 99), (2, 1, 'stale', 99), (3, 1, 'stale', 99),
                    (4, 1, 'paid', 3.00), (4, 2, 'open', 4.00), (5, 1, 'paid', 1000)
                """, logger: logger)
        }
        for id in ["1", "2", "3"] {
            let values = tenantRows[id]!.map { "(\($0.0), '\($0.1)', \($0.2 ?? "NULL"))" }.joined(separator: ", ")
            try await Database.withConnection(try await move.tenantURL(try TenantID(id)), logger: logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "INSERT INTO orders (id, state, amount) VALUES \(values)"), logger: logger)
            }
        }
        try await Catalog.withCatalog(move.base.catalogURL, logger: logger) { catalog in
            for id in move.ids {
                var record = try await catalog.requireTenant(id)
                record.placement = .dedicated
                try await catalog.upsertTenant(record)
            }
            _ = try await catalog.registerTenants([try TenantID("4")])
        }
        return FleetQueryFixture(move: move)
    }

    /// Runs `body` with operations over the fixture.
    func withOperations<T: Sendable>(_ body: @Sendable (Operations) async throws -> T) async throws -> T {
        try await Operations.with(
            configuration: DoctorTests.configuration(move), databaseURL: move.unifiedURL, actor: "test", logger: Self.logger, body)
    }

    /// Runs `query` through the operations.
    func run(_ query: FleetQuery) async throws -> FleetQuery.Result {
        try await withOperations { try await $0.fleetQuery(query) }
    }

    /// The rows of `result` grouped by their first column (the tenant id).
    static func byTenant(_ result: FleetQuery.Result) -> [String: [[String?]]] {
        Dictionary(grouping: result.rows, by: { $0[0] ?? "" })
    }
}
