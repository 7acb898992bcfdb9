import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("server moves: a tenant database between two real servers, online", .timeLimit(.minutes(6)))
struct ServerMoveTests {
    @Test("start → verify → switch → reverse → switch → complete under router load in three isolation levels: nothing lost or doubled, row by row")
    func wholeMoveUnderLoad() async throws {
        let servers = try await ServerMoveFixture.make(shops: 2, rowsPerShop: 60)
        defer { Task { await servers.remove() } }
        let fixture = servers.fixture
        let (moving, staying) = (fixture.ids[0], fixture.ids[1])
        try await servers.withOperations { operations in
            let move = try await operations.move()
            let background = move.relay()
            var pool = TenantPool.Configuration()
            pool.maxConnections = 16
            let router = TenantRouter(
                configuration: TenantRouter.Configuration(unifiedURL: fixture.unifiedURL, pool: pool), catalog: operations.catalog,
                registry: CredentialRegistry(catalog: operations.catalog, keyring: fixture.base.keyring),
                servers: operations.servers, logger: TestPostgres.logger)
            let routerTask = Task { try await router.run() }
            let relayTask = Task { try await background.run() }
            defer { routerTask.cancel(); relayTask.cancel() }
            try await router.waitUntilListening()

            let load = try HandyShopLoad(router: router, shops: fixture.ids, options: .init(rate: 120, workers: 4, writeShare: 0.6, seed: 11))
            let loadTask = Task { await load.run() }
            let isolated = IsolatedWriters(router: router, tenant: moving)
            let isolatedTask = Task { await isolated.run() }
            try await eventually("the load is writing") { load.report().writes >= 10 }

            try await move.withServerMoves { moves in
                let started = try await moves.start(moving, to: "second", reason: "test")
                #expect(started.rowsCopied > 0 && !started.alreadyStarted)
                #expect(try await operations.catalog.activeServerMove(moving)?.phase == .moving)
                let again = try await moves.start(moving, to: "second")
                #expect(again.alreadyStarted, "a second start is a no-op")
                try await moves.catchUp(moving)
                let verified = try await moves.verify(moving)
                #expect(verified.equal, "\(verified.tables.flatMap(\.differences).prefix(5))")

                let switched = try await moves.switchTraffic(moving, maxPause: .seconds(5))
                #expect(switched.from == "default" && switched.to == "second" && switched.pauseMilliseconds > 0)
                #expect(try await operations.catalog.requireTenant(moving).serverName == "second")
                let secondPort = try servers.second.url().port
                try await eventually("the router writes the moved shop on the second server", within: .seconds(30)) {
                    try await router.withTransaction(tenant: moving, intent: .write) { connection in
                        try await connection.query("SELECT inet_server_port()").first?.decode(Int.self)
                    } == secondPort
                }
                try await eventually("the load writes after the switch") { isolated.acknowledged.withLockedValue { $0.count } >= 30 }

                let back = try await moves.reverse(moving, maxPause: .seconds(5))
                #expect(back.to == "default")
                #expect(try await operations.catalog.requireTenant(moving).serverName == nil)
                let count = isolated.acknowledged.withLockedValue { $0.count }
                try await eventually("writes go on after the reverse") { isolated.acknowledged.withLockedValue { $0.count } >= count + 10 }
                _ = try await moves.switchTraffic(moving, maxPause: .seconds(5))
                let status = try await moves.status(moving)
                #expect(status.first?.phase == .switched && status.first?.switches == 3, "\(status)")
                try await eventually("writes go on after the second switch") {
                    isolated.acknowledged.withLockedValue { $0.count } >= count + 25
                }
                try await moves.catchUp(moving)
                #expect(try await moves.verify(moving).equal)
                let ended = try await moves.complete(moving)
                #expect(ended.phase == .complete && ended.droppedServer == "default")
            }
            let count = isolated.acknowledged.withLockedValue { $0.count }
            try await eventually("writes go on after complete") { isolated.acknowledged.withLockedValue { $0.count } >= count + 10 }

            isolated.stop.withLockedValue { $0 = true }
            await isolatedTask.value
            await load.stop()
            await loadTask.value
            _ = try await background.catchUp(timeout: .seconds(60))

            // Every acknowledged write is where the shop lives now, once.
            let report = load.report()
            #expect(report.errors == 0, "load errors: \(report.errorSamples)")
            #expect(try await load.lostWrites() == [])
            let moved = try await servers.databaseURL(moving, onSecond: true)
            let emails = try await TestPostgres.strings(moved, "SELECT email FROM customers WHERE email LIKE 'iso.%'").compactMap { $0 }
            let acknowledged = isolated.acknowledged.withLockedValue { $0 }
            #expect(Set(acknowledged).isSubset(of: Set(emails)), "missing: \(Set(acknowledged).subtracting(emails).prefix(5))")
            #expect(emails.count == Set(emails).count, "no write applied twice")
            #expect(!(try await servers.exists(moving, onSecond: false)), "the source database is dropped")
            // Unified still mirrors both shops (reverse sync ran from the new server), row by row.
            #expect(try await servers.rows(moving, in: moved) == (try await servers.unifiedRows(moving)))
            let stayed = try await servers.databaseURL(staying, onSecond: false)
            #expect(try await servers.rows(staying, in: stayed) == (try await servers.unifiedRows(staying)))
            #expect(try await TestPostgres.strings(moved, "SELECT count(*)::text FROM tenantry.changes") == ["0"])
            routerTask.cancel()
            _ = try? await routerTask.value
            await background.close()
        }
    }

