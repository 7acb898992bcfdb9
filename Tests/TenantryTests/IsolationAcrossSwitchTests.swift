import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("trust: a write whose snapshot predates a switch never lands on the wrong side", .timeLimit(.minutes(5)))
struct IsolationAcrossSwitchTests {
    /// Opens a transaction at `isolation` on `url` and takes its snapshot (a read) before `switch`
    /// runs; then inserts a customer of `shop` (with the discriminator when `unified`) and commits.
    /// Returns the SQLSTATE of the failure, or nil when the write committed.
    static func staleWrite(
        _ url: PostgresURL, isolation: TenantRouter.Isolation, shop: TenantID?, email: String,
        during switch: @Sendable () async throws -> Void
    ) async throws -> String? {
        try await Database.withConnection(url, logger: MoveFixture.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "BEGIN ISOLATION LEVEL \(isolation.sql)"), logger: MoveFixture.logger)
            try await connection.query("SELECT count(*) FROM customers", logger: MoveFixture.logger)
            try await `switch`()
            do {
                let columns = shop == nil ? "" : "shop_id, "
                let values = shop.map { "\($0.rawValue), " } ?? ""
                try await connection.query(PostgresQuery(unsafeSQL: """
                    INSERT INTO customers (\(columns)first_name, last_name, email) VALUES (\(values)'Stale', 'Snapshot', '\(email)')
                    """), logger: MoveFixture.logger)
                try await connection.query("COMMIT", logger: MoveFixture.logger)
                return nil
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: MoveFixture.logger)
                return Database.sqlState(of: error) ?? Database.message(of: error)
            }
        }
    }

    @Test("cutover and rollback: READ COMMITTED is refused as moved, REPEATABLE READ and SERIALIZABLE get 40001; nothing is stranded",
          arguments: TenantRouter.Isolation.allCases)
    func acrossCutoverAndRollback(isolation: TenantRouter.Isolation) async throws {
        let fixture = try await MoveFixture.make(shops: 1, rowsPerShop: 30)
        let shop = fixture.ids[0]
        try await fixture.withMover { copier, relay, catalog in
            _ = try await copier.copy(shop)
            let cutover = fixture.cutover(catalog: catalog, relay: relay)
            // A unified transaction whose snapshot predates the cutover.
            let forward = try await Self.staleWrite(fixture.unifiedURL, isolation: isolation, shop: shop, email: "stale-forward@example.com") {
                _ = try await cutover.cutover(shop, maxPause: .seconds(30))
            }
            #expect(forward == (isolation == .readCommitted ? "25006" : "40001"), "\(isolation): \(forward ?? "committed")")
            // A tenant-database transaction whose snapshot predates the rollback.
            let tenantURL = try await fixture.tenantURL(shop)
            let reverse = try await Self.staleWrite(tenantURL, isolation: isolation, shop: nil, email: "stale-reverse@example.com") {
                _ = try await cutover.rollback(shop, maxPause: .seconds(30))
            }
            #expect(reverse == (isolation == .readCommitted ? "25006" : "40001"), "\(isolation): \(reverse ?? "committed")")
            _ = try await relay.catchUp(timeout: .seconds(30))
            // Neither write exists anywhere: it failed loudly, as the application was told.
            for url in [fixture.unifiedURL, tenantURL] {
                #expect(try await TestPostgres.strings(url, "SELECT count(*)::text FROM customers WHERE email LIKE 'stale-%'") == ["0"])
            }
            #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT count(*)::text FROM tenantry.changes") == ["0"])
        }
    }

    @Test("a REPEATABLE READ transaction open when capture turns on is waited for; its write is copied", arguments: [
        TenantRouter.Isolation.repeatableRead, .serializable,
    ])
    func acrossCaptureEnable(isolation: TenantRouter.Isolation) async throws {
        let fixture = try await MoveFixture.make(shops: 1, rowsPerShop: 30)
        let shop = fixture.ids[0]
        try await fixture.withMover { copier, relay, _ in
            let copied = NIOLockedValueBox<Task<Void, any Error>?>(nil)
            let failure = try await Self.staleWrite(fixture.unifiedURL, isolation: isolation, shop: shop, email: "stale-enable@example.com") {
                copied.withLockedValue { $0 = Task { _ = try await copier.copy(shop) } }
                // Capture is on (the copy now waits for this transaction): then write.
                try await eventually("capture is on") {
                    try await TestPostgres.strings(
                        fixture.unifiedURL, "SELECT capturing::text FROM tenantry.capture_state WHERE tenant_id = '\(shop.rawValue)'") == ["true"]
                }
            }
            #expect(failure == nil)
            try await copied.withLockedValue { $0 }?.value
            _ = try await relay.catchUp(timeout: .seconds(30))
            #expect(try await TestPostgres.strings(
                try await fixture.tenantURL(shop), "SELECT count(*)::text FROM customers WHERE email = 'stale-enable@example.com'") == ["1"])
            #expect(try await fixture.independentDifferences(shop) == [])
        }
    }

    @Test("a prepared transaction holding a tenant's write keeps capture from finishing until it is resolved")
    func preparedTransaction() async throws {
        let fixture = try await MoveFixture.make(shops: 1, rowsPerShop: 20)
        let shop = fixture.ids[0]
        try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
            try await connection.query("BEGIN", logger: MoveFixture.logger)
            try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(shop.rawValue), 'Two', 'Phase', 'prepared@example.com')
                """), logger: MoveFixture.logger)
            try await connection.query("PREPARE TRANSACTION 'tenantry_test_2pc'", logger: MoveFixture.logger)
        }
        var capture = fixture.capture()
        capture.enableTimeout = .milliseconds(600)
        await #expect {
            try await capture.enable(shop)
        } throws: { error in
            (error as? TenantryError)?.code == .timeout && "\(error)".contains("prepared transaction 'tenantry_test_2pc'")
        }
        try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
            try await connection.query("COMMIT PREPARED 'tenantry_test_2pc'", logger: MoveFixture.logger)
        }
        try await fixture.withMover { copier, relay, _ in
            _ = try await copier.copy(shop)
            _ = try await relay.catchUp(timeout: .seconds(30))
        }
        #expect(try await TestPostgres.strings(
            try await fixture.tenantURL(shop), "SELECT count(*)::text FROM customers WHERE email = 'prepared@example.com'") == ["1"])
    }
}
