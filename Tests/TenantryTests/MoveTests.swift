import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("online move: capture, copy, sync, verify", .timeLimit(.minutes(6)))
struct MoveTests {
    @Test("20 shops, writers running through copy and sync: every table equal, row by row")
    func concurrentWriters() async throws {
        let fixture = try await MoveFixture.make(shops: 20)
        let stop = NIOLockedValueBox(false)
        try await fixture.withMover { copier, relay, catalog in
            let writers = (0..<4).map { index in
                Task { try await HandyShopWriter(url: fixture.unifiedURL, shops: fixture.ids, seed: UInt64(index + 1)).run(until: stop) }
            }
            let relayTask = Task { try await relay.run() }
            try await Task.sleep(for: .milliseconds(300))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for slice in fixture.ids.chunked(4) {
                    group.addTask { for id in slice { _ = try await copier.copy(id) } }
                }
                try await group.waitForAll()
            }
            try await Task.sleep(for: .seconds(1))
            stop.withLockedValue { $0 = true }
            var writes = 0
            for writer in writers { writes += try await writer.value }
            relayTask.cancel()
            _ = try? await relayTask.value
            #expect(writes > 50, "the writers wrote \(writes) transactions")
            let report = try await relay.catchUp(timeout: .seconds(60))
            #expect(report.paused.isEmpty)
            #expect(relay.statistics.applied > 0)
            for id in fixture.ids {
                #expect(try await catalog.move(id)?.phase == .syncing)
                let verdict = try await Verifier(plan: fixture.plan, chunkSize: 50, leafSize: 8, logger: MoveFixture.logger)
                    .verify(id, unifiedURL: fixture.unifiedURL, tenantURL: try await fixture.tenantURL(id))
                #expect(verdict.equal, "tenant \(id): \(verdict.tables.flatMap(\.differences).prefix(5))")
                #expect(try await fixture.independentDifferences(id) == [], "tenant \(id)")
            }
            let states = try await fixture.capture().states()
            #expect(states.allSatisfy { $0.queueDepth == 0 && $0.deadLetters == 0 && $0.capturing })
        }
    }

    @Test("a conflicting row in a tenant DB: 3 retries, a dead letter, that tenant paused, others current; replay after the fix")
    func deadLetters() async throws {
        let fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 60)
        var configuration = Relay.Configuration()
        configuration.retryDelays = [.milliseconds(100), .milliseconds(200), .milliseconds(400)]
        try await fixture.withMover(relay: configuration) { copier, relay, _ in
            for id in fixture.ids { _ = try await copier.copy(id) }
            let victim = fixture.ids[0]
            // The tenant DB already holds a customer with the email the application is about to use.
            try await Database.withConnection(try await fixture.tenantURL(victim), logger: MoveFixture.logger) { connection in
                try await connection.query(
                    "INSERT INTO customers (id, first_name, last_name, email) VALUES (900000001, 'X', 'Y', 'dup@example.com')",
                    logger: MoveFixture.logger)
            }
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                for id in fixture.ids {
                    try await connection.query("""
                        INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(Int64(id.rawValue)!), 'A', 'B', 'dup@example.com')
                        """, logger: MoveFixture.logger)
                }
            }
            let started = ContinuousClock.now
            let report = try await relay.catchUp(timeout: .seconds(30))
            let elapsed = ContinuousClock.now - started
            #expect(report.paused.keys.sorted() == [victim.rawValue])
            #expect(report.paused[victim.rawValue]?.contains("duplicate key") == true, "\(report.paused)")
            #expect(report.deadLettered == [victim], "a typed fact, not a match on the reason's text")
            #expect(elapsed >= .milliseconds(700), "three retries take at least 0.1 + 0.2 + 0.4 s (took \(elapsed))")
            #expect(relay.statistics.retried == 3)
            #expect(relay.statistics.deadLettered == 1)
            let dead = try await TestPostgres.strings(fixture.unifiedURL, "SELECT tenant_id || ':' || attempts || ':' || error FROM tenantry.dead_letters")
            #expect(dead.count == 1 && dead[0]?.hasPrefix("\(victim):4:") == true, "\(dead)")
            for id in fixture.ids.dropFirst() {
                #expect(try await fixture.independentDifferences(id) == [], "tenant \(id) is current")
            }
            // Writes to the paused tenant keep being captured, in order, behind the dead letter.
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                try await connection.query(
                    "UPDATE customers SET notes = 'after' WHERE shop_id = \(Int64(victim.rawValue)!) AND email = 'dup@example.com'",
                    logger: MoveFixture.logger)
            }
            // Fix: remove the conflicting row, replay.
            try await Database.withConnection(try await fixture.tenantURL(victim), logger: MoveFixture.logger) { connection in
                try await connection.query("DELETE FROM customers WHERE id = 900000001", logger: MoveFixture.logger)
            }
            let replayed = try await DeadLetters(unifiedURL: fixture.unifiedURL, logger: MoveFixture.logger).replay(tenants: [victim])
            #expect(replayed == 1)
            let after = try await relay.catchUp([victim], timeout: .seconds(30))
            #expect(after.paused.isEmpty && after.deadLettered.isEmpty)
            #expect(try await fixture.independentDifferences(victim) == [])
            #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT count(*)::text FROM tenantry.dead_letters") == ["0"])
        }
    }
}

