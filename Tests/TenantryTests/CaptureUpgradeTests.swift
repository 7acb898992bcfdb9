import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("capture install upgrades both sides", .timeLimit(.minutes(3)))
struct CaptureUpgradeTests {
    @Test("capture install refreshes a dedicated tenant's database: an install older than pause_kind gets the column, filled in from the old words")
    func dedicatedTenantUpgraded() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let (moved, shared) = (fixture.ids[0], fixture.ids[1])
        try await Operations.with(
            configuration: DoctorTests.configuration(fixture), databaseURL: fixture.unifiedURL, actor: "test", logger: TestPostgres.logger
        ) { operations in
            let move = try await operations.move()
            _ = try await move.migrateData(.tenants([moved]))
            let cut = try await move.cutover(.tenants([moved]))
            #expect(cut.failed.isEmpty, "\(cut)")
            // The tenant database as an install from before pause_kind left it: no column, a
            // retirement pause recorded in words only.
            let tenantURL = try await fixture.tenantURL(moved)
            _ = try await TestPostgres.strings(tenantURL, "ALTER TABLE tenantry.capture_state DROP COLUMN pause_kind")
            _ = try await TestPostgres.strings(tenantURL, """
                UPDATE tenantry.capture_state SET sync_paused = true, paused_reason = 'retired from the unified database'
                """)
            let report = try await move.installCapture()
            #expect(report.tenantDatabases == [moved.rawValue], "only the dedicated tenant, not \(shared)")
            #expect(!report.tables.isEmpty)
            #expect(try await TestPostgres.strings(
                tenantURL, "SELECT coalesce(pause_kind, '-') FROM tenantry.capture_state WHERE tenant_id = '\(moved.rawValue)'")
                == ["retirement"])
            // Running it again changes nothing (idempotent).
            #expect(try await move.installCapture() == report)
        }
    }
}
