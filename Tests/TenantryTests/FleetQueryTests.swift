import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("FleetQuery: one read-only query across dedicated and shared tenants", .timeLimit(.minutes(3)))
struct FleetQueryTests {
    @Test("every tenant's rows, exact, tenant_id first; the shared tenant sees only its own rows in unified")
    func rowsPerTenant() async throws {
        let fixture = try await FleetQueryFixture.make()
        let result = try await fixture.run(FleetQuery(sql: "SELECT id, state, amount FROM orders ORDER BY id;"))
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

    @Test("explicit ids and a server filter choose tenants; an unknown id is one clear error")
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
    }
}