@Suite("online move: values round-trip exactly", .timeLimit(.minutes(3)))
struct MoveRoundTripTests {
    static let schema = """
        CREATE TABLE shops (id bigint PRIMARY KEY);
        CREATE TYPE mood AS ENUM ('ok', 'très bien', 'with "quotes"');
        CREATE TABLE oddities (
            shop_id bigint NOT NULL REFERENCES shops (id),
            id bigint GENERATED ALWAYS AS IDENTITY,
            blob bytea, addr inet, net cidr, span interval, day date, stamp timestamptz, local timestamp,
            f8 double precision, f4 real, num numeric, floats double precision[], tags text[], doc jsonb,
            bits bit varying, uid uuid, range int4range, label text, feeling mood, grid integer[][],
            twice numeric GENERATED ALWAYS AS (num * 2) STORED,
            PRIMARY KEY (shop_id, id)
        );
        CREATE TABLE serials (shop_id bigint NOT NULL REFERENCES shops (id), id bigserial PRIMARY KEY, note text);
        INSERT INTO shops VALUES (1), (2);
        """

    /// Hostile rows: every special value of each type, NULLs, and text that breaks naive quoting.
    static let rows = """
        INSERT INTO oddities (shop_id, blob, addr, net, span, day, stamp, local, f8, f4, num, floats, tags, doc, bits, uid, range, label, feeling, grid)
        VALUES
        ($1, '\\x00ff5c0a09'::bytea, '2001:db8::1/64', '10.0.0.0/8', '1 mon -2 days 03:04:05.678', 'infinity', '-infinity', 'infinity',
         '-0', 'NaN', 'NaN', '{-0,Infinity,-Infinity,1e-300,NULL}', ARRAY['tab\there', 'new
        line', 'back\\slash', 'quote"s', '', NULL, 'ünï😀'], '{"a": [1, null, "\\\\"], "b": {"c": "\\u00e9"}}',
         B'1010', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '[1,5)', E'\\\\N', 'très bien', '{{1,2},{3,4}}'),
        ($1, '', '0.0.0.0', '::/0', '-178000000 years', '-infinity', 'infinity', '1999-12-31 23:59:59.999999',
         '1.7976931348623157e308', '-3.4e38', '-12345678901234567890.123456789', '{}', '{}', 'null', B'', NULL, 'empty', E'\\t', 'with "quotes"', '{}'),
        ($1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
        """

