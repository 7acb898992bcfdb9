import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("capture: the triggers list the tenants with capture state", .timeLimit(.minutes(4)))
struct CaptureTriggerListTests {
    static let logger = MoveFixture.logger

    static func notesFixture(tenants: Int) async throws -> MoveFixture {
        try await MoveFixture.make(tenants: tenants) { connection in
            try await Database.execute(script: """
                CREATE TABLE shops (id bigint PRIMARY KEY);
                CREATE TABLE notes (shop_id bigint NOT NULL REFERENCES shops (id), id bigint PRIMARY KEY, body text);
                CREATE TABLE items (shop_id bigint NOT NULL REFERENCES shops (id), id bigint PRIMARY KEY);
                INSERT INTO shops SELECT generate_series(1, \(tenants));
                """, on: connection, logger: logger)
        }
    }

    /// Per table and event, the tenants its capture trigger lists (nil: every row).
    static func listed(_ url: PostgresURL) async throws -> [String: [String: [String]?]] {
        try await Database.withConnection(url, logger: logger) { connection in
            try await Capture.installedTriggers(on: connection, schema: "public", logger: logger).mapValues { installed in
                installed.events.mapValues { $0.map { $0.sorted() } }
            }
        }
    }

    @Test("the list grows when capture is enabled, keeps tenants that are disabled (their state stays), follows deleted state on refresh")
    func listFollowsState() async throws {
        let fixture = try await Self.notesFixture(tenants: 3)
        let capture = fixture.capture()
        // Nobody listed: no INSERT or DELETE trigger, the UPDATE one only refuses a changed discriminator.
        let empty: [String: [String]?] = ["UPDATE": []]
        #expect(try await Self.listed(fixture.unifiedURL) == ["items": empty, "notes": empty])
        try await capture.enable(try TenantID("2"))
        try await capture.enable(try TenantID("1"))
        let both: [String: [String]?] = ["INSERT": ["1", "2"], "UPDATE": ["1", "2"], "DELETE": ["1", "2"]]
        #expect(try await Self.listed(fixture.unifiedURL) == ["items": both, "notes": both])
        try await capture.disable(try TenantID("1"))
        #expect(try await Self.listed(fixture.unifiedURL)["notes"] == both)
        // A reinstall lists the same tenants; a refresh after a state row is gone shrinks the list.
        try await capture.install()
        #expect(try await Self.listed(fixture.unifiedURL)["notes"] == both)
        _ = try await TestPostgres.strings(fixture.unifiedURL, "DELETE FROM tenantry.capture_state WHERE tenant_id = '2' RETURNING ''")
        #expect(try await capture.refreshTriggerList().sorted() == ["items", "notes"])
        let one: [String: [String]?] = ["INSERT": ["1"], "UPDATE": ["1"], "DELETE": ["1"]]
        #expect(try await Self.listed(fixture.unifiedURL)["notes"] == one)
        #expect(try await capture.triggerProblems() == [])
    }

    @Test("beyond the list limit every row fires the function; an install of an older, single trigger is converted")
    func everyRowAndLegacy() async throws {
        let fixture = try await Self.notesFixture(tenants: 1)
        let capture = fixture.capture()
        try await TestPostgres.executeSkippingTriggers(fixture.unifiedURL, """
            INSERT INTO tenantry.capture_state (tenant_id, lock_key)
            SELECT 'x' || g, 1 FROM generate_series(1, \(CaptureSQL.listLimit)) g
            """)
        try await Database.withConnection(fixture.unifiedURL, logger: Self.logger) { connection in
            // As an install older than 2026-11-30 left a table: one trigger, every event and row.
            try await Database.execute(script: """
                DROP TRIGGER IF EXISTS tenantry_capture_insert ON notes; DROP TRIGGER tenantry_capture_update ON notes;
                DROP TRIGGER IF EXISTS tenantry_capture_delete ON notes;
                CREATE TRIGGER tenantry_capture AFTER INSERT OR UPDATE OR DELETE ON notes
                    FOR EACH ROW EXECUTE FUNCTION tenantry.\(CaptureSQL.functionName("notes"))();
                """, on: connection, logger: Self.logger)
        }
        // The hand-made state rows are not listed on `items`: an error the check names.
        let problems = try await capture.triggerProblems()
        #expect(problems.map(\.table) == ["items"])
        #expect(problems.first?.missing.count == CaptureSQL.listLimit)
        #expect(problems.first?.detail.contains("x1, x2, x3") == true, "\(problems)")
        try await capture.enable(try TenantID("1"))
        let none: [String]? = nil
        let every: [String: [String]?] = ["INSERT": none, "UPDATE": none, "DELETE": none]
        #expect(try await Self.listed(fixture.unifiedURL) == ["items": every, "notes": every])
        #expect(try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT count(*)::text FROM pg_trigger WHERE tgname = 'tenantry_capture'") == ["0"])
        _ = try await TestPostgres.strings(fixture.unifiedURL, "INSERT INTO notes VALUES (1, 1, 'a') RETURNING ''")
        #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT op::text FROM tenantry.changes") == ["I"], "captured once")
        #expect(try await capture.triggerProblems() == [])
    }

