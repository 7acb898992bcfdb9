import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("FleetQuery: one read-only query across dedicated and shared tenants", .timeLimit(.minutes(3)))
struct FleetQueryTests {
    @Test("every tenant's rows, exact, tenant_id first; the shared tenant sees only its own rows in unified")
    func rowsPerTenant() async throws {
        let fixture = try await FleetQueryFixture.make()
        let batches = NIOLockedValueBox([FleetQuery.Batch]())
        let result = try await fixture.withOperations { operations in
            try await operations.fleetQuery(FleetQuery(sql: "SELECT id, state, amount FROM orders ORDER BY id;")) { batch in
                batches.withLockedValue { $0.append(batch) }
            }
        }
        // Each tenant's rows handed over once, as it finished: the same rows, in the same order.
        let handed = batches.withLockedValue { $0 }
        #expect(handed.map(\.tenant.rawValue).sorted() == ["1", "2", "3", "4"])
        #expect(handed.flatMap(\.rows) == result.rows)
        #expect(handed.allSatisfy { $0.columns == result.columns })
        #expect(result.columns == [
            .init(name: "tenant_id", type: "text"), .init(name: "id", type: "bigint"), .init(name: "state", type: "text"),
            .init(name: "amount", type: "numeric")])
        #expect(result.tenants == 4 && result.answered == 4 && result.missing.isEmpty && !result.combined)
        let grouped = FleetQueryFixture.byTenant(result)
        #expect(grouped.keys.sorted() == ["1", "2", "3", "4"])
        for (tenant, rows) in FleetQueryFixture.tenantRows {
            let expected: [[String?]] = rows.map { [tenant, String($0.0), $0.1, $0.2] }
            #expect(grouped[tenant] == expected, "tenant \(tenant)")
        }
    }

    @Test("explicit ids and a server filter choose tenants; an unknown id is one clear error; a dedicated tenant without a database is missing")
    func selection() async throws {
        let fixture = try await FleetQueryFixture.make()
        let some = try await fixture.run(FleetQuery(sql: "SELECT count(*) AS n FROM orders", tenants: .tenants([try TenantID("4"), try TenantID("2")])))
        #expect(some.rows.sorted { ($0[0] ?? "") < ($1[0] ?? "") } == [["2", "3"], ["4", "2"]])
        let onDefault = try await fixture.run(FleetQuery(sql: "SELECT 1 AS one", server: "default"))
        #expect(onDefault.tenants == 4)
        let elsewhere = await #expect(throws: TenantryError.self) {
            try await fixture.run(FleetQuery(sql: "SELECT 1 AS one", server: "nowhere"))
        }
        #expect(elsewhere?.code == .tenantNotFound)
        let unknown = await #expect(throws: TenantryError.self) {
            try await fixture.run(FleetQuery(sql: "SELECT 1 AS one", tenants: .tenants([try TenantID("1"), try TenantID("5")])))
        }
        #expect(unknown?.code == .tenantNotFound)
        #expect(unknown?.message.contains("unknown tenant 5") == true)

        // A dedicated tenant without an active database is never answered from the unified one.
        try await Catalog.withCatalog(fixture.move.base.catalogURL, logger: FleetQueryFixture.logger) { catalog in
            var record = try await catalog.requireTenant(try TenantID("3"))
            record.status = .failed
            try await catalog.upsertTenant(record)
        }
        let failed = try await fixture.run(FleetQuery(sql: "SELECT count(*) AS n FROM orders", partial: true))
        #expect(failed.missing == [FleetQuery.Missing(tenant: "3", error: "tenant 3 is dedicated but has no active database")])
    }

    @Test("a tenant whose columns differ from the first tenant's is missing with the reason; types that differ combine as text")
    func differentColumns() async throws {
        let fixture = try await FleetQueryFixture.make()
        try await Database.withConnection(try await fixture.move.tenantURL(try TenantID("3")), logger: FleetQueryFixture.logger) {
            try await $0.query("ALTER TABLE orders ADD COLUMN note text", logger: FleetQueryFixture.logger)
        }
        // One at a time, in id order: tenant 1 answers first and sets the columns.
        let result = try await fixture.run(FleetQuery(sql: "SELECT * FROM orders ORDER BY id", concurrency: 1, partial: true))
        #expect(result.missing == [FleetQuery.Missing(
            tenant: "3", error: "its columns (id, state, amount, note) differ from the first tenant's (id, state, amount)")])
        #expect(Set(result.rows.map { $0[0] }) == ["1", "2", "4"])

        // numeric in tenants 1, 3 and 4, real in tenant 2: combined as text.
        try await Database.withConnection(try await fixture.move.tenantURL(try TenantID("2")), logger: FleetQueryFixture.logger) {
            try await $0.query("ALTER TABLE orders ALTER COLUMN amount TYPE real", logger: FleetQueryFixture.logger)
        }
        var query = FleetQuery(sql: "SELECT amount FROM orders")
        query.combine = "SELECT pg_typeof(amount)::text AS type, count(*) AS c FROM results GROUP BY 1"
        let typed = try await fixture.run(query)
        #expect(typed.rows == [["text", "8"]])
    }

    @Test("after the first tenant one statement each: rows in order, fewer columns and another type detected, a tenant without rows")
    func describedOnce() async throws {
        let fixture = try await FleetQueryFixture.make()
        try await Database.withConnection(try await fixture.move.tenantURL(try TenantID("2")), logger: FleetQueryFixture.logger) {
            try await $0.query("ALTER TABLE orders ALTER COLUMN amount TYPE real", logger: FleetQueryFixture.logger)
        }
        try await Database.withConnection(try await fixture.move.tenantURL(try TenantID("3")), logger: FleetQueryFixture.logger) {
            try await $0.query("ALTER TABLE orders DROP COLUMN state", logger: FleetQueryFixture.logger)
        }
        // One at a time, in id order: tenant 1 describes the query, 2–4 read it in one statement;
        // tenant 3 (fewer columns) is read again with its own describe and reported.
        let result = try await fixture.run(
            FleetQuery(sql: "SELECT * FROM orders WHERE id > 1 ORDER BY id DESC", concurrency: 1, partial: true))
        #expect(result.missing == [FleetQuery.Missing(
            tenant: "3", error: "its columns (id, amount) differ from the first tenant's (id, state, amount)")])
        #expect(result.columns.map(\.type) == ["text", "bigint", "text", "text"])
        #expect(result.rows == [
            ["1", "2", "open", "5.50"], ["2", "3", "open", nil], ["2", "2", "paid", "1.25"], ["4", "2", "open", "4.00"]])

        // Only tenant 2 has an id above 2: tenants 3 and 4 answer no rows in one statement, with their names.
        let sparse = try await fixture.run(FleetQuery(sql: "SELECT id, amount FROM orders WHERE id > 2", concurrency: 1))
        #expect(sparse.answered == 4 && sparse.missing.isEmpty)
        #expect(sparse.columns == [
            .init(name: "tenant_id", type: "text"), .init(name: "id", type: "bigint"), .init(name: "amount", type: "text")])
        #expect(sparse.rows == [["2", "3", nil]])
    }

    @Test("the public-schema guard: qualified names in any spelling, not words that merely end in public")
    func publicSchemaGuard() {
        for sql in ["select * from public.orders", "select * from PUBLIC . orders", "select * from \"public\".orders",
                    "select o.id from \"public\" .orders o"] {
            #expect(FleetQuery.qualifiesPublicSchema(sql), "\(sql)")
        }
        for sql in ["select * from orders", "select republic.x from republic", "select publicity.x from publicity", "select 'public'"] {
            #expect(!FleetQuery.qualifiesPublicSchema(sql), "\(sql)")
        }
    }

    @Test("json(): one object, keys in column order, a repeated name keeps its first value, NULL as null, strings escaped")
    func json() {
        let result = FleetQuery.Result(
            columns: [.init(name: "tenant_id", type: "text"), .init(name: "a", type: "text"), .init(name: "a", type: "int4"),
                      .init(name: "b\"", type: "text")],
            rows: [["1", "x\ny", "2", nil], ["2", "\\", "3", "\u{1}"]], tenants: 3, answered: 2,
            missing: [.init(tenant: "3", error: "timed out \"now\"")], combined: false, seconds: 0.1)
        #expect(result.json() == #"{"rows":[{"tenant_id":"1","a":"x\ny","b\"":null},{"tenant_id":"2","a":"\\","b\"":"\u0001"}],"tenants":3,"missing":[{"tenant":"3","error":"timed out \"now\""}]}"#)
    }
}