    @Test("bytea, inet, intervals, infinity, -0, NaN, arrays, enums, identity and generated columns: copy and sync keep every value")
    func roundTrip() async throws {
        let logger = MoveFixture.logger
        let fixture = try await MoveFixture.make(tenants: 2) { connection in
            try await Database.execute(script: Self.schema, on: connection, logger: logger)
            for shop in [1, 2] {
                var query = PostgresQuery(unsafeSQL: Self.rows)
                query.binds.append(Int64(shop))
                try await connection.query(query, logger: logger)
                try await connection.query("INSERT INTO serials (shop_id, note) VALUES (\(Int64(shop)), 'x')", logger: logger)
            }
        }
        try await fixture.withMover { copier, relay, _ in
            for id in fixture.ids { _ = try await copier.copy(id) }
            // The copy moved the tenant sequences past every id in use on both sides.
            let tenantURL = try await fixture.tenantURL(fixture.ids[0])
            for table in ["serials", "oddities"] {
                let next = try await TestPostgres.strings(tenantURL, "SELECT nextval(pg_get_serial_sequence('\(table)', 'id'))::text")
                let unifiedMax = try await TestPostgres.strings(fixture.unifiedURL, "SELECT max(id)::text FROM \(table)")
                #expect(Int(next[0] ?? "") ?? 0 > Int(unifiedMax[0] ?? "") ?? .max, "\(table): next \(next), unified max \(unifiedMax)")
            }
            // After the snapshot: the same values again through capture and the relay, plus updates and deletes.
            try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
                var query = PostgresQuery(unsafeSQL: Self.rows)
                query.binds.append(Int64(1))
                try await connection.query(query, logger: logger)
                try await connection.query("UPDATE oddities SET f8 = '-0', span = span * -1, label = label || E'\\n' WHERE shop_id = 1", logger: logger)
                try await connection.query("DELETE FROM oddities WHERE shop_id = 2 AND blob IS NULL", logger: logger)
                try await connection.query("INSERT INTO serials (shop_id, note) VALUES (1, E'after\\\\copy')", logger: logger)
            }
            let report = try await relay.catchUp(timeout: .seconds(30))
            #expect(report.paused.isEmpty)
            for id in fixture.ids {
                #expect(try await fixture.independentDifferences(id) == [], "tenant \(id)")
                let verdict = try await Verifier(plan: fixture.plan, logger: logger)
                    .verify(id, unifiedURL: fixture.unifiedURL, tenantURL: try await fixture.tenantURL(id))
                #expect(verdict.equal, "\(verdict.tables.flatMap(\.differences))")
            }
        }
    }
}

@Suite("online move: faults", .timeLimit(.minutes(4)))
struct MoveFaultTests {
    @Test("tenant DB server stopped 10 s under writes: no application write fails, the backlog drains, every table equal")
    func tenantServerStopped() async throws {
        let second = try await RestartableServer.start()
        do {
            try await serverStopped(second)
            try await second.remove()
        } catch {
            try? await second.remove()
            throw error
        }
    }

