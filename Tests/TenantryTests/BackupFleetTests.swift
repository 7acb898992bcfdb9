import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("backups of the whole fleet: resume and retention", .timeLimit(.minutes(5)))
struct BackupFleetTests {
    @Test("--all backs up every provisioned tenant; a run that did not finish is resumed, skipping what it did")
    func allAndResume() async throws {
        let setup = try await BackupFixture.make(shops: 3, rowsPerShop: 5)
        let ids = setup.fixture.ids
        // An interrupted run: its run file says unfinished, and it had backed up the first tenant.
        try await setup.withOperations { operations in
            _ = try await operations.backups().backup(ids[0], into: setup.store)
        }
        let runFile = setup.store.root + "/.tenantry-backup-run.json"
        try Data("{\"startedAt\": \(Date().timeIntervalSince1970 - 60), \"tenants\": []}".utf8).write(to: URL(fileURLWithPath: runFile))
        let events = BackupEvents()
        let report = try await setup.withOperations { operations in
            try await operations.backups().backupAll(into: setup.store, concurrency: 2) { events.add($0) }
        }
        #expect(report.resumed == [ids[0]])
        #expect(report.written.map(\.tenant) == Array(ids.dropFirst()))
        #expect(report.failed.isEmpty)
        #expect(report.bytes == report.written.reduce(0) { $0 + $1.bytes })
        #expect(events.all.last?.done == 3 && events.all.last?.total == 3)
        #expect(events.all.first?.message.contains("resuming") == true)
        #expect(Set(try setup.store.list().map(\.tenant)) == Set(ids))
        // The run finished: the next --all starts a new one and backs up everyone again.
        let again = try await setup.withOperations { try await $0.backups().backupAll(into: setup.store) }
        #expect(again.resumed.isEmpty && again.written.count == 3)
        #expect(try setup.store.list().count == 6)
        // Nothing partial is left; every file is 0600.
        for tenant in ids {
            for file in try FileManager.default.contentsOfDirectory(atPath: setup.store.root + "/\(tenant.rawValue)") {
                #expect(!file.hasSuffix(".partial"))
                let mode = try FileManager.default.attributesOfItem(atPath: setup.store.root + "/\(tenant.rawValue)/\(file)")[.posixPermissions] as? Int
                #expect(mode == 0o600, "\(file)")
            }
        }
    }

    @Test("prune keeps the newest of each of the last N days and weeks per tenant, and always the newest")
    func prune() throws {
        let store = BackupStore(root: FileManager.default.temporaryDirectory.path + "/tenantry-prune-\(UUID().uuidString.prefix(8))")
        let day: TimeInterval = 86_400
        // Monday 2026-11-30 12:00 UTC; two backups a day for 20 days back, for two tenants.
        let monday = Date(timeIntervalSince1970: 1_796_040_000)
        var written: [String: Date] = [:]
        for tenant in ["a", "b"] {
            try FileManager.default.createDirectory(atPath: store.root + "/\(tenant)", withIntermediateDirectories: true)
            for back in 0..<20 {
                for hour in [0.0, 6.0] {
                    let at = monday.addingTimeInterval(-Double(back) * day - hour * 3600)
                    let path = try Self.writeManifest(tenant, at: at, in: store)
                    written[path] = at
                }
            }
        }
        let dry = try Backups.prune(store, keepDaily: 3, keepWeekly: 2, dryRun: true)
        #expect(try store.list().count == 80)
        let report = try Backups.prune(store, keepDaily: 3, keepWeekly: 2)
        #expect(report == dry)
        // Per tenant: the newest of 3 days (30th, 29th, 28th) and the newest of 2 ISO weeks (the
        // week of the 30th — the same backup — and of the 29th, a Sunday: the same as the day's).
        let kept = try store.list()
        #expect(kept.count == 6, "\(kept.map(\.path))")
        for tenant in ["a", "b"] {
            let days = kept.filter { $0.tenant.rawValue == tenant }.map { Int(monday.timeIntervalSince($0.startedAt) / day) }.sorted()
            #expect(days == [0, 1, 2])
        }
        #expect(report.removed.count == 74)
        for path in report.removed { #expect(!FileManager.default.fileExists(atPath: path)) }
        // A killed backup's partial file goes once it is an hour old; a fresh one stays.
        let stale = store.root + "/a/a-1.dump.partial", fresh = store.root + "/a/a-2.dump.partial"
        for path in [stale, fresh] { try Data("x".utf8).write(to: URL(fileURLWithPath: path)) }
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: stale)
        // Zero and zero still keep each tenant's newest.
        let last = try Backups.prune(store, keepDaily: 0, keepWeekly: 0)
        #expect(try store.list().count == 2)
        #expect(last.removed.contains(stale) && !last.removed.contains(fresh))
        #expect(!FileManager.default.fileExists(atPath: stale) && FileManager.default.fileExists(atPath: fresh))
        #expect(throws: TenantryError.self) { try Backups.prune(store, keepDaily: -1, keepWeekly: 0) }
    }

    static func writeManifest(_ tenant: String, at: Date, in store: BackupStore) throws -> String {
        let stamp = Int(at.timeIntervalSince1970)
        let name = "\(tenant)-\(stamp)"
        try Data("dump".utf8).write(to: URL(fileURLWithPath: store.root + "/\(tenant)/\(name).dump"))
        let formatter = ISO8601DateFormatter()
        let json = """
            {"format": 1, "tenant": "\(tenant)", "server": "default", "database": "d", "schema_version": 1, "bytes": 4,
             "sha256": "x", "started_at": "\(formatter.string(from: at))", "finished_at": "\(formatter.string(from: at))",
             "postgres_version": "15", "tables": {}, "dump_file": "\(name).dump"}
            """
        let path = store.root + "/\(tenant)/\(name).json"
        try Data(json.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// Progress events, collected.
final class BackupEvents: Sendable {
    private let events = NIOLockedValueBox<[OperationProgress]>([])
    func add(_ event: OperationProgress) { events.withLockedValue { $0.append(event) } }
    var all: [OperationProgress] { events.withLockedValue { $0 } }
}
