import Foundation
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("capture: a batch's tenants listed in the triggers ahead of their copies", .timeLimit(.minutes(4)))
struct CaptureListAheadTests {
    static let logger = MoveFixture.logger

    /// Each capture trigger's row version (`xmin`), by table and trigger: unchanged when nothing
    /// re-created it.
    static func versions(_ url: PostgresURL) async throws -> [String] {
        try await TestPostgres.strings(url, """
            SELECT c.relname || '.' || t.tgname || '@' || t.xmin::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE t.tgname LIKE 'tenantry_capture%' ORDER BY 1
            """).compactMap { $0 }
    }

    @Test("listing a batch re-creates each table's triggers once; enabling its tenants then changes none; the list only grows")
    func listThenEnable() async throws {
        let fixture = try await CaptureTriggerListTests.notesFixture(tenants: 5)
        let capture = fixture.capture()
        let ids = try (1...5).map { try TenantID("\($0)") }
        #expect(try await capture.list(Array(ids[0..<3])).sorted() == ["items", "notes"])
        let three: [String: [String]?] = ["INSERT": ["1", "2", "3"], "UPDATE": ["1", "2", "3"], "DELETE": ["1", "2", "3"]]
        #expect(try await CaptureTriggerListTests.listed(fixture.unifiedURL) == ["items": three, "notes": three])
        let before = try await Self.versions(fixture.unifiedURL)
        try await capture.enable(ids[1])
        #expect(try await Self.versions(fixture.unifiedURL) == before, "enabling a listed tenant re-created a trigger")
        // A listed tenant without capture state runs the function, which captures nothing.
        _ = try await TestPostgres.strings(fixture.unifiedURL, "INSERT INTO notes VALUES (3, 30, 'a'), (2, 20, 'b') RETURNING ''")
        #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT tenant_id FROM tenantry.changes") == ["2"])
        // A second batch keeps the first one's tenants that have no state yet.
        #expect(try await capture.list([ids[3]]).sorted() == ["items", "notes"])
        let four: [String: [String]?] = ["INSERT": ["1", "2", "3", "4"], "UPDATE": ["1", "2", "3", "4"], "DELETE": ["1", "2", "3", "4"]]
        #expect(try await CaptureTriggerListTests.listed(fixture.unifiedURL)["notes"] == four)
        #expect(try await capture.list([ids[0], ids[3]]) == [], "already listed: nothing changes")
        #expect(try await capture.triggerProblems() == [])
    }

    @Test("ListAhead lists a window at a time, each tenant once; a failed listing reaches its caller and is tried again")
    func windows() async throws {
        let fixture = try await CaptureTriggerListTests.notesFixture(tenants: 6)
        var capture = fixture.capture()
        capture.enableTimeout = .milliseconds(600)
        capture.relistLockTimeout = .milliseconds(20)
        let ids = try (1...6).map { try TenantID("\($0)") }
        let ahead = capture.listAhead(ids, window: 2)
        func notes() async throws -> [String]? {
            try await CaptureTriggerListTests.listed(fixture.unifiedURL)["notes"]?["INSERT"] ?? nil
        }
        try await ahead.prepare(ids[0])
        #expect(try await notes() == ["1", "2"])
        let before = try await Self.versions(fixture.unifiedURL)
        try await ahead.prepare(ids[1])
        #expect(try await Self.versions(fixture.unifiedURL) == before, "a tenant of a listed window was listed again")
        // While a writer holds `notes` locked, the next window cannot be listed: one clear error.
        try await Database.withConnection(fixture.unifiedURL, logger: Self.logger) { blocker in
            try await blocker.query("BEGIN", logger: Self.logger)
            try await blocker.query("LOCK TABLE notes IN ROW EXCLUSIVE MODE", logger: Self.logger)
            await #expect {
                try await ahead.prepare(ids[3])
            } throws: { error in
                (error as? TenantryError).map { $0.code == .timeout && $0.message.contains("notes") } ?? false
            }
            try await blocker.query("ROLLBACK", logger: Self.logger)
        }
        #expect(try await notes() == ["1", "2"])
        // Tried again, concurrently with another tenant of the batch.
        async let fourth: Void = ahead.prepare(ids[3])
        async let fifth: Void = ahead.prepare(ids[4])
        _ = try await (fourth, fifth)
        #expect(Set(try await notes() ?? []).isSuperset(of: ["1", "2", "4", "5"]))
        try await ahead.prepare(ids[2])
        #expect(try await notes() == ["1", "2", "3", "4", "5", "6"])
    }
}
