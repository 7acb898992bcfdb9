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
                try await Task.sleep(for: .milliseconds(300))
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

@Suite("trust: only Tenantry's apply sessions skip capture", .timeLimit(.minutes(3)))
struct ApplyingBypassTests {
    @Test("an application role that sets tenantry.applying is refused, for a captured tenant and for a moved one")
    func applicationRoleRefused() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let role = "app_\(UUID().uuidString.prefix(8).lowercased())"
        try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
            for statement in [
                "CREATE ROLE \(role) LOGIN PASSWORD 'app-password-123'",
                "GRANT USAGE ON SCHEMA public TO \(role)",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \(role)",
                "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO \(role)",
            ] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: MoveFixture.logger) }
        }
        let appURL = try PostgresURL(
            "postgres://\(role):app-password-123@\(fixture.unifiedURL.host):\(fixture.unifiedURL.port)/\(fixture.unifiedURL.database)")
        try await fixture.withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            _ = try await fixture.cutover(catalog: catalog, relay: relay).cutover(fixture.ids[1], maxPause: .seconds(30))
            for shop in fixture.ids {
                await #expect {
                    try await Database.withConnection(appURL, logger: MoveFixture.logger) { connection in
                        try await connection.query("SET tenantry.applying = 'on'", logger: MoveFixture.logger)
                        try await connection.query(PostgresQuery(unsafeSQL: """
                            INSERT INTO customers (shop_id, first_name, last_name) VALUES (\(shop.rawValue), 'By', 'Pass')
                            """), logger: MoveFixture.logger)
                    }
                } throws: { error in
                    Database.sqlState(of: error) == "42501" && Database.message(of: error).contains("tenantry.applying is reserved")
                }
            }
            _ = try await relay.catchUp(timeout: .seconds(30))
            #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE last_name = 'Pass'") == ["0"])
            #expect(try await fixture.independentDifferences(fixture.ids[0]) == [])
        }
    }

    @Test("a table name holding the dollar-quote tag cannot end the capture function's body")
    func dollarQuoteTag() async throws {
        let name = "notes$tenantry$; DROP TABLE victims; --"
        let fixture = try await MoveFixture.make(tenants: 1) { connection in
            try await connection.query("CREATE TABLE shops (id bigint PRIMARY KEY)", logger: MoveFixture.logger)
            try await connection.query("CREATE TABLE victims (id int)", logger: MoveFixture.logger)
            try await connection.query(PostgresQuery(unsafeSQL: """
                CREATE TABLE "\(name)" (id bigserial PRIMARY KEY, shop_id bigint NOT NULL REFERENCES shops (id), body text)
                """), logger: MoveFixture.logger)
            try await connection.query("INSERT INTO shops VALUES (1)", logger: MoveFixture.logger)
        }
        #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT to_regclass('victims')::text") == ["victims"])
        try await fixture.withMover { copier, relay, _ in
            _ = try await copier.copy(fixture.ids[0])
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "INSERT INTO \"\(name)\" (shop_id, body) VALUES (1, 'captured')"),
                                           logger: MoveFixture.logger)
            }
            _ = try await relay.catchUp(timeout: .seconds(30))
        }
        #expect(try await TestPostgres.strings(
            try await fixture.tenantURL(fixture.ids[0]), "SELECT body FROM \"\(name.replacingOccurrences(of: "\"", with: "\"\""))\"") == ["captured"])
    }
}

@Suite("trust: a COMMIT with an unknown outcome never strands writes", .timeLimit(.minutes(4)))
struct UnknownCommitTests {
    @Test("cutover: a lost COMMIT reply is read back as committed; a killed COMMIT leaves the tenant syncing; a failed catalog flip is finished by a re-run")
    func cutoverOutcomes() async throws {
        let fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 30)
        try await fixture.withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            struct LostReply: Error {}
            // 1. The COMMIT succeeded but its reply was lost.
            var lost = fixture.cutover(catalog: catalog, relay: relay)
            lost.faults.afterDecisiveCommit = { throw LostReply() }
            _ = try await lost.cutover(fixture.ids[0], maxPause: .seconds(30))
            #expect(try await catalog.move(fixture.ids[0])?.phase == .dedicated)
            #expect(try await catalog.tenant(fixture.ids[0])?.placement == .dedicated)

