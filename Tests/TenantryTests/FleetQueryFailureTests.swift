import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("FleetQuery: combine, bad input, timeouts and partial results", .timeLimit(.minutes(3)))
struct FleetQueryFailureTests {
    /// Sleeps 5 s in tenant 2 only (the one with three orders), returns at once elsewhere.
    static let slowInTwo = "SELECT count(*) AS n, pg_sleep(CASE WHEN count(*) = 3 THEN 5 ELSE 0 END)::text AS slept FROM orders"

    @Test("combine: typed columns in results, aggregated in PostgreSQL, equal to the sum by hand")
    func combine() async throws {
        let fixture = try await FleetQueryFixture.make()
        var query = FleetQuery(sql: "SELECT state, count(*) AS n, sum(amount) AS total FROM orders GROUP BY 1")
        query.combine = "SELECT state, sum(n) AS n, sum(total) AS total, count(DISTINCT tenant_id) AS tenants FROM results GROUP BY 1 ORDER BY 1"
        let result = try await fixture.run(query)
        #expect(result.combined && result.answered == 4)
        #expect(result.columns.map(\.name) == ["state", "n", "total", "tenants"])
        // By hand from FleetQueryFixture.tenantRows: open 5.50 + NULL + 7.00 + 4.00; paid 10.00 + 20.00 + 1.25 + 3.00.
        #expect(result.rows == [["open", "4", "16.50", "4"], ["paid", "4", "34.25", "3"]])
        // A pseudo-type (void) and an anonymous record are loaded as text.
        var pseudo = FleetQuery(sql: "SELECT pg_sleep(0) AS slept, ROW(1, 'a') AS pair")
        pseudo.combine = "SELECT count(*) AS n, min(pair) AS pair, pg_typeof(min(slept))::text AS type FROM results"
        #expect(try await fixture.run(pseudo).rows == [["4", "(1,a)", "text"]])
    }

    @Test("a statement that writes is refused by the READ ONLY transaction, nothing written; bad SQL is one error")
    func refusals() async throws {
        let fixture = try await FleetQueryFixture.make()
        for sql in ["DELETE FROM orders", "WITH gone AS (DELETE FROM orders RETURNING id) SELECT id FROM gone",
                    "SELECT id FROM orders FOR UPDATE"] {
            let error = await #expect(throws: TenantryError.self, "\(sql)") { try await fixture.run(FleetQuery(sql: sql, partial: true)) }
            #expect(error?.code == .invalidArgument, "\(sql)")
            #expect(error?.message.contains("read-only transaction") == true || error?.message.contains("not valid") == true, "\(sql): \(error?.message ?? "")")
        }
        let deleted = await #expect(throws: TenantryError.self) { try await fixture.run(FleetQuery(sql: "DELETE FROM orders")) }
        #expect(deleted?.message.contains("cannot execute DELETE in a read-only transaction") == true, "\(deleted?.message ?? "")")
        for id in ["1", "2", "3"] {
            let count = try await TestPostgres.strings(try await fixture.move.tenantURL(try TenantID(id)), "SELECT count(*)::text FROM orders")
            #expect(count == ["\(FleetQueryFixture.tenantRows[id]!.count)"])
        }
        #expect(try await TestPostgres.strings(fixture.move.unifiedURL, "SELECT count(*)::text FROM orders") == ["6"])
        let syntax = await #expect(throws: TenantryError.self) { try await fixture.run(FleetQuery(sql: "SELEC 1")) }
        #expect(syntax?.code == .invalidArgument && syntax?.message.contains("syntax error") == true)
        let empty = await #expect(throws: TenantryError.self) { try await fixture.run(FleetQuery(sql: " ; ")) }
        #expect(empty?.message == "the per-tenant SQL is empty")
        var badCombine = FleetQuery(sql: "SELECT 1 AS n")
        badCombine.combine = "SELECT nope FROM results"
        let combine = await #expect(throws: TenantryError.self) { try await fixture.run(badCombine) }
        #expect(combine?.code == .invalidArgument && combine?.message.hasPrefix("the combine SQL failed: column \"nope\" does not exist") == true)
        let qualified = await #expect(throws: TenantryError.self) { try await fixture.run(FleetQuery(sql: "SELECT * FROM public.orders")) }
        #expect(qualified?.message.contains("public.orders") == true)
    }

