import Foundation
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("restore-legacy killed after its load: a re-run finishes it", .timeLimit(.minutes(4)))
struct RestoreInterruptedTests {
    @Test("restored rows committed, stream not yet resumed: the re-run loads nothing twice, resumes the stream, and unified catches up")
    func rerunFinishes() async throws {
        try await RetirementTests().withDedicated(shops: 1) { fixture, relay, catalog, retirement in
            let shop = fixture.ids[0]
            let archives = try CLIRunner.makeDirectory()
            let retired = try await retirement.retire([shop], archiveDirectory: archives, dryRun: false)
            // Written while retired: recorded in the tenant database, for unified after the restore.
            _ = try await TestPostgres.strings(try await fixture.tenantURL(shop), """
                INSERT INTO customers (first_name, last_name, email) VALUES ('While', 'Retired', 'while-retired@example.com')
                """)
            struct Killed: Error {}
            var killed = retirement
            killed.afterRestoreLoad = { _ in throw Killed() }
            await #expect(throws: Killed.self) { _ = try await killed.restore(archive: retired.archive!) }
            #expect(try await catalog.move(shop)?.phase == .retired)

            let rerun = try await retirement.restore(archive: retired.archive!)
            #expect(rerun.tenants == [shop] && rerun.tables.isEmpty, "nothing loaded twice: \(rerun.tables)")
            #expect(try await catalog.move(shop)?.phase == .dedicated)
            _ = try await relay.catchUp(timeout: .seconds(30))
            #expect(try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE email = 'while-retired@example.com'") == ["1"])
            #expect(try await fixture.independentDifferences(shop) == [])
        }
    }
}
