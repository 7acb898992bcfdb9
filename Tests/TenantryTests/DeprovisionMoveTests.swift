import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("deprovisioning a tenant that is moving", .timeLimit(.minutes(5)))
struct DeprovisionMoveTests {
    let logger = MoveFixture.logger

    @Test("a syncing tenant: refused without a rollback; with it capture is off, its queue cleared, other tenants untouched")
    func syncingTenant() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let (victim, other) = (fixture.ids[0], fixture.ids[1])
        let directory = "/tmp/tenantry-archive-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        @Sendable func write(_ shop: TenantID) async throws {
            try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
                try await connection.query("""
                    INSERT INTO customers (shop_id, first_name, last_name, email)
                    VALUES (\(Int64(shop.rawValue)!), 'A', 'B', \("\(UUID())@example.com"))
                    """, logger: logger)
            }
        }
        @Sendable func queued(_ shop: TenantID) async throws -> [String?] {
            try await TestPostgres.strings(fixture.unifiedURL, """
                SELECT (SELECT count(*) FROM tenantry.changes WHERE tenant_id = '\(shop)')::text || ':'
                    || coalesce((SELECT capturing::text FROM tenantry.capture_state WHERE tenant_id = '\(shop)'), 'none')
                """)
        }
        try await fixture.withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            #expect(try await catalog.move(victim)?.phase == .syncing)
            try await write(victim)
            try await write(other)
            #expect(try await queued(victim) == ["1:true"])
            #expect(try await queued(other) == ["1:true"])

            // The library without a way to roll the move back refuses, before archiving anything.
            let refused = await #expect(throws: TenantryError.self) {
                try await fixture.withProvisioner { try await $0.deprovision(victim, archiveDirectory: directory) }
            }
            #expect(refused?.code == .conflict && refused?.message.contains("syncing (capture on)") == true, "\(String(describing: refused))")
            #expect(!FileManager.default.fileExists(atPath: directory))

            let cutover = Cutover(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: logger)
            let outcome = try await fixture.withProvisioner { provisioner in
                try await provisioner.deprovision(victim, archiveDirectory: directory, abandonMove: { _ = try await cutover.rollback($0) })
            }
            #expect(outcome.archiveBytes > 0)
            #expect(try await catalog.move(victim)?.phase == .shared)
            #expect(try await catalog.tenant(victim)?.status == .deprovisioned)
            #expect(try await queued(victim) == ["0:false"], "capture off and the tenant's queue cleared")
            try await write(victim)
            #expect(try await queued(victim) == ["0:false"], "a later write of the deprovisioned tenant is not captured")
            #expect(try await queued(other) == ["1:true"], "the other tenant's capture and queue are untouched")
            #expect(try await catalog.move(other)?.phase == .syncing)
            let audit = try await TestPostgres.strings(fixture.unifiedURL, """
                SELECT detail ->> 'move_rolled_back_from' FROM tenantry.audit_log WHERE action = 'deprovision' AND tenant_id = '\(victim)'
                """)
            #expect(audit == ["syncing"])
        }
    }
}
