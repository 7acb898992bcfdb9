import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("server moves: a retired tenant moves with its changes for unified, and restore-legacy still works", .timeLimit(.minutes(4)))
struct ServerMoveRetiredTests {
    @Test("retire → writes → start → writes → switch → writes → complete → restore-legacy: unified equals the new database, row by row")
    func retiredTenantMoves() async throws {
        let servers = try await ServerMoveFixture.make(shops: 1, rowsPerShop: 40)
        defer { Task { await servers.remove() } }
        let tenant = servers.fixture.ids[0]
        let archives = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-ret-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: archives) }
        try await servers.withOperations { operations in
            let move = try await operations.move()
            let retired = try await move.retire([tenant], archiveDirectory: archives, dryRun: false)
            let archive = try #require(retired.archive)
            #expect(try await TestPostgres.strings(
                servers.fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE shop_id = \(tenant.rawValue)") == ["0"])
            var next = 0
            func write(_ url: PostgresURL, _ count: Int) async throws {
                for _ in 0..<count {
                    next += 1
                    _ = try await TestPostgres.strings(
                        url, "INSERT INTO customers (first_name, last_name, email) VALUES ('R', 'T', 'retired.\(next)@example.com')")
                }
                _ = try await TestPostgres.strings(url, "UPDATE customers SET last_name = 'U\(next)' WHERE email = 'retired.1@example.com'")
            }
            let source = try await servers.databaseURL(tenant, onSecond: false)
            let target = try await servers.databaseURL(tenant, onSecond: true)
            try await write(source, 10)
            try await move.withServerMoves { moves in
                _ = try await moves.start(tenant, to: "second")
                try await write(source, 10)
                try await moves.catchUp(tenant)
                #expect(try await moves.verify(tenant).equal)
                _ = try await moves.switchTraffic(tenant, maxPause: .seconds(5))
                try await write(target, 10)
                try await moves.catchUp(tenant)
                _ = try await moves.complete(tenant)
            }
            try await write(target, 5)
            // Still retired: nothing went to unified; everything waits in the new database.
            #expect(try await TestPostgres.strings(
                servers.fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE shop_id = \(tenant.rawValue)") == ["0"])
            let waiting = try await TestPostgres.strings(target, "SELECT count(*)::text FROM tenantry.changes").first ?? nil
            #expect(Int(waiting ?? "0") ?? 0 >= 35, "the changes since retirement wait in the new database: \(waiting ?? "nil")")

            _ = try await move.restore(archive: archive)
            _ = try await move.catchUp(.all, timeout: .seconds(60))
            #expect(try await servers.rows(tenant, in: target) == (try await servers.unifiedRows(tenant)))
            #expect(try await TestPostgres.strings(
                servers.fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE email LIKE 'retired.%'") == ["35"])
        }
    }
}
