import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("MoveOperations.cutover retries (what tenantry cutover --retries and the demo run)", .timeLimit(.minutes(3)))
struct MoveOperationsCutoverTests {
    /// Holds the tenant's write fence shared, as an in-flight write does, for `duration` (or until
    /// `release` yields); returns once it is held. The key is the one capture functions lock,
    /// `(fenceNamespace, hashtext(id))`, unless `namespace` and `key` (SQL) name another.
    static func holdFence(
        _ fixture: MoveFixture, _ tenant: TenantID, for duration: Duration, until release: AsyncStream<Void>? = nil,
        namespace: Int32 = AdvisoryLock.fenceNamespace, key: String? = nil
    ) async throws -> Task<Void, any Error> {
        let key = key ?? "hashtext('\(tenant.rawValue)')"
        let held = NIOLockedValueBox(false)
        let url = fixture.unifiedURL
        let task = Task {
            try await Database.withConnection(url, logger: TestPostgres.logger) { connection in
                try await connection.query("BEGIN", logger: TestPostgres.logger)
                try await connection.query(
                    PostgresQuery(unsafeSQL: "SELECT pg_advisory_xact_lock_shared(\(namespace), \(key))"), logger: TestPostgres.logger)
                held.withLockedValue { $0 = true }
                if let release {
                    for await _ in release { break }  // held until told (a signal, not a guess at timing)
                } else {
                    try await Task.sleep(for: duration)
                }
                try await connection.query("COMMIT", logger: TestPostgres.logger)
            }
        }
        while !held.withLockedValue({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        return task
    }

    @Test("a pause held too long aborts cleanly; with retries the tenant is cut over on a later attempt, and the retries are counted")
    func retries() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let (one, two) = (fixture.ids[0], fixture.ids[1])
        try await Operations.with(
            configuration: DoctorTests.configuration(fixture), databaseURL: fixture.unifiedURL, actor: "test", logger: TestPostgres.logger
        ) { operations in
            let move = try await operations.move()
            _ = try await move.migrateData(.tenants([one, two]))

            // No retries: an in-flight write outlasting the pause fails the tenant, nothing changed.
            let (unblock, unblocking) = AsyncStream.makeStream(of: Void.self)
            let blocker = try await Self.holdFence(fixture, one, for: .zero, until: unblock)
            let refused = try await move.cutover(.tenants([one]), maxPause: .milliseconds(100))
            unblocking.yield()
            try await blocker.value
            #expect(refused.cutover.isEmpty && refused.retries == 0 && refused.failed[one.rawValue]?.contains("aborted") == true,
                    "\(refused)")
            #expect(try await operations.catalog.requireTenant(one).placement == .shared)

            // Retries: the write ends while the cutover waits between attempts; the next attempt fits.
            let events = NIOLockedValueBox<[String]>([])
            // The write holds the fence until the first attempt has aborted: then it ends, and a
            // later attempt fits, however slow the machine.
            let (release, releasing) = AsyncStream.makeStream(of: Void.self)
            let slow = try await Self.holdFence(fixture, two, for: .zero, until: release)
            let report = try await move.cutover(
                .tenants([two]), maxPause: .milliseconds(100), retries: 10, retryDelay: .milliseconds(150),
                progress: { event in
                    events.withLockedValue { $0.append(event.message) }
                    if event.message.hasPrefix("aborted cleanly") { releasing.yield() }
                })
            try await slow.value
            #expect(report.failed.isEmpty && report.cutover.map(\.tenant) == [two], "\(report)")
            #expect(report.retries >= 1 && report.retries <= 10, "\(report.retries)")
            #expect(events.withLockedValue { $0 }.contains { $0.hasPrefix("aborted cleanly") && $0.contains("retry 1 of 10") })
            #expect(try await operations.catalog.requireTenant(two).placement == .dedicated)

            await #expect(throws: TenantryError.self) { _ = try await move.cutover(.tenants([one]), retries: 101) }
        }
    }
}