    private func serverStopped(_ second: RestartableServer) async throws {
        let secondURL = try second.url()
        var fixture = try await MoveFixture.make(shops: 4, rowsPerShop: 80, servers: { keyring in
            [ServerRecord(
                name: "second", host: "127.0.0.1", port: secondURL.port, adminUser: secondURL.user,
                adminPasswordSealed: try keyring.seal(secondURL.password ?? "", tenant: "server:second", field: "admin_password"))]
        }, server: "second")
        fixture.tenantServer = secondURL
        let moving = fixture
        let stop = NIOLockedValueBox(false)
        var configuration = Relay.Configuration()
        configuration.batchTimeout = .seconds(15)
        try await moving.withMover(relay: configuration) { copier, relay, catalog in
            for id in moving.ids {
                _ = try await copier.copy(id)
                #expect(try await catalog.tenant(id)?.serverName == "second")
            }
            let writers = (0..<3).map { index in
                Task { try await HandyShopWriter(url: moving.unifiedURL, shops: moving.ids, seed: UInt64(40 + index)).run(until: stop) }
            }
            let relayTask = Task { try await relay.run() }
            let (writes, backlog): (Int, Int)
            do {
                try await Task.sleep(for: .seconds(1))
                try await withTimeLimit(.seconds(30), "server stop") { try await second.stop() }
                try await Task.sleep(for: .seconds(10))
                let depth = try await moving.capture().states().reduce(0) { $0 + $1.queueDepth }
                try await withTimeLimit(.seconds(30), "server start") { try await second.start() }
                try await Task.sleep(for: .seconds(1))
                stop.withLockedValue { $0 = true }
                // Throws if any application write failed.
                writes = try await withTimeLimit(.seconds(30), "writers to stop") {
                    var writes = 0
                    for writer in writers { writes += try await writer.value }
                    return writes
                }
                backlog = depth
            } catch {
                stop.withLockedValue { $0 = true }
                relayTask.cancel()
                throw error
            }
            relayTask.cancel()
            _ = try await withTimeLimit(.seconds(30), "relay to stop") { _ = try? await relayTask.value }
            #expect(backlog > 0, "writes piled up while the tenant server was down")
            #expect(writes > 30)
            let report = try await withTimeLimit(.seconds(90), "catch up") { try await relay.catchUp(timeout: .seconds(75)) }
            #expect(report.paused.isEmpty)
            #expect(relay.statistics.connectionFailures > 0)
            #expect(relay.statistics.deadLettered == 0)
            for id in moving.ids {
                #expect(try await moving.independentDifferences(id) == [], "tenant \(id)")
            }
        }
    }
}

@Suite("online move: router", .timeLimit(.minutes(3)))
struct MoveRouterTests {
    @Test("a write through the router for a syncing tenant is in its tenant DB when the write returns (read-your-writes)")
    func readYourWrites() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 40)
        try await fixture.withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            var policy = ReadPolicy()
            policy.strategy = .tenant
            try await catalog.setReadPolicy(policy)
            var pool = TenantPool.Configuration()
            pool.maxConnections = 5
            var configuration = TenantRouter.Configuration(unifiedURL: fixture.unifiedURL, pool: pool)
            configuration.afterSyncedWrite = { tenant in await relay.drain(tenant) }
            let router = TenantRouter(
                configuration: configuration, catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: fixture.base.keyring), servers: fixture.directory(),
                logger: MoveFixture.logger)
            let tenant = fixture.ids[1]
            let running = Task { try await router.run() }
            defer { running.cancel() }
            for round in 0..<5 {
                let email = "ryw\(round)@example.com"
                try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                    #expect(connection.source == .unified)
                    try await connection.query("""
                        INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(Int64(tenant.rawValue)!), 'R', 'W', \(email))
                        """)
                }
                let seen = try await router.withConnection(tenant: tenant, intent: .read) { connection in
                    #expect(connection.source == .tenant)
                    return try await connection.query("SELECT count(*)::int FROM customers WHERE email = \(email)").first?.decode(Int.self)
                }
                #expect(seen == 1, "round \(round): the tenant DB did not have the write yet")
            }
            running.cancel()
            _ = try? await running.value
        }
    }
}