            // 2. The session died before its COMMIT: nothing switched, the tenant still syncs.
            var killed = fixture.cutover(catalog: catalog, relay: relay)
            let unifiedURL = fixture.unifiedURL
            killed.faults.beforeDecisiveCommit = {
                try await Database.withConnection(unifiedURL, logger: MoveFixture.logger) { connection in
                    try await connection.query("""
                        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE state = 'idle in transaction' AND query LIKE '%SET moved = true%'
                        """, logger: MoveFixture.logger)
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            await #expect(throws: (any Error).self) { _ = try await killed.cutover(fixture.ids[1], maxPause: .seconds(30)) }
            #expect(try await catalog.move(fixture.ids[1])?.phase == .syncing)
            #expect(try await catalog.tenant(fixture.ids[1])?.placement == .shared)
            #expect(try await fixture.capture().states([fixture.ids[1]]).first?.moved == false)
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: """
                    INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(fixture.ids[1].rawValue), 'After', 'Kill', 'after-kill@example.com')
                    """), logger: MoveFixture.logger)
            }
            _ = try await relay.catchUp(timeout: .seconds(30))
            #expect(try await fixture.independentDifferences(fixture.ids[1]) == [])

            // 3. The switch committed, the catalog flip failed: writes are refused (never lost) until a re-run finishes it.
            var unflipped = fixture.cutover(catalog: catalog, relay: relay)
            struct CatalogDown: Error {}
            unflipped.faults.beforeCatalogFlip = { throw CatalogDown() }
            await #expect {
                _ = try await unflipped.cutover(fixture.ids[2], maxPause: .seconds(30))
            } throws: { error in
                "\(error)".contains("run 'tenantry cutover --tenant \(fixture.ids[2])' again")
            }
            await #expect {
                try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        INSERT INTO customers (shop_id, first_name, last_name) VALUES (\(fixture.ids[2].rawValue), 'Refused', 'Meanwhile')
                        """), logger: MoveFixture.logger)
                }
            } throws: { error in Database.message(of: error).contains("has moved") }
            _ = try await fixture.cutover(catalog: catalog, relay: relay).cutover(fixture.ids[2], maxPause: .seconds(30))
            #expect(try await catalog.move(fixture.ids[2])?.phase == .dedicated)

            // Rollback: a lost COMMIT reply, then a failed flip finished by a re-run.
            var rollbackLost = fixture.cutover(catalog: catalog, relay: relay)
            rollbackLost.faults.afterDecisiveCommit = { throw LostReply() }
            _ = try await rollbackLost.rollback(fixture.ids[0], maxPause: .seconds(30))
            #expect(try await catalog.move(fixture.ids[0])?.phase == .shared)
            var rollbackUnflipped = fixture.cutover(catalog: catalog, relay: relay)
            rollbackUnflipped.faults.beforeCatalogFlip = { throw CatalogDown() }
            await #expect(throws: (any Error).self) { _ = try await rollbackUnflipped.rollback(fixture.ids[2], maxPause: .seconds(30)) }
            #expect(try await catalog.move(fixture.ids[2])?.phase == .dedicated)
            _ = try await fixture.cutover(catalog: catalog, relay: relay).rollback(fixture.ids[2], maxPause: .seconds(30))
            #expect(try await catalog.move(fixture.ids[2])?.phase == .shared)
            for id in [fixture.ids[0], fixture.ids[2]] {
                try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        INSERT INTO customers (shop_id, first_name, last_name) VALUES (\(id.rawValue), 'Back', 'Home')
                        """), logger: MoveFixture.logger)
                }
            }
        }
    }
}

extension MoveFixture {
    /// A cutover handle over `relay`.
    func cutover(catalog: Catalog, relay: Relay) -> Cutover {
        Cutover(catalog: catalog, servers: directory(servers: servers), unifiedURL: unifiedURL, plan: plan, relay: relay,
                actor: "test", logger: Self.logger)
    }

    /// The dead letter queue, reaching tenant databases for reverse-sync letters.
    func deadLetters() -> DeadLetters {
        DeadLetters(unifiedURL: unifiedURL, tenantURL: { try await self.tenantURL($0) }, logger: Self.logger)
    }
}

