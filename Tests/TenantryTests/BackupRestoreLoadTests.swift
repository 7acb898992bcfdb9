import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("restore in place under router writes", .timeLimit(.minutes(5)))
struct BackupRestoreLoadTests {
    @Test("transactions keep going through the swap: none fails, each acknowledged one is in the old or the restored database, every one acknowledged after the restore in the restored one")
    func writesThroughTheSwap() async throws {
        let setup = try await BackupFixture.make(shops: 2)
        let (a, b) = (setup.fixture.ids[0], setup.fixture.ids[1])
        let original = try await setup.database(a)
        let manifest = try await setup.withOperations { try await $0.backups().backup(a, into: setup.store) }
        let otherBefore = try await setup.rows(in: try await setup.database(b))

        struct Ack: Sendable { let id: Int64; let afterRestore: Bool }
        let state = NIOLockedValueBox((next: Int64(1000), acks: [Ack](), errors: [String](), restored: false, stop: false))
        let report = try await setup.withOperations { operations in
            let router = operations.router(keyring: setup.fixture.base.keyring, monitor: nil)
            return try await router.running {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            while !state.withLockedValue({ $0.stop }) {
                                let id = state.withLockedValue { state -> Int64 in state.next += 1; return state.next }
                                do {
                                    try await router.withTransaction(tenant: a, intent: .write) { connection in
                                        try await connection.query("INSERT INTO restore_probe VALUES (\(id), 'load')")
                                    }
                                    state.withLockedValue { $0.acks.append(Ack(id: id, afterRestore: $0.restored)) }
                                } catch {
                                    state.withLockedValue { $0.errors.append(String(reflecting: error)) }
                                }
                                try await Task.sleep(for: .milliseconds(5))
                            }
                        }
                    }
                    // The writers stop whatever happens (a group waits for its tasks before it throws).
                    defer { state.withLockedValue { $0.stop = true } }
                    try await Task.sleep(for: .milliseconds(500))
                    let report = try await operations.backups().restore(a, from: manifest.path!, maxPause: .seconds(5))
                    state.withLockedValue { $0.restored = true }
                    try await Task.sleep(for: .milliseconds(500))
                    state.withLockedValue { $0.stop = true }
                    try await group.waitForAll()
                    return report
                }
            }
        }
        let final = state.withLockedValue { $0 }
        #expect(final.errors.isEmpty, "\(final.errors.prefix(3))")
        let restored = Set(try await TestPostgres.strings(try await setup.url(report.database), "SELECT id::text FROM restore_probe")
            .compactMap { $0.flatMap(Int64.init) })
        let previous = Set(try await TestPostgres.strings(try await setup.url(report.previousDatabase!), "SELECT id::text FROM restore_probe")
            .compactMap { $0.flatMap(Int64.init) })
        let after = final.acks.filter(\.afterRestore)
        #expect(!after.isEmpty && final.acks.count > after.count, "\(final.acks.count) acknowledged, \(after.count) after the restore")
        // Acknowledged after the restore returned: in the restored database, and never in the old one.
        #expect(after.filter { !restored.contains($0.id) }.isEmpty)
        #expect(after.filter { previous.contains($0.id) }.isEmpty)
        // Every acknowledged write is somewhere, once: the old database up to the swap, the restored one after.
        #expect(final.acks.filter { !restored.contains($0.id) && !previous.contains($0.id) }.isEmpty)
        #expect(restored.intersection(previous).isEmpty)
        #expect(try await setup.database(a) == report.database && report.database != original)
        #expect(try await setup.rows(in: try await setup.database(b)) == otherBefore)
        #expect(report.pauseMilliseconds < 5000)
    }
}
