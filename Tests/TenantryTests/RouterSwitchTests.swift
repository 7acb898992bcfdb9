import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The router following a cutover or rollback quickly (Step 13): the warm-up before the fence, the
/// route carried by the notification, and writes held up on the old side sent to the new one.
@Suite("router: following a switch", .timeLimit(.minutes(4)))
struct RouterSwitchTests {
    static let logger = MoveFixture.logger

    static func router(
        _ fixture: MoveFixture, _ catalog: Catalog, relay: Relay, _ adjust: (inout TenantRouter.Configuration) -> Void = { _ in }
    ) -> TenantRouter {
        var pool = TenantPool.Configuration()
        pool.maxConnections = 20
        pool.leaseTimeout = .seconds(30)
        var configuration = TenantRouter.Configuration(unifiedURL: fixture.unifiedURL, pool: pool)
        configuration.afterSyncedWrite = { tenant in await relay.drain(tenant) }
        adjust(&configuration)
        return TenantRouter(
            configuration: configuration, catalog: catalog,
            registry: CredentialRegistry(catalog: catalog, keyring: fixture.base.keyring), servers: fixture.directory(),
            logger: logger)
    }

    /// Connections open to `tenant`'s database as its role (only the router logs in as the role).
    static func roleConnections(_ fixture: MoveFixture, _ catalog: Catalog, _ tenant: TenantID) async throws -> Int {
        let record = try await catalog.requireTenant(tenant)
        let count = try await TestPostgres.strings(fixture.unifiedURL, """
            SELECT count(*)::text FROM pg_stat_activity
            WHERE datname = '\(record.databaseName ?? "")' AND usename = '\(record.roleName ?? "")'
            """)
        return Int(count.first.flatMap { $0 } ?? "0") ?? 0
    }