    @Test("a write met after the first tenant (one statement per tenant from then on) is refused too, nothing written")
    func refusedInTheOneStatementRead() async throws {
        let fixture = try await FleetQueryFixture.make()
        let function = "CREATE FUNCTION fleet_purge() RETURNS int LANGUAGE sql AS $$ %@ $$"
        for (id, body) in [("1", "SELECT 0"), ("2", "DELETE FROM orders RETURNING 0"), ("3", "DELETE FROM orders RETURNING 0")] {
            try await Database.withConnection(try await fixture.move.tenantURL(try TenantID(id)), logger: FleetQueryFixture.logger) {
                try await $0.query(PostgresQuery(unsafeSQL: function.replacingOccurrences(of: "%@", with: body)), logger: FleetQueryFixture.logger)
            }
        }
        try await Database.withConnection(fixture.move.unifiedURL, logger: FleetQueryFixture.logger) {
            try await $0.query(PostgresQuery(unsafeSQL: function.replacingOccurrences(of: "%@", with: "SELECT 0")), logger: FleetQueryFixture.logger)
        }
        // One at a time: tenant 1 describes (its function does not write), tenant 2 reads in one statement.
        let error = await #expect(throws: TenantryError.self) {
            try await fixture.run(FleetQuery(sql: "SELECT fleet_purge() AS n", concurrency: 1))
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("cannot execute DELETE in a read-only transaction") == true, "\(error?.message ?? "")")
        for id in ["1", "2", "3"] {
            let count = try await TestPostgres.strings(try await fixture.move.tenantURL(try TenantID(id)), "SELECT count(*)::text FROM orders")
            #expect(count == ["\(FleetQueryFixture.tenantRows[id]!.count)"])
        }
    }

    @Test("a tenant that times out: with partial it is named and the others answer; without, one error names it")
    func timeouts() async throws {
        let fixture = try await FleetQueryFixture.make()
        let start = ContinuousClock.now
        let partial = try await fixture.run(FleetQuery(sql: Self.slowInTwo, timeout: .milliseconds(400), partial: true))
        #expect(partial.missing == [FleetQuery.Missing(tenant: "2", error: "timed out after 400 ms (statement_timeout)")])
        #expect(partial.answered == 3 && partial.tenants == 4)
        #expect(partial.rows.map { [$0[0], $0[1]] }.sorted { ($0[0] ?? "") < ($1[0] ?? "") } == [["1", "2"], ["3", "1"], ["4", "2"]])
        let failed = await #expect(throws: TenantryError.self) {
            try await fixture.run(FleetQuery(sql: Self.slowInTwo, timeout: .milliseconds(400)))
        }
        #expect(failed?.message.hasPrefix("1 of 4 tenants failed: tenant 2: timed out after 400 ms") == true, "\(failed?.message ?? "")")
        #expect(ContinuousClock.now - start < .seconds(4))
    }

    @Test("the shared tenant's scoping views never reach the pooled unified session")
    func pooledSessionClean() async throws {
        let fixture = try await FleetQueryFixture.make()
        try await Catalog.withCatalog(fixture.move.base.catalogURL, logger: FleetQueryFixture.logger) { catalog in
            var pool = TenantPool.Configuration()
            pool.maxConnections = 1
            let router = TenantRouter(
                configuration: TenantRouter.Configuration(unifiedURL: fixture.move.unifiedURL, pool: pool), catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: fixture.move.base.keyring), servers: fixture.move.directory(),
                logger: FleetQueryFixture.logger)
            try await router.running {
                let four = try TenantID("4")
                let result = try await FleetQuery(sql: "SELECT count(*) AS n FROM orders", tenants: .tenants([four]))
                    .run(router: router, logger: FleetQueryFixture.logger)
                #expect(result.rows == [["4", "2"]])
                // The same (only) unified connection: the table again, all shops, writable.
                let after = try await router.withConnection(tenant: four, source: .unified) { connection in
                    try await connection.query("SELECT count(*)::text, current_setting('transaction_read_only') FROM orders")
                        .first?.decode((String, String).self)
                }
                #expect(after?.0 == "6" && after?.1 == "off")
            }
        }
    }
}
