import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("online move: retire and restore the unified rows", .timeLimit(.minutes(4)))
struct MoveRetireTests {
    @Test("retire-legacy refuses while a shop differs, succeeds after the fix; the archive restores the exact rows; reverse capture fills the gap")
    func retireAndRestore() async throws {
        let fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 40)
        let logger = MoveFixture.logger
        try await fixture.withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            let cutover = Cutover(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: logger)
            for id in fixture.ids.prefix(2) { _ = try await cutover.cutover(id, maxPause: .seconds(30)) }
            let retirement = Retirement(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: logger)
            func rows(_ shop: Int) async throws -> [String?] {
                try await TestPostgres.strings(fixture.unifiedURL, "SELECT ROW(c.*)::text FROM customers c WHERE shop_id = \(shop) ORDER BY id")
            }
            let shop2Before = try await rows(2)
            let shop3Before = try await rows(3)
            // Drift in shop 2's database, behind capture's back.
            let tenant2 = try await fixture.tenantURL(fixture.ids[1])
            let original = try await TestPostgres.strings(tenant2, "SELECT notes FROM customers ORDER BY id LIMIT 1")[0]
            try await Database.withConnection(tenant2, logger: logger) { connection in
                try await connection.query("SET tenantry.applying = 'on'", logger: logger)
                try await connection.query(
                    "UPDATE customers SET notes = 'drift' WHERE id = (SELECT min(id) FROM customers)", logger: logger)
            }
            let archiveRoot = try CLIRunner.makeDirectory()
            await #expect {
                _ = try await retirement.retire(archiveDirectory: archiveRoot, dryRun: false)
            } throws: { error in
                Database.message(of: error).contains("refused") && Database.message(of: error).contains("tenant 2")
            }
            #expect(try await rows(2) == shop2Before, "nothing was deleted")
            try await Database.withConnection(tenant2, logger: logger) { connection in
                try await connection.query("SET tenantry.applying = 'on'", logger: logger)
                try await connection.query(
                    "UPDATE customers SET notes = \(original) WHERE id = (SELECT min(id) FROM customers)", logger: logger)
            }
            let dry = try await retirement.retire(archiveDirectory: archiveRoot, dryRun: true)
            #expect(dry.dryRun && dry.tables.reduce(0) { $0 + $1.rows } > 0)
            #expect(try await rows(2) == shop2Before)
            let report = try await retirement.retire(archiveDirectory: archiveRoot, dryRun: false)
            #expect(report.tenants == Array(fixture.ids.prefix(2)))
            let archive = try #require(report.archive)
            let left1 = try await rows(1)
            let left2 = try await rows(2)
            #expect(left1.isEmpty && left2.isEmpty)
            #expect(try await rows(3) == shop3Before, "a shared shop keeps its rows")
            #expect(try await catalog.move(fixture.ids[0])?.phase == .retired)
            await #expect(throws: (any Error).self) {
                try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
                    try await connection.query(
                        "INSERT INTO customers (shop_id, first_name, last_name) VALUES (1, 'late', 'write')", logger: logger)
                }
            }
            // The application keeps writing to shop 1's database; reverse capture records it.
            try await Database.withConnection(try await fixture.tenantURL(fixture.ids[0]), logger: logger) { connection in
                try await connection.query(
                    "INSERT INTO customers (first_name, last_name, email) VALUES ('after', 'retire', 'after@example.com')", logger: logger)
            }
            let restored = try await retirement.restore(archive: archive)
            #expect(restored.tenants == Array(fixture.ids.prefix(2)))
            #expect(try await rows(2) == shop2Before, "the archive restores the exact rows")
            #expect(try await catalog.move(fixture.ids[0])?.phase == .dedicated)
            _ = try await relay.catchUp(timeout: .seconds(60))
            for id in fixture.ids.prefix(2) {
                #expect(try await fixture.independentDifferences(id) == [], "tenant \(id) is current again")
            }
        }
    }
}