    @Test("an uncaptured tenant's writes run no trigger function; a captured one's do; a changed discriminator is refused for both")
    func uncapturedRunsNoFunction() async throws {
        let fixture = try await Self.notesFixture(tenants: 3)
        try await fixture.capture().enable(try TenantID("1"))
        let calls = """
            SELECT coalesce(sum(pg_stat_get_xact_function_calls(p.oid)), 0)::text FROM pg_proc p
            WHERE p.pronamespace = 'tenantry'::regnamespace AND p.proname LIKE 'capture_%'
            """
        try await Database.withConnection(fixture.unifiedURL, logger: Self.logger) { connection in
            func value(_ sql: String) async throws -> String {
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Self.logger).decode(String.self)
                    .first(where: { _ in true }) ?? ""
            }
            try await connection.query("BEGIN", logger: Self.logger)
            try await connection.query("SET LOCAL track_functions = 'pl'", logger: Self.logger)
            for statement in [
                "INSERT INTO notes VALUES (2, 20, 'a')", "UPDATE notes SET body = 'b' WHERE id = 20", "DELETE FROM notes WHERE id = 20",
                "INSERT INTO notes VALUES (3, 30, 'a')", "UPDATE notes SET body = 'b' WHERE shop_id = 3",
            ] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: Self.logger) }
            #expect(try await value(calls) == "0", "uncaptured writes ran the capture function")
            try await connection.query("INSERT INTO notes VALUES (1, 10, 'a')", logger: Self.logger)
            try await connection.query("UPDATE notes SET body = 'b' WHERE id = 10", logger: Self.logger)
            #expect(try await value(calls) == "2")
            try await connection.query("COMMIT", logger: Self.logger)
            for (from, to) in [("3", "2"), ("3", "1"), ("1", "2")] {
                await #expect {
                    try await connection.query(
                        PostgresQuery(unsafeSQL: "UPDATE notes SET shop_id = \(to) WHERE shop_id = \(from)"), logger: Self.logger)
                } throws: { error in
                    Database.sqlState(of: error) == "23514" && Database.message(of: error).contains("shop_id cannot change")
                }
            }
        }
        #expect(try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT op::text || ':' || tenant_id FROM tenantry.changes ORDER BY id") == ["I:1", "U:1"])
    }

    /// Where the list stands when a tenant's capture is enabled under writers.
    enum ListStart: String, CaseIterable, Sendable {
        /// Nobody listed.
        case empty
        /// Another tenant captured (and listed).
        case besidePeer
        /// The tenant listed ahead of its copy (``Capture/ListAhead``), while its writers write.
        case listedAhead
    }

    @Test(
        "a tenant enabled and copied while 8 writers write it: no write lost, row by row after the relay caught up (from an empty list; beside a captured peer; listed ahead)",
        arguments: ListStart.allCases)
    func enableUnderWriters(_ start: ListStart) async throws {
        let fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 80)
        let stop = NIOLockedValueBox(false)
        let tenant = fixture.ids[0]
        if start == .besidePeer { try await fixture.capture().enable(fixture.ids[2]) }
        let peers = start == .besidePeer ? [fixture.ids[2].rawValue] : []
        try await fixture.withMover { copier, relay, _ in
            let writers = (0..<8).map { index in
                Task { try await HandyShopWriter(url: fixture.unifiedURL, shops: [tenant], seed: UInt64(index + 11)).run(until: stop) }
            }
            try await Task.sleep(for: .milliseconds(300))
            let before = try await Self.listed(fixture.unifiedURL)
            #expect(before["customers"] == (start == .besidePeer ? ["INSERT": peers, "UPDATE": peers, "DELETE": peers] : ["UPDATE": []]))
            if start == .listedAhead {
                try await copier.listAhead([tenant]).prepare(tenant)
                try await Task.sleep(for: .milliseconds(200))
            }
            _ = try await copier.copy(tenant)
            #expect(try await Self.listed(fixture.unifiedURL)["customers"]?["INSERT"] == .some((peers + [tenant.rawValue]).sorted()))
            try await Task.sleep(for: .milliseconds(500))
            stop.withLockedValue { $0 = true }
            var writes = 0
            for writer in writers { writes += try await writer.value }
            #expect(writes > 20, "the writers wrote \(writes) transactions")
            let report = try await relay.catchUp(timeout: .seconds(60))
            #expect(report.paused.isEmpty)
            #expect(try await fixture.independentDifferences(tenant) == [])
        }
    }

    @Test("doctor fails the capture check naming a tenant with capture state that the triggers miss; install repairs the list")
    func doctorNamesMissingTenant() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        // A state row written behind capture's back (as a crash or a hand edit could leave it).
        try await TestPostgres.executeSkippingTriggers(fixture.unifiedURL, """
            INSERT INTO tenantry.capture_state (tenant_id, lock_key) VALUES ('2', 1)
            """)
        func check() async throws -> DoctorCheck? {
            try await Operations.with(
                configuration: DoctorTests.configuration(fixture), databaseURL: fixture.unifiedURL, actor: "test", logger: Self.logger
            ) { operations in await operations.doctor(sample: 0) }.checks.first { $0.name == "capture" }
        }
        let failed = try #require(try await check())
        #expect(failed.status == .fail, "\(failed)")
        #expect(failed.detail.contains("misses tenant(s) with capture state 2 "), "\(failed.detail)")
        try await fixture.capture().install()
        let repaired = try #require(try await check())
        #expect(repaired.status == .pass, "\(repaired)")
    }

    /// The discriminator types a unified database may use, with two ids to list, one not to, and a
    /// value of that type an id does not spell canonically (as a hand-made state row could).
    /// The array's type as `pg_get_triggerdef` prints it; nil: the ids as text, the column cast to text.
    static let typedCases: [(type: String, listed: [String], other: String, array: String?)] = [
        ("bigint", ["7", "12"], "3", "::smallint[]"), ("bigint", ["7", "3000000000"], "3", "::bigint[]"),
        ("integer", ["7", "40000"], "3", "::integer[]"), ("smallint", ["7", "12"], "3", "::smallint[]"),
        ("text", ["a7", "b12"], "c3", "::text[]"), ("character varying(40)", ["a7", "b12"], "c3", nil),
        ("uuid", ["00000000-0000-4000-8000-000000000007", "00000000-0000-4000-8000-000000000012"], "00000000-0000-4000-8000-000000000003", nil),
    ]

    @Test(
        "the list is compared in the column's type (integers, text) or as text (other types, odd ids); it fires exactly for the listed tenants; a changed discriminator is refused",
        arguments: 0..<typedCases.count)
    func typedList(_ index: Int) async throws {
        let (type, ids, other, array) = Self.typedCases[index]
        let typed = array != nil
        let url = try await TestPostgres.makeDatabase("captyped")
        try await Database.withConnection(url, logger: Self.logger) { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "CREATE TABLE notes (shop_id \(type) NOT NULL, id bigint PRIMARY KEY, body text)"), logger: Self.logger)
        }
        let capture = Capture(unifiedURL: url, logger: Self.logger)
        try await capture.install()
        func condition() async throws -> String {
            try await TestPostgres.strings(url, """
                SELECT coalesce(pg_get_triggerdef(oid), '') FROM pg_trigger WHERE tgname = 'tenantry_capture_insert'
                """).first.flatMap { $0 } ?? "none"
        }
        func addState(_ tenants: [String]) async throws {
            for tenant in tenants {
                try await TestPostgres.executeSkippingTriggers(url, "INSERT INTO tenantry.capture_state (tenant_id, lock_key) VALUES ('\(tenant)', 1)")
            }
            try await capture.refreshTriggerList()
        }
        // Writes of `tenants`, one row each inserted, updated, deleted: the capture function's calls.
        func calls(_ tenants: [String]) async throws -> Int {
            try await Database.withConnection(url, logger: Self.logger) { connection in
                try await connection.query("BEGIN", logger: Self.logger)
                try await connection.query("SET LOCAL track_functions = 'pl'", logger: Self.logger)
                for (offset, tenant) in tenants.enumerated() {
                    for statement in [
                        "INSERT INTO notes VALUES ('\(tenant)', \(offset + 1), 'a')", "UPDATE notes SET body = 'b' WHERE id = \(offset + 1)",
                        "DELETE FROM notes WHERE id = \(offset + 1)",
                    ] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: Self.logger) }
                }
                let count = try await connection.query("""
                    SELECT coalesce(sum(pg_stat_get_xact_function_calls(p.oid)), 0)::int FROM pg_proc p
                    WHERE p.pronamespace = 'tenantry'::regnamespace AND p.proname LIKE 'capture_%'
                    """, logger: Self.logger).decode(Int.self).first(where: { _ in true }) ?? -1
                try await connection.query("ROLLBACK", logger: Self.logger)
                return count
            }
        }
        func refusesChange() async throws {
            _ = try await TestPostgres.strings(url, "INSERT INTO notes VALUES ('\(other)', 100, 'a') RETURNING ''")
            await #expect {
                _ = try await TestPostgres.strings(url, "UPDATE notes SET shop_id = '\(ids[0])' WHERE id = 100 RETURNING ''")
            } throws: { error in
                Database.sqlState(of: error) == "23514" && Database.message(of: error).contains("shop_id cannot change")
            }
            _ = try await TestPostgres.strings(url, "DELETE FROM notes WHERE id = 100 RETURNING ''")
        }
        // Nobody listed: the UPDATE trigger alone, which still refuses.
        #expect(try await Self.listed(url) == ["notes": ["UPDATE": []]])
        #expect(try await condition() == "none")
        #expect(try await calls([other]) == 0)
        try await refusesChange()
        try await addState(ids)
        let definition = try await condition()
        #expect(definition.contains("shop_id)::text") != typed, "\(type): \(definition)")
        #expect(definition.contains(array ?? "::text[]"), "\(type): \(definition)")
        // The discriminator is NOT NULL: the change test has no NULL tests.
        let update = try await TestPostgres.strings(url, "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'tenantry_capture_update'")
        #expect(update.count == 1 && update[0]?.contains("IS NULL") == false && update[0]?.contains("new.shop_id") == true, "\(update)")
        let all: [String: [String]?] = ["INSERT": ids.sorted(), "UPDATE": ids.sorted(), "DELETE": ids.sorted()]
        #expect(try await Self.listed(url) == ["notes": all])
        #expect(try await capture.triggerProblems() == [])
        #expect(try await calls(ids + [other]) == 3 * ids.count, "\(type): only the listed tenants' writes fire")
        try await refusesChange()
        // An id that is not its value's canonical text (or no value at all): compared as text, still exact.
        let odd = type.hasSuffix("int") || type == "integer" ? ["03", "x1"] : ["C3"]
        try await addState(odd)
        #expect(try await condition().contains("shop_id)::text") == (type != "text"), "\(type)")
        #expect(try await Self.listed(url)["notes"]?["INSERT"] == .some((ids + odd).sorted()))
        #expect(try await calls(ids + [other]) == 3 * ids.count, "\(type): \(other) is not listed as \(odd)")
        try await refusesChange()
    }
}