@Suite("online move: cutover, reverse sync, rollback", .timeLimit(.minutes(4)))
struct MoveCutoverTests {
    @Test("cutover under router writes: every write lands, direct writes to unified rejected, reverse sync keeps unified equal; rollback loses nothing")
    func cutoverAndRollback() async throws {
        let fixture = try await MoveFixture.make(shops: 4, rowsPerShop: 50)
        try await fixture.withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            var pool = TenantPool.Configuration()
            pool.maxConnections = 10
            var configuration = TenantRouter.Configuration(unifiedURL: fixture.unifiedURL, pool: pool)
            configuration.afterSyncedWrite = { tenant in await relay.drain(tenant) }
            let router = TenantRouter(
                configuration: configuration, catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: fixture.base.keyring), servers: fixture.directory(),
                logger: MoveFixture.logger)
            let routerTask = Task { try await router.run() }
            let relayTask = Task { try await relay.run() }
            defer { routerTask.cancel(); relayTask.cancel() }
            let stop = NIOLockedValueBox(false)
            let written = NIOLockedValueBox<[TenantID: [String]]>([:])
            let writers = fixture.ids.map { tenant in
                Task {
                    var count = 0
                    while !stop.withLockedValue({ $0 }) {
                        let email = "router\(tenant)_\(count)@example.com"
                        try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                            let shop = connection.source == .unified ? "shop_id, " : ""
                            let value = connection.source == .unified ? "\(tenant.rawValue), " : ""
                            try await connection.query(PostgresQuery(unsafeSQL: """
                                INSERT INTO customers (\(shop)first_name, last_name, email) VALUES (\(value)'R', 'W', '\(email)')
                                """))
                        }
                        written.withLockedValue { $0[tenant, default: []].append(email) }
                        count += 1
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            let cutover = Cutover(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: MoveFixture.logger)
            for tenant in fixture.ids.prefix(2) {
                // A generous bound: the test machine runs every suite at once (the benchmark measures the pause).
                let report = try await cutover.cutover(tenant, maxPause: .seconds(30))
                #expect(report.pauseMilliseconds < 30_000)
                #expect(try await catalog.tenant(tenant)?.placement == .dedicated)
                #expect(try await catalog.move(tenant)?.phase == .dedicated)
            }
            try await Task.sleep(for: .milliseconds(500))
            // A direct write to unified for a moved shop is rejected, with a clear error.
            await #expect {
                try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                    try await connection.query("UPDATE customers SET notes = 'direct' WHERE shop_id = 1", logger: MoveFixture.logger)
                }
            } throws: { error in
                Database.message(of: error).contains("tenant 1 has moved")
            }
            let source = try await router.withTransaction(tenant: fixture.ids[0], intent: .write) { $0.source }
            #expect(source == .tenant)
            // Rollback of shop 2 after its cutover: its writes go to unified again.
            _ = try await cutover.rollback(fixture.ids[1], maxPause: .seconds(30))
            #expect(try await catalog.tenant(fixture.ids[1])?.placement == .shared)
            try await Task.sleep(for: .milliseconds(500))
            stop.withLockedValue { $0 = true }
            for writer in writers { try await writer.value }
            relayTask.cancel()
            _ = try? await relayTask.value
            _ = try await relay.catchUp(timeout: .seconds(60))

            let all = written.withLockedValue { $0 }
            for tenant in fixture.ids {
                let emails = all[tenant] ?? []
                #expect(emails.count > 5, "tenant \(tenant) wrote \(emails.count)")
                let unified = Set(try await TestPostgres.strings(fixture.unifiedURL, """
                    SELECT email FROM customers WHERE shop_id = \(tenant.rawValue) AND email LIKE 'router%'
                    """).compactMap { $0 })
                #expect(unified == Set(emails), "tenant \(tenant): every router write is in unified (\(emails.count) written, \(unified.count) found)")
            }
            // Shop 1 is dedicated: reverse sync kept unified equal to its tenant DB, row by row.
            #expect(try await fixture.independentDifferences(fixture.ids[0]) == [])
            // Shop 2 was rolled back: its tenant DB refuses writes now.
            await #expect {
                try await Database.withConnection(try await fixture.tenantURL(fixture.ids[1]), logger: MoveFixture.logger) { connection in
                    try await connection.query("UPDATE customers SET notes = 'stale'", logger: MoveFixture.logger)
                }
            } throws: { error in
                Database.message(of: error).contains("has moved")
            }
            routerTask.cancel()
            _ = try? await routerTask.value
        }
    }
}

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

