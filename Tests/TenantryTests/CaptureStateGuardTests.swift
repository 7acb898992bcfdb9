import Foundation
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The server keeps the list's invariant too (``CaptureSQL/listedGuard``): a `capture_state` row
/// for a tenant the capture triggers do not list is refused, whoever writes it. Before it, a
/// Tenantry binary older than the list triggers turned capture on by inserting the row alone, and
/// the tenant's writes went uncaptured: lost at cutover (found by a torture run with a stale
/// `tenantry` binary beside a newer `tenantry-bench`).
@Suite("capture: the server refuses capture state for a tenant the triggers do not list", .timeLimit(.minutes(3)))
struct CaptureStateGuardTests {
    static let logger = MoveFixture.logger

    /// What a Tenantry binary from before the list triggers ran to turn capture on for `tenant`.
    static func olderEnable(_ tenant: String, on url: PostgresURL) async throws {
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query("""
                INSERT INTO tenantry.capture_state (tenant_id, lock_key, capturing, capture_enabled_at)
                VALUES (\(tenant), 7, true, clock_timestamp())
                ON CONFLICT (tenant_id) DO UPDATE SET capturing = true, updated_at = now()
                """, logger: logger)
        }
    }

    static func stateRows(_ url: PostgresURL) async throws -> [String] {
        try await TestPostgres.strings(url, "SELECT tenant_id FROM tenantry.capture_state ORDER BY tenant_id").compactMap { $0 }
    }

    static func changes(_ tenant: String, _ url: PostgresURL) async throws -> String? {
        try await TestPostgres.strings(url, "SELECT count(*)::text FROM tenantry.changes WHERE tenant_id = '\(tenant)'").first ?? nil
    }

    @Test("an older binary's enable of an unlisted tenant gets one clear error and leaves no state; Capture.enable lists first and passes")
    func refusesUnlisted() async throws {
        let fixture = try await CaptureTriggerListTests.notesFixture(tenants: 3)
        let url = fixture.unifiedURL
        let capture = fixture.capture()
        try await capture.enable(try TenantID("1"))
        do {
            try await Self.olderEnable("2", on: url)
            Issue.record("an unlisted tenant got capture state")
        } catch {
            #expect(Database.sqlState(of: error) == "55000")
            let message = Database.message(of: error)
            #expect(message.contains("tenant 2 cannot get capture state"), "\(message)")
            #expect(message.contains("items, notes"), "\(message)")
        }
        #expect(try await Self.stateRows(url) == ["1"])
        // An already listed tenant passes, the older binary's upsert included.
        try await Self.olderEnable("1", on: url)
        // Tenantry's own enable lists tenant 2 before its row: accepted, and its writes are captured.
        try await capture.enable(try TenantID("2"))
        #expect(try await Self.stateRows(url) == ["1", "2"])
        _ = try await TestPostgres.strings(url, "INSERT INTO notes VALUES (2, 1, 'after') RETURNING ''")
        #expect(try await Self.changes("2", url) == "1")
        #expect(try await capture.triggerProblems() == [])
    }

    @Test("text tenant ids are read from the list as listed; beyond the list limit every row fires and any tenant passes")
    func textIdsAndEveryRow() async throws {
        let url = try await TestPostgres.makeDatabase("capguard")
        try await Database.withConnection(url, logger: Self.logger) { connection in
            try await connection.query("CREATE TABLE notes (shop_id text NOT NULL, id bigint PRIMARY KEY, body text)", logger: Self.logger)
        }
        let capture = Capture(unifiedURL: url, logger: Self.logger)
        try await capture.install()
        try await capture.enable(try TenantID("acme_1"))
        try await Self.olderEnable("acme_1", on: url)
        await #expect(throws: (any Error).self) { try await Self.olderEnable("beta_2", on: url) }
        #expect(try await Self.stateRows(url) == ["acme_1"])
        // More tenants than a list holds (rows written behind the guard, then listed): every row
        // fires the function, so no tenant is unlisted.
        try await TestPostgres.executeSkippingTriggers(url, """
            INSERT INTO tenantry.capture_state (tenant_id, lock_key) SELECT 'x' || g, 1 FROM generate_series(1, \(CaptureSQL.listLimit)) g
            """)
        try await capture.refreshTriggerList()
        try await Self.olderEnable("beta_2", on: url)
        #expect(try await Self.stateRows(url).contains("beta_2"))
    }
}