@Suite("trust: id blocks of dedicated tenants", .timeLimit(.minutes(3)))
struct IdBlockTests {
    static func load(_ connection: PostgresConnection) async throws {
        for statement in [
            "CREATE TABLE shops (id bigint PRIMARY KEY)",
            "CREATE TABLE tickets (id smallserial PRIMARY KEY, shop_id bigint NOT NULL REFERENCES shops (id), body text)",
            "INSERT INTO shops VALUES (1), (2)",
            "INSERT INTO tickets (shop_id, body) SELECT 1 + g % 2, 'seed ' || g FROM generate_series(1, 20) g",
        ] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: MoveFixture.logger) }
    }

    static func insert(_ url: PostgresURL, _ sql: String) async throws {
        try await Database.withConnection(url, logger: MoveFixture.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: MoveFixture.logger)
        }
    }

    @Test("a smallint id block is reported, extended before it runs out, and no id collides with another tenant's in unified")
    func extendedBeforeExhaustion() async throws {
        let fixture = try await MoveFixture.make(tenants: 2, load: Self.load)
        var configuration = Relay.Configuration()
        configuration.idBlockCheckInterval = .milliseconds(50)
        try await fixture.withMover(relay: configuration) { copier, relay, catalog in
            _ = try await copier.copy(fixture.ids[0])
            _ = try await fixture.cutover(catalog: catalog, relay: relay).cutover(fixture.ids[0], maxPause: .seconds(30))
            let headroom = try await fixture.capture().states([fixture.ids[0]]).first?.idHeadroom
            #expect(headroom == 501, "a smallint block of 1,000 ids, the tenant keeps the upper half (501 ids): \(headroom.map(String.init) ?? "none")")
            let tenantURL = try await fixture.tenantURL(fixture.ids[0])
            // 1,200 tickets in batches, more than the first block holds; the relay extends in between.
            for batch in 0..<12 {
                try await Self.insert(tenantURL, "INSERT INTO tickets (body) SELECT 'tenant ' || g FROM generate_series(1, 100) g")
                try await Self.insert(fixture.unifiedURL, "INSERT INTO tickets (shop_id, body) VALUES (2, 'unified \(batch)')")
                _ = try await relay.catchUp(timeout: .seconds(30))
            }
            #expect(try await fixture.capture().states([fixture.ids[0]]).first?.deadLetters == 0)
            #expect(try await fixture.independentDifferences(fixture.ids[0]) == [])
            #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT count(*)::text FROM tickets WHERE shop_id = 2 AND body LIKE 'unified%'") == ["12"])
            #expect((try await fixture.capture().states([fixture.ids[0]]).first?.idHeadroom ?? 0) > 0)
        }
    }

    @Test("without an extension, an exhausted block fails the insert loudly instead of reusing another tenant's id")
    func exhaustedFailsLoudly() async throws {
        let fixture = try await MoveFixture.make(tenants: 2, load: Self.load)
        var configuration = Relay.Configuration()
        configuration.idBlockCheckInterval = .seconds(3600)
        try await fixture.withMover(relay: configuration) { copier, relay, catalog in
            _ = try await copier.copy(fixture.ids[0])
            _ = try await fixture.cutover(catalog: catalog, relay: relay).cutover(fixture.ids[0], maxPause: .seconds(30))
            _ = relay.takeBlockCheck(fixture.ids[0])
            let tenantURL = try await fixture.tenantURL(fixture.ids[0])
            await #expect {
                try await Self.insert(tenantURL, "INSERT INTO tickets (body) SELECT 'tenant ' || g FROM generate_series(1, 600) g")
            } throws: { error in
                Database.sqlState(of: error) == "2200H"
            }
        }
    }
}

@Suite("trust: capture refuses a tenantry schema owned by another role", .timeLimit(.minutes(2)))
struct CaptureSchemaOwnerTests {
    @Test("capture install stops with one clear error when schema tenantry belongs to a non-superuser role")
    func foreignOwner() async throws {
        let url = try await TestPostgres.makeDatabase("capowner")
        let role = "planter_\(UUID().uuidString.prefix(8).lowercased())"
        try await Database.withConnection(url, logger: MoveFixture.logger) { connection in
            for statement in [
                "CREATE ROLE \(role)",
                "CREATE SCHEMA tenantry AUTHORIZATION \(role)",
                "CREATE TABLE shops (id bigint PRIMARY KEY)",
                "CREATE TABLE notes (id bigserial PRIMARY KEY, shop_id bigint NOT NULL REFERENCES shops (id), body text)",
            ] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: MoveFixture.logger) }
        }
        await #expect {
            try await Capture(unifiedURL: url, logger: MoveFixture.logger).install()
        } throws: { error in
            "\(error)".contains("schema tenantry already exists and is owned by role \(role)")
        }
        #expect(try await TestPostgres.strings(url, "SELECT count(*)::text FROM pg_trigger WHERE tgname = 'tenantry_capture'") == ["0"])
    }
}