@Suite("online move: turning capture on", .timeLimit(.minutes(2)))
struct CaptureEnableTests {
    @Test("capture waits for older transactions, naming them on timeout, but not for another copy's read-only snapshot")
    func enableWaits() async throws {
        let logger = MoveFixture.logger
        let fixture = try await MoveFixture.make(tenants: 2) { connection in
            try await Database.execute(script: """
                CREATE TABLE shops (id bigint PRIMARY KEY);
                CREATE TABLE notes (shop_id bigint NOT NULL REFERENCES shops (id), id bigint PRIMARY KEY, body text);
                INSERT INTO shops VALUES (1), (2);
                """, on: connection, logger: logger)
        }
        var capture = fixture.capture()
        capture.enableTimeout = .milliseconds(800)
        let url = fixture.unifiedURL
        try await Database.withConnection(url, logger: logger) { snapshot in
            // A copy's snapshot session: marked, read only, open across the switch.
            try await snapshot.query("SELECT pg_advisory_lock_shared(\(AdvisoryLock.copySnapshotNamespace), 0)", logger: logger)
            try await snapshot.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            try await snapshot.query("SELECT count(*) FROM notes", logger: logger)
            try await capture.enable(try TenantID("1"))
            try await snapshot.query("COMMIT", logger: logger)
        }
        try await Database.withConnection(url, logger: logger) { application in
            try await application.query("BEGIN ISOLATION LEVEL REPEATABLE READ", logger: logger)
            try await application.query("SELECT count(*) FROM notes", logger: logger)
            await #expect {
                try await capture.enable(try TenantID("2"))
            } throws: { error in
                let message = Database.message(of: error)
                return message.contains("still have a transaction") && message.contains("pid ")
            }
            try await application.query("COMMIT", logger: logger)
        }
        try await capture.enable(try TenantID("2"))
    }

    @Test("the SECURITY DEFINER capture trigger ignores a caller's search_path: an operator planted by the application role is never run")
    func triggerIgnoresSearchPath() async throws {
        let logger = MoveFixture.logger
        let fixture = try await MoveFixture.make(tenants: 1) { connection in
            try await Database.execute(script: """
                CREATE TABLE shops (id bigint PRIMARY KEY);
                CREATE TABLE notes (shop_id bigint NOT NULL REFERENCES shops (id), id bigint PRIMARY KEY, body text);
                INSERT INTO shops VALUES (1);
                """, on: connection, logger: logger)
        }
        try await fixture.capture().enable(try TenantID("1"))
        let role = "app_\(UInt32.random(in: 0...UInt32.max))"
        try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
            // What an application role could plant if it may create a schema: operators and a
            // function that would run with the trigger owner's rights if the trigger resolved them
            // through the caller's search_path.
            try await Database.execute(script: """
                CREATE ROLE \(role);
                GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO \(role);
                CREATE SCHEMA planted AUTHORIZATION \(role);
                SET ROLE \(role);
                CREATE FUNCTION planted.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
                    $$ BEGIN RAISE EXCEPTION 'planted operator ran as %', current_user; END $$;
                CREATE OPERATOR planted.= (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.eq);
                CREATE FUNCTION planted.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS
                    $$ BEGIN RAISE EXCEPTION 'planted to_jsonb ran as %', current_user; END $$;
                SET search_path = planted, pg_catalog, public;
                INSERT INTO public.notes VALUES (1, 10, 'a');
                UPDATE public.notes SET body = 'b' WHERE id = 10;
                DELETE FROM public.notes WHERE id = 10;
                RESET ROLE;
                RESET search_path;
                """, on: connection, logger: logger)
        }
        let ops = try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT op::text FROM tenantry.changes WHERE tenant_id = '1' ORDER BY id")
        #expect(ops == ["I", "U", "D"])
        let config = try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT coalesce(array_to_string(proconfig, ','), '') FROM pg_proc WHERE proname LIKE 'capture_notes_%'")
        #expect(config == [""])
    }
}
