import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("retire-legacy: pause first, archive and delete the same rows, durable archive, strict restore", .timeLimit(.minutes(4)))
struct RetirementTests {
    let logger = MoveFixture.logger

    /// `shops` HandyShop shops, all copied and cut over (dedicated).
    func withDedicated(
        shops: Int, _ body: @Sendable (MoveFixture, Relay, Catalog, Retirement) async throws -> Void
    ) async throws {
        let fixture = try await MoveFixture.make(shops: shops, rowsPerShop: 30)
        try await fixture.withDedicatedTenants { try await body(fixture, $0, $1, $2) }
    }

    func unifiedRows(_ fixture: MoveFixture, _ id: TenantID) async throws -> Int {
        var total = 0
        for table in fixture.plan.tables {
            let count = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT count(*)::text FROM \"\(table.name)\" WHERE shop_id = \(id.rawValue)")
            total += Int(count.first.flatMap { $0 } ?? "0") ?? 0
        }
        return total
    }

    static func mode(_ path: String) throws -> Int {
        ((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? NSNumber)?.intValue ?? -1
    }

    @Test("a reverse-sync write landing between archive and delete is not deleted unarchived: restore and the relay bring it back")
    func writeBetweenArchiveAndDelete() async throws {
        try await withDedicated(shops: 2) { fixture, relay, catalog, retirement in
            let logger = logger
            let shop = fixture.ids[0]
            let tenantURL = try await fixture.tenantURL(shop)
            let before = try await unifiedRows(fixture, shop)
            var retirement = retirement
            retirement.beforeDelete = { id in
                // The application writes to the tenant's database, and the relay runs the reverse
                // stream at once: before the fix it applied the row to unified here, the delete
                // removed it, and neither the archive nor the outbox had it any more.
                try await Database.withConnection(tenantURL, logger: logger) { connection in
                    try await connection.query(
                        "INSERT INTO customers (first_name, last_name, email) VALUES ('in', 'window', 'window@example.com')", logger: logger)
                }
                _ = try await relay.catchUp([id], timeout: .seconds(30))
            }
            let archiveRoot = try CLIRunner.makeDirectory()
            let report = try await retirement.retire([shop], archiveDirectory: archiveRoot, dryRun: false)
            let archive = try #require(report.archive)
            let manifest = try JSONSerialization.jsonObject(
                with: try Data(contentsOf: URL(fileURLWithPath: archive + "/manifest.json"))) as? [String: Any]
            let archived = (manifest?["tables"] as? [[String: Any]] ?? []).reduce(0) { $0 + ($1["rows"] as? Int ?? 0) }
            #expect(archived == before, "exactly the rows unified had are archived")
            #expect(report.tables.reduce(0) { $0 + $1.rows } == archived, "deleted == archived")
            #expect(try await unifiedRows(fixture, shop) == 0)
            #expect(try await TestPostgres.strings(
                tenantURL, "SELECT sync_paused::text FROM tenantry.capture_state WHERE tenant_id = '\(shop.rawValue)'") == ["true"])
            _ = try await retirement.restore(archive: archive)
            _ = try await relay.catchUp(timeout: .seconds(60))
            #expect(try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT email FROM customers WHERE shop_id = \(shop.rawValue) AND last_name = 'window'")
                == ["window@example.com"], "the write made in the window reached unified")
            #expect(try await fixture.independentDifferences(shop) == [], "unified is current again, nothing lost")
        }
    }

    @Test("archive: directories 0700, files 0600; the manifest appears only complete, after each tenant's files; a failed tenant rolls back")
    func durableArchive() async throws {
        try await withDedicated(shops: 2) { fixture, relay, catalog, retirement in
            let logger = logger
            let (first, second) = (fixture.ids[0], fixture.ids[1])
            let secondBefore = try await unifiedRows(fixture, second)
            let seen = NIOLockedValueBox<[String: [String]]>([:])
            let archiveRoot = try CLIRunner.makeDirectory()
            let unifiedURL = fixture.unifiedURL
            var retirement = retirement
            retirement.concurrency = 1  // one tenant after the other: the manifest's order is what is checked
            retirement.beforeDelete = { id in
                // What the manifest lists while this tenant's files are written but not yet committed.
                let roots = try FileManager.default.contentsOfDirectory(atPath: archiveRoot)
                let path = archiveRoot + "/" + (roots.first ?? "") + "/manifest.json"
                var tenants: [String] = ["absent"]
                if let data = FileManager.default.contents(atPath: path) {
                    let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
                    tenants = Array(Set((object?["tables"] as? [[String: Any]] ?? []).compactMap { $0["tenant"] as? String })).sorted()
                }
                seen.withLockedValue { $0[id.rawValue] = tenants }
                if id == second {
                    // Another session changes one of its rows after the snapshot: the delete must not go on.
                    try await Database.withConnection(unifiedURL, logger: logger) { connection in
                        try await connection.query("SET tenantry.applying = 'on'", logger: logger)
                        try await connection.query(
                            "UPDATE customers SET notes = 'changed' WHERE id = (SELECT min(id) FROM customers WHERE shop_id = \(second.rawValue))",
                            logger: logger)
                    }
                }
            }
            await #expect(throws: (any Error).self) {
                _ = try await retirement.retire([first, second], archiveDirectory: archiveRoot, dryRun: false)
            }
            #expect(seen.withLockedValue { $0 } == [first.rawValue: ["absent"], second.rawValue: [first.rawValue]],
                    "no manifest before the first tenant's files are complete; then only complete tenants")
            let root = archiveRoot + "/" + (try FileManager.default.contentsOfDirectory(atPath: archiveRoot).first ?? "")
            #expect(try Self.mode(root) == 0o700)
            #expect(try Self.mode(root + "/" + first.rawValue) == 0o700)
            #expect(try Self.mode(root + "/manifest.json") == 0o600)
            let files = try FileManager.default.contentsOfDirectory(atPath: root + "/" + first.rawValue)
            #expect(files.count == fixture.plan.tables.count)
            for file in files { #expect(try Self.mode(root + "/" + first.rawValue + "/" + file) == 0o600, "\(file)") }
            #expect(try FileManager.default.contentsOfDirectory(atPath: root).sorted() == ["1", "manifest.json"],
                    "no temporary manifest, no files of the rolled-back tenant")
            // The failed tenant: every row still in unified, still dedicated, its reverse stream running again.
            #expect(try await unifiedRows(fixture, second) == secondBefore)
            #expect(try await catalog.move(second)?.phase == .dedicated)
            #expect(try await TestPostgres.strings(
                try await fixture.tenantURL(second), "SELECT sync_paused::text FROM tenantry.capture_state WHERE tenant_id = '2'") == ["false"])
            #expect(try await catalog.move(first)?.phase == .retired)
            #expect(try await unifiedRows(fixture, first) == 0)
            // The archive of the tenant that did retire restores it.
            _ = try await retirement.restore(archive: root)
            _ = try await relay.catchUp(timeout: .seconds(60))
            #expect(try await fixture.independentDifferences(first) == [])
        }
    }

    @Test("restore-legacy refuses a manifest whose file names leave the archive, or whose columns differ: one clear error, nothing changed")
    func strictRestore() async throws {
        try await withDedicated(shops: 1) { fixture, relay, catalog, retirement in
            let shop = fixture.ids[0]
            let before = try await unifiedRows(fixture, shop)
            let report = try await retirement.retire([shop], archiveDirectory: try CLIRunner.makeDirectory(), dryRun: false)
            let archive = try #require(report.archive)
            let original = try #require(
                try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: archive + "/manifest.json"))) as? [String: Any])
            let tables = try #require(original["tables"] as? [[String: Any]])
            let customers = try #require(tables.firstIndex { $0["table"] as? String == "customers" })
            let customersFile = try #require(tables[customers]["file"] as? String)

            /// A copy of the archive whose manifest has the customers entry changed by `edit`.
            func tampered(_ edit: (inout [String: Any]) -> Void) throws -> String {
                let copy = try CLIRunner.makeDirectory() + "/archive"
                try FileManager.default.copyItem(atPath: archive, toPath: copy)
                // A loadable file outside the archive, where `../x` points.
                try? FileManager.default.copyItem(atPath: archive + "/" + customersFile, toPath: copy + "/../x")
                var manifest = original
                var entries = tables
                edit(&entries[customers])
                manifest["tables"] = entries
                try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: copy + "/manifest.json"))
                return copy
            }
            let cases: [(String, String)] = [
                (try tampered { $0["file"] = "../x" }, "leaves the archive directory"),
                (try tampered { $0["file"] = "/etc/passwd" }, "leaves the archive directory"),
                (try tampered { $0["columns"] = Array(($0["columns"] as? [String] ?? []).dropLast()) }, "has columns"),
                (try tampered { $0["columns"] = Array(($0["columns"] as? [String] ?? []).dropLast()) + ["password"] }, "has columns"),
            ]
            for (copy, expected) in cases {
                await #expect {
                    _ = try await retirement.restore(archive: copy)
                } throws: { error in
                    let message = Database.message(of: error)
                    return message.hasPrefix("restore-legacy refused: ") && message.contains(expected)
                        && message.hasSuffix("nothing was restored") && !message.contains("\n")
                }
                #expect(try await unifiedRows(fixture, shop) == 0, "nothing restored from \(copy)")
                #expect(try await catalog.move(shop)?.phase == .retired)
            }
            _ = try await retirement.restore(archive: archive)
            #expect(try await unifiedRows(fixture, shop) == before)
            _ = try await relay.catchUp(timeout: .seconds(60))
            #expect(try await fixture.independentDifferences(shop) == [])
        }
    }

    @Test("a retire-legacy killed after pausing reverse sync: a re-run resumes the stream (delete not committed) or finishes the phase (delete committed)")
    func interruptedRetirement() async throws {
        try await withDedicated(shops: 2) { fixture, relay, catalog, retirement in
            let logger = logger
            let (first, second) = (fixture.ids[0], fixture.ids[1])
            // 1. Killed after the pause, before the delete: the tenant's stream is paused in its
            // database and its later writes wait there.
            let tenantURL = try await fixture.tenantURL(first)
            try await Database.withConnection(tenantURL, logger: logger) { connection in
                try await connection.query("""
                    UPDATE tenantry.capture_state SET sync_paused = true, paused_reason = \(Retirement.pausedReason),
                        pause_kind = 'retirement'
                    WHERE tenant_id = \(first.rawValue)
                    """, logger: logger)
                try await connection.query(
                    "INSERT INTO customers (first_name, last_name, email) VALUES ('Late', 'Write', 'late@example.com')", logger: logger)
            }
            let archives = try CLIRunner.makeDirectory()
            let report = try await retirement.retire([first], archiveDirectory: archives, dryRun: false)
            #expect(report.tenants == [first])
            #expect(try await catalog.move(first)?.phase == .retired)
            let archived = try String(contentsOfFile: report.archive! + "/manifest.json", encoding: .utf8)
            #expect(archived.contains("\"customers\""))
            // The late write was applied before the archive was taken: restore brings it back.
            _ = try await retirement.restore(archive: report.archive!)
            _ = try await relay.catchUp(timeout: .seconds(30))
            #expect(try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE email = 'late@example.com'") == ["1"])

            // 2. Killed after the delete committed, before the phase: a re-run only sets the phase.
            _ = try await retirement.retire([second], archiveDirectory: archives, dryRun: false)
            try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
                try await connection.query(
                    "UPDATE tenantry.moves SET phase = 'dedicated' WHERE tenant_id = \(second.rawValue)", logger: logger)
            }
            let rerun = try await retirement.retire([second], archiveDirectory: archives, dryRun: false)
            #expect(rerun.tenants == [second] && rerun.tables.isEmpty)
            #expect(try await catalog.move(second)?.phase == .retired)
            #expect(try await unifiedRows(fixture, second) == 0)
        }
    }

    @Test("restore-legacy takes only the archive of a tenant's latest retirement")
    func olderArchiveRefused() async throws {
        try await withDedicated(shops: 1) { fixture, relay, catalog, retirement in
            let shop = fixture.ids[0]
            let archives = try CLIRunner.makeDirectory()
            let first = try await retirement.retire([shop], archiveDirectory: archives, dryRun: false)
            _ = try await retirement.restore(archive: first.archive!)
            _ = try await relay.catchUp(timeout: .seconds(30))
            let second = try await retirement.retire([shop], archiveDirectory: archives, dryRun: false)
            await #expect {
                _ = try await retirement.restore(archive: first.archive!)
            } throws: { error in
                "\(error)".contains("retired again after this archive was made")
                    && "\(error)".contains((second.archive! as NSString).lastPathComponent)
            }
            #expect(try await catalog.move(shop)?.phase == .retired)
            #expect(try await unifiedRows(fixture, shop) == 0)
            _ = try await retirement.restore(archive: second.archive!)
            #expect(try await catalog.move(shop)?.phase == .dedicated)
        }
    }
}
