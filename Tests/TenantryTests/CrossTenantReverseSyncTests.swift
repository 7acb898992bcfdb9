import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Step 8: the ways a write could be lost or a tenant could touch another tenant's rows, each
/// tried against real PostgreSQL.
@Suite("trust: reverse sync never touches another tenant's row", .timeLimit(.minutes(4)))
struct CrossTenantReverseSyncTests {
    @Test("a colliding explicit id and an id update in a tenant DB become a reverse dead letter naming both tenants; unified untouched")
    func collidingIds() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 40)
        let (mine, other) = (fixture.ids[0], fixture.ids[1])
        try await fixture.withMover { copier, relay, catalog in
            _ = try await copier.copy(mine)
            let cutover = fixture.cutover(catalog: catalog, relay: relay)
            _ = try await cutover.cutover(mine, maxPause: .seconds(30))
            // Two customers of the other shop, as unified holds them.
            let victims = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT id::text FROM customers WHERE shop_id = \(other.rawValue) ORDER BY id LIMIT 2").compactMap { $0 }
            let before = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT ROW(c.*)::text FROM customers c WHERE id IN (\(victims.joined(separator: ","))) ORDER BY id")
            // The dedicated tenant writes an explicit id that is the other shop's in unified.
            let tenantURL = try await fixture.tenantURL(mine)
            try await Database.withConnection(tenantURL, logger: MoveFixture.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: """
                    INSERT INTO customers (id, first_name, last_name, email) VALUES (\(victims[0]), 'Mal', 'Lory', 'evil@example.com')
                    """), logger: MoveFixture.logger)
            }
            _ = try await relay.catchUp(timeout: .seconds(30))
            let after = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT ROW(c.*)::text FROM customers c WHERE id IN (\(victims.joined(separator: ","))) ORDER BY id")
            #expect(after == before, "the other shop's rows in unified are unchanged")
            let letters = try await fixture.deadLetters().list()
            #expect(letters.count == 1)
            #expect(letters.first?.direction == "reverse")
            #expect(letters.first?.tenant == mine)
            #expect(letters.first?.error.contains("tenant \(mine)") == true && letters.first?.error.contains("tenant \(other)") == true,
                    "\(letters.first?.error ?? "none")")
            // Visible where the operator looks, and it blocks rollback with one clear error.
            let state = try await fixture.capture().states([mine]).first
            #expect(state?.syncPaused == true)
            #expect(state?.deadLetters == 1)
            await #expect {
                _ = try await cutover.rollback(mine, maxPause: .seconds(30))
            } throws: { error in
                (error as? TenantryError)?.code == .conflict && "\(error)".contains("dead letter")
            }
            #expect(try await catalog.move(mine)?.phase == .dedicated)

            // The runbook's fix: the tenant's row takes an id of its own; the letter is discarded.
            try await Database.withConnection(tenantURL, logger: MoveFixture.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: """
                    UPDATE customers SET id = nextval(pg_get_serial_sequence('customers', 'id')) WHERE id = \(victims[0])
                    """), logger: MoveFixture.logger)
            }
            let discarded = try await fixture.deadLetters().discard(tenant: mine)
            #expect(discarded == 1)
            _ = try await relay.catchUp(timeout: .seconds(30))
            #expect(try await fixture.capture().states([mine]).first?.syncPaused == false)
            #expect(try await fixture.independentDifferences(mine) == [])

            // An id update onto the other shop's key: refused the same way.
            try await Database.withConnection(tenantURL, logger: MoveFixture.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: """
                    UPDATE customers SET id = \(victims[1]) WHERE id = (SELECT min(id) FROM customers WHERE email = 'evil@example.com')
                    """), logger: MoveFixture.logger)
            }
            _ = try await relay.catchUp(timeout: .seconds(30))
            let afterUpdate = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT ROW(c.*)::text FROM customers c WHERE id IN (\(victims.joined(separator: ","))) ORDER BY id")
            #expect(afterUpdate == before)
            #expect(try await fixture.capture().states([mine]).first?.deadLetters == 1)
        }
    }
}
