import EmbeddedPostgres
import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("router resilience", .timeLimit(.minutes(5)))
struct RouterResilienceTests {
    @Test("one tenant flooding does not starve the others: their worst wait stays bounded", .disabled("round-robin dispatch still lets the flooding tenant win freed slots; fix pending"))
    func fairness() async throws {
        let fixture = try await RouterFixture.make(count: 5)
        let worst = try await fixture.withRouter(pool: RouterFixture.pool(cap: 4, perTenant: 20)) { router, catalog in
            var policy = ReadPolicy()
            policy.strategy = .tenant
            try await catalog.setReadPolicy(policy)
            let flood = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<80 {
                        group.addTask {
                            _ = try await router.withConnection(tenant: fixture.ids[0], intent: .read) { connection in
                                try await connection.query("SELECT pg_sleep(0.05)")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            try await Task.sleep(for: .milliseconds(150))  // the flood holds the whole pool and queues ~1 s of work
            let waits = try await withThrowingTaskGroup(of: Duration.self) { group in
                for id in fixture.ids.dropFirst() {
                    group.addTask {
                        var worst = Duration.zero
                        for _ in 0..<3 {
                            let start = ContinuousClock.now
                            _ = try await router.withConnection(tenant: id, intent: .read) { connection in
                                try await connection.query("SELECT 1")
                            }
                            worst = max(worst, .now - start)
                        }
                        return worst
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            try await flood.value
            return waits.max() ?? .zero
        }
        // FIFO would make them wait behind the flood's ~1 s backlog; round-robin serves them within
        // a couple of 50 ms holds (plus connection setup).
        #expect(worst < .milliseconds(450), "worst wait of the other tenants: \(worst)")
    }

    @Test("a route changed in the catalog is followed by a second router within 1 s")
    func routeChangeFollowed() async throws {
        let fixture = try await RouterFixture.make(count: 1)
        let tenant = fixture.ids[0]
        let elapsed = try await fixture.withRouter(pool: RouterFixture.pool(cap: 5)) { first, catalog in
            try await fixture.withRouter(pool: RouterFixture.pool(cap: 5)) { second, _ in
                #expect(try await second.route(for: tenant).writeSource == .unified)
                #expect(try await first.route(for: tenant).writeSource == .unified)
                try await Task.sleep(for: .milliseconds(300))  // both listeners are up
                var record = try await catalog.requireTenant(tenant)
                record.placement = .dedicated
                let changed = ContinuousClock.now
                try await catalog.upsertTenant(record)
                while try await second.route(for: tenant).writeSource != .tenant {
                    if ContinuousClock.now - changed > .seconds(5) { break }
                    try await Task.sleep(for: .milliseconds(10))
                }
                let elapsed = ContinuousClock.now - changed
                #expect(try await second.route(for: tenant).epoch == record.epoch + 1)
                let source = try await second.withConnection(tenant: tenant, intent: .write) { $0.source }
                #expect(source == .tenant)
                return elapsed
            }
        }
        #expect(elapsed < .seconds(1), "followed after \(elapsed)")
    }

    @Test("fallback serves reads from unified while a tenant database is down")
    func fallback() async throws {
        let fixture = try await RouterFixture.make(count: 2)
        try await fixture.withRouter(pool: RouterFixture.pool(cap: 5, timeout: .seconds(1))) { router, catalog in
            try await fixture.seedTenantDatabases(router)
            var policy = ReadPolicy()
            policy.strategy = .tenant
            policy.enableFallback = true
            try await catalog.setReadPolicy(policy)
            #expect(try await RouterFixture.readName(router, fixture.ids[0]) == ("Ada 1", .tenant))
            let database = fixture.base.naming.databaseName(for: fixture.ids[0])
            let admin = try await TestPostgres.url()
            try await Database.withConnection(admin, logger: TestPostgres.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(database) ALLOW_CONNECTIONS false"), logger: TestPostgres.logger)
                try await connection.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(database)", logger: TestPostgres.logger)
            }
            try await Task.sleep(for: .milliseconds(100))
            let during = try await RouterFixture.readName(router, fixture.ids[0])
            #expect(during == ("Ada 1", .unified))
            #expect(router.readStatistics.fallbacks >= 1)
            policy.enableFallback = false
            try await catalog.setReadPolicy(policy)
            router.invalidateRoutes()
            await #expect(throws: (any Error).self) { try await RouterFixture.readName(router, fixture.ids[0]) }
            try await Database.withConnection(admin, logger: TestPostgres.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(database) ALLOW_CONNECTIONS true"), logger: TestPostgres.logger)
            }
            #expect(try await RouterFixture.readName(router, fixture.ids[0]) == ("Ada 1", .tenant))
        }
    }

    @Test("consistency verification reports a row changed on one side")
    func consistency() async throws {
        let fixture = try await RouterFixture.make(count: 1)
        let tenant = fixture.ids[0]
        try await fixture.withRouter(pool: RouterFixture.pool(cap: 5)) { router, catalog in
            try await fixture.seedTenantDatabases(router)
            var policy = ReadPolicy()
            policy.strategy = .tenant
            policy.verifyConsistency = true
            policy.verifySampleRate = 1
            try await catalog.setReadPolicy(policy)
            let read: @Sendable (RoutedConnection) async throws -> String = { connection in
                let rows = connection.source == .unified
                    ? try await connection.query("SELECT name FROM customers WHERE shop_id = \(tenant.rawValue) AND id = 1")
                    : try await connection.query("SELECT name FROM customers WHERE id = 1")
                return try rows.first?.decode(String.self) ?? ""
            }
            #expect(try await router.read(tenant: tenant, read) == "Ada 1")
            #expect(router.readStatistics.consistencyChecks == 1 && router.readStatistics.inconsistencies == 0)
            try await fixture.withTenantDatabase(tenant) { connection in
                try await connection.query("UPDATE customers SET name = 'Eve' WHERE id = 1", logger: TestPostgres.logger)
            }
            #expect(try await router.read(tenant: tenant, read) == "Eve")
            #expect(router.readStatistics.inconsistencies == 1)
            #expect(router.readStatistics.recentInconsistencies == ["1"])
        }
    }

    @Test("a tenant server restarted under load: the router recovers, no connection leaks", .disabled("hung once in a run; under investigation"))
    func serverRestart() async throws {
        let second = EmbeddedPostgres(configuration: .temporary())
        try await second.start()
        defer { Task { try? await second.stop() } }
        let base = try await ProvisioningFixture.make()
        let keyring = base.keyring
        let secondURL = try PostgresURL(second.url())
        let server = ServerRecord(
            name: "second", host: "127.0.0.1", port: secondURL.port, adminUser: secondURL.user,
            adminPasswordSealed: try keyring.seal(secondURL.password ?? "", tenant: "server:second", field: "admin_password"))
        let ids = try (1...4).map { try TenantID("\($0)") }
        try await base.withProvisioner(servers: [server]) { provisioner in
            try await provisioner.catalog.upsertServer(server)
            for id in ids { _ = try await provisioner.provision(id, server: "second") }
        }
        let fixture = RouterFixture(base: base, ids: ids)
        let (okAfter, stats, serverSide) = try await fixture.withRouter(
            pool: RouterFixture.pool(cap: 6, timeout: .seconds(3)), servers: [server], serverKeyring: keyring
        ) { router, catalog in
            for id in ids {
                var record = try await catalog.requireTenant(id)
                record.placement = .dedicated
                try await catalog.upsertTenant(record)
            }
            let stop = ManagedFlag()
            let load = Task {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for worker in 0..<8 {
                        group.addTask {
                            var ok = 0
                            var step = 0
                            while !stop.isSet {
                                step += 1
                                let id = ids[(worker + step) % ids.count]
                                if (try? await router.withConnection(tenant: id, intent: .write) { connection in
                                    try await connection.query("INSERT INTO customers (name) VALUES ('load')")
                                }) != nil { ok += 1 }
                                try? await Task.sleep(for: .milliseconds(5))
                            }
                            return ok
                        }
                    }
                    return try await group.reduce(0, +)
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            try await second.stop()
            try await Task.sleep(for: .milliseconds(500))
            try await second.start()
            #expect(try PostgresURL(second.url()).port == secondURL.port, "restarted on the same port")
            try await Task.sleep(for: .seconds(2))
            stop.set()
            _ = try await load.value
            // After the restart, every tenant works again.
            var okAfter = 0
            for id in ids {
                if (try? await router.withConnection(tenant: id, intent: .write) { connection in
                    try await connection.query("INSERT INTO customers (name) VALUES ('after')")
                }) != nil { okAfter += 1 }
            }
            let stats = await router.poolStatistics()["second"]
            let serverSide = try await TestPostgres.strings(PostgresURL(second.url()), """
                SELECT count(*)::text FROM pg_stat_activity WHERE usename LIKE '\(base.catalogURL.database)_u_%'
                """).first.flatMap { $0.flatMap(Int.init) } ?? -1
            return (okAfter, stats, serverSide)
        }
        #expect(okAfter == ids.count)
        let pool = try #require(stats)
        #expect(pool.open <= 6 && pool.peakOpen <= 6)
        #expect(pool.leased == 0)
        #expect(serverSide == pool.open, "server sessions \(serverSide) vs pool open \(pool.open): none leaked")
        #expect(pool.discarded + pool.connectFailures > 0, "the restart was noticed")
    }
}

/// A thread-safe flag for stopping load loops.
final class ManagedFlag: Sendable {
    private let value = NIOLockedValueBoxFlag()
    var isSet: Bool { value.get() }
    func set() { value.set() }
}

import NIOConcurrencyHelpers
final class NIOLockedValueBoxFlag: Sendable {
    private let box = NIOLockedValueBox(false)
    func get() -> Bool { box.withLockedValue { $0 } }
    func set() { box.withLockedValue { $0 = true } }
}