    @Test("cancel before a switch drops the target; the source and unified keep every write")
    func cancel() async throws {
        let servers = try await ServerMoveFixture.make(shops: 1, rowsPerShop: 40)
        defer { Task { await servers.remove() } }
        let tenant = servers.fixture.ids[0]
        try await servers.withOperations { operations in
            let move = try await operations.move()
            let source = try await servers.databaseURL(tenant, onSecond: false)
            try await move.withServerMoves { moves in
                _ = try await moves.start(tenant, to: "second")
                // Writes while moving: applied on the target, on their way to unified through it.
                for index in 0..<20 {
                    _ = try await TestPostgres.strings(
                        source, "INSERT INTO customers (first_name, last_name, email) VALUES ('C', 'X', 'cancel.\(index)@example.com')")
                }
                try await moves.catchUp(tenant)
                let ended = try await moves.cancel(tenant)
                #expect(ended.phase == .cancelled && ended.droppedServer == "second")
            }
            #expect(!(try await servers.exists(tenant, onSecond: true)))
            #expect(try await operations.catalog.requireTenant(tenant).serverName == nil)
            _ = try await move.catchUp(.all, timeout: .seconds(60))
            #expect(try await servers.rows(tenant, in: source) == (try await servers.unifiedRows(tenant)))
            #expect(try await TestPostgres.strings(
                servers.fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE email LIKE 'cancel.%'") == ["20"])
        }
    }

    @Test("a write that still has the old route after a switch runs on the new server (the old database's sequences lag)")
    func staleRouteAfterSwitch() async throws {
        let servers = try await ServerMoveFixture.make(shops: 1, rowsPerShop: 20)
        defer { Task { await servers.remove() } }
        let tenant = servers.fixture.ids[0]
        try await servers.withOperations { operations in
            // Not running: no NOTIFY reaches it, so its cached route stays the old one.
            var configuration = TenantRouter.Configuration(unifiedURL: servers.fixture.unifiedURL, pool: TenantPool.Configuration())
            configuration.routeTTL = .seconds(600)
            let router = TenantRouter(
                configuration: configuration, catalog: operations.catalog,
                registry: CredentialRegistry(catalog: operations.catalog, keyring: servers.fixture.base.keyring),
                servers: operations.servers, logger: TestPostgres.logger)
            #expect(try await router.route(for: tenant).server == nil)
            let target = try await servers.databaseURL(tenant, onSecond: true)
            try await operations.move().withServerMoves { moves in
                _ = try await moves.start(tenant, to: "second")
                _ = try await moves.switchTraffic(tenant, maxPause: .seconds(5))
                // The new server hands out the next ids; the relay brings those rows to the old one.
                for index in 0..<3 {
                    _ = try await TestPostgres.strings(
                        target, "INSERT INTO customers (first_name, last_name, email) VALUES ('N', 'S', 'new.\(index)@example.com')")
                }
                try await moves.catchUp(tenant)
            }
            try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                try await connection.query("""
                    INSERT INTO customers (first_name, last_name, email) VALUES ('Stale', 'Route', 'stale@example.com')
                    """)
            }
            #expect(try await TestPostgres.strings(target, "SELECT count(*)::text FROM customers WHERE email = 'stale@example.com'") == ["1"])
            _ = try await router.running { true }  // closes its pools
        }
    }
}