    /// Two HandyShop shops; shop 1 copied and cut over (dedicated). `body` gets the fixture, the
    /// tenant, the cutover (for a rollback), the relay and the catalog.
    static func withCutOver(
        _ body: @Sendable (MoveFixture, TenantID, Cutover, Relay, Catalog) async throws -> Void
    ) async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        try await fixture.withMover { copier, relay, catalog in
            let tenant = fixture.ids[0]
            _ = try await copier.copy(tenant)
            let cutover = Self.cutover(fixture, catalog, relay)
            _ = try await cutover.cutover(tenant, maxPause: .seconds(30))
            try await body(fixture, tenant, cutover, relay, catalog)
        }
    }

    static func cutover(_ fixture: MoveFixture, _ catalog: Catalog, _ relay: Relay) -> Cutover {
        Cutover(
            catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
            actor: "test", logger: logger)
    }

    static func insert(_ tenant: TenantID, _ email: String, on connection: RoutedConnection) async throws {
        let shop = connection.source == .unified ? "shop_id, " : ""
        let value = connection.source == .unified ? "\(tenant.rawValue), " : ""
        try await connection.query(PostgresQuery(unsafeSQL: """
            INSERT INTO customers (\(shop)first_name, last_name, email) VALUES (\(value)'S', 'W', '\(email)')
            """))
    }

    static func count(_ url: PostgresURL, _ email: String) async throws -> Int {
        Int(try await TestPostgres.strings(url, "SELECT count(*)::text FROM customers WHERE email = '\(email)'").first.flatMap { $0 } ?? "0") ?? 0
    }

    @Test("a cutover announces itself: the router opens connections to the tenant database before the fence")
    func warmsBeforeTheFence() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 30)
        try await fixture.withMover { copier, relay, catalog in
            let tenant = fixture.ids[0]
            _ = try await copier.copy(tenant)
            let router = Self.router(fixture, catalog, relay: relay) { $0.warmConnections = 3 }
            try await router.running {
                await router.waitUntilListening()
                // Writes go to unified: no connection to the tenant database yet.
                try await router.withTransaction(tenant: tenant, intent: .write) { try await Self.insert(tenant, "warm0@example.com", on: $0) }
                #expect(try await Self.roleConnections(fixture, catalog, tenant) == 0)
                var cutover = Self.cutover(fixture, catalog, relay)
                let seenInFence = NIOLockedValueBox(0)
                cutover.faults.beforeDecisiveCommit = {
                    // Under the fence, before any write could have been switched: the warm-up's connections.
                    try await eventually("the router warmed 3 connections", within: .seconds(10)) {
                        try await Self.roleConnections(fixture, catalog, tenant) >= 3
                    }
                    let seen = try await Self.roleConnections(fixture, catalog, tenant)
                    seenInFence.withLockedValue { $0 = seen }
                }
                _ = try await cutover.cutover(tenant, maxPause: .seconds(30))
                #expect(seenInFence.withLockedValue { $0 } == 3)
                // The first write after the switch (once the listener has read the new route)
                // finds them: no new connection is opened.
                try await eventually("the listener followed the switch") { router.cachedRoute(tenant)?.writeSource == .tenant }
                let connects = await router.poolStatistics()[ServerDirectory.defaultServerName]?.connects ?? -1
                try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                    #expect(connection.source == .tenant)
                    try await Self.insert(tenant, "warm1@example.com", on: connection)
                }
                #expect(await router.poolStatistics()[ServerDirectory.defaultServerName]?.connects == connects)
                // A second warm-up opens nothing more; a rollback's warms the unified side (already warm).
                #expect(await router.warm(tenant: fixture.ids[1]) == 3)
                #expect(await router.warm(tenant: fixture.ids[1]) == 0)
            }
        }
    }

    @Test("a notification makes the listener read the changed route at once; a forged one (an application session's NOTIFY with a made-up route) changes nothing")
    func notificationRefreshesTheRoute() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        try await fixture.withMover { _, relay, catalog in
            let tenant = fixture.ids[0]
            let record = try await catalog.requireTenant(tenant)
            let router = Self.router(fixture, catalog, relay: relay)
            try await router.running {
                await router.waitUntilListening()
                let cached = try await router.route(for: tenant)
                #expect(cached.placement == .shared && cached.writeSource == .unified)
                // Any session of the catalog's database can NOTIFY: the application's, here.
                let forged = "tenants:\(tenant):{\"epoch\" : \(cached.epoch + 100), \"placement\" : \"dedicated\", "
                    + "\"status\" : \"active\", \"server\" : null, \"database\" : \"\(record.databaseName!)\", \"role\" : \"\(record.roleName!)\"}"
                _ = try await TestPostgres.strings(fixture.unifiedURL, "SELECT pg_notify('tenantry_routes', '\(forged)')::text")
                _ = try await TestPostgres.strings(fixture.unifiedURL, "SELECT pg_notify('tenantry_routes', 'moves:\(tenant):cutover')::text")
                try await Task.sleep(for: .milliseconds(300))
                let after = try await router.route(for: tenant)
                #expect(after.writeSource == .unified && after.epoch == cached.epoch && after.phase == cached.phase)
                // A real change: the listener re-reads the route, nobody asks for it.
                var changed = record
                changed.placement = .dedicated
                try await catalog.upsertTenant(changed)
                try await eventually("the listener read the switched route") {
                    router.cachedRoute(tenant)?.writeSource == .tenant
                }
                #expect(router.cachedRoute(tenant)?.epoch == record.epoch + 1)
                try await catalog.upsertTenant(record)
                try await eventually("and back") { router.cachedRoute(tenant)?.writeSource == .unified }
            }
            // Not listening: handle() drops the cached route and names it; the payload is ignored.
            _ = try await router.route(for: tenant)
            #expect(router.handle("tenants:\(tenant):{\"placement\" : \"dedicated\"}") == tenant)
            #expect(router.cachedRoute(tenant) == nil)
            #expect(try await router.route(for: tenant).writeSource == .unified)
            #expect(router.handle("tenants:\(tenant)") == tenant)
            #expect(router.handle("tenants:\(tenant)") == nil, "not cached: nothing to read again")
        }
    }

    @Test("a write held by a lock on the tenant database it was switched away from fails fast and lands once on the new side")
    func stragglerFailsFastIntoTheRetry() async throws {
        try await Self.withCutOver { fixture, tenant, cutover, relay, catalog in
            // Not running: no notifications, so its cached route stays the tenant database (a
            // straggler's route, resolved before the rollback).
            let router = Self.router(fixture, catalog, relay: relay) {
                $0.tenantLockTimeout = .milliseconds(300)
                $0.routeTTL = .seconds(600)
            }
            #expect(try await router.route(for: tenant).writeSource == .tenant)
            let tenantURL = try await fixture.tenantURL(tenant)
            // The tenant's table locked the way a re-copy's TRUNCATE locks it, for the whole test.
            try await Database.withConnection(tenantURL, logger: Self.logger) { locker in
                try await locker.query("BEGIN", logger: Self.logger)
                try await locker.query("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE", logger: Self.logger)
                // While the tenant is still dedicated, the lock timeout is the application's error.
                let started = ContinuousClock.now
                await #expect {
                    try await router.withTransaction(tenant: tenant, intent: .write) {
                        try await Self.insert(tenant, "held@example.com", on: $0)
                    }
                } throws: { error in
                    Database.sqlState(of: error) == "55P03"
                }
                #expect(ContinuousClock.now - started < .seconds(5))
                // Rolled back (the lock is on a table, not on the fence): the write now fails fast on
                // the tenant database and runs again on unified.
                _ = try await cutover.rollback(tenant, maxPause: .seconds(30))
                let sides = NIOLockedValueBox<[Route.Source]>([])
                let again = ContinuousClock.now
                try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                    sides.withLockedValue { $0.append(connection.source) }
                    try await Self.insert(tenant, "straggler@example.com", on: connection)
                }
                #expect(ContinuousClock.now - again < .seconds(5))
                #expect(sides.withLockedValue { $0 } == [.tenant, .unified])
                try await locker.query("ROLLBACK", logger: Self.logger)
            }
            #expect(try await Self.count(fixture.unifiedURL, "straggler@example.com") == 1)
            #expect(try await Self.count(tenantURL, "straggler@example.com") == 0)
            #expect(try await Self.count(fixture.unifiedURL, "held@example.com") == 0)
            #expect(try await Self.count(tenantURL, "held@example.com") == 0)
        }
    }

    @Test("a write whose route changed while it waited for a connection runs on the new side only")
    func leaseRecheck() async throws {
        try await Self.withCutOver { fixture, tenant, cutover, relay, catalog in
            // One connection per tenant database: the second write waits for the first one's.
            let router = Self.router(fixture, catalog, relay: relay) { $0.pool.maxPerKey = 1; $0.warmConnections = 0 }
            try await router.running {
                await router.waitUntilListening()
                let release = AsyncStream<Void>.makeStream()
                let holding = AsyncStream<Void>.makeStream()
                let first = Task {
                    try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                        #expect(connection.source == .tenant)
                        holding.continuation.yield()
                        for await _ in release.stream { break }
                    }
                }
                for await _ in holding.stream { break }
                let sides = NIOLockedValueBox<[Route.Source]>([])
                let second = Task {
                    try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                        sides.withLockedValue { $0.append(connection.source) }
                        try await Self.insert(tenant, "waited@example.com", on: connection)
                    }
                }
                try await eventually("the second write waits for a connection") {
                    (await router.poolStatistics()[ServerDirectory.defaultServerName]?.waiting ?? 0) >= 1
                }
                _ = try await cutover.rollback(tenant, maxPause: .seconds(30))
                try await eventually("the router has the rollback's route") { router.cachedRoute(tenant)?.writeSource == .unified }
                release.continuation.yield()
                try await first.value
                try await second.value
                #expect(sides.withLockedValue { $0 } == [.unified])
            }
            #expect(try await Self.count(fixture.unifiedURL, "waited@example.com") == 1)
            #expect(try await Self.count(try await fixture.tenantURL(tenant), "waited@example.com") == 0)
        }
    }
}
