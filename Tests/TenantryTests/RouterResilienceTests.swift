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
    @Test("one tenant flooding does not starve the others: their worst wait stays bounded")
    func fairness() async throws {
        let fixture = try await RouterFixture.make(count: 5)
        let (worst, ahead, span, stats) = try await fixture.withRouter(pool: RouterFixture.pool(cap: 4, perTenant: 20)) { router, catalog in
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
            // The flood holds the whole pool and queues ~1 s of work.
            try await eventually("the flood queues waiters") { (await router.poolStatistics()["default"]?.waiting ?? 0) >= 10 }
            let othersStart = ContinuousClock.now
            // Per other tenant: its worst wait, and the most leases granted to anyone while one of
            // its requests waited (a scheduling measure, independent of the machine's speed).
            let waits = try await withThrowingTaskGroup(of: (Duration, Int).self) { group in
                for id in fixture.ids.dropFirst() {
                    group.addTask {
                        var (worst, mostAhead) = (Duration.zero, 0)
                        for _ in 0..<3 {
                            let before = await router.poolStatistics()["default"]?.leases ?? 0
                            let start = ContinuousClock.now
                            let ahead = try await router.withConnection(tenant: id, intent: .read) { connection in
                                let granted = await router.poolStatistics()["default"]?.leases ?? 0
                                try await connection.query("SELECT 1")
                                return granted - before - 1
                            }
                            worst = max(worst, .now - start)
                            mostAhead = max(mostAhead, ahead)
                        }
                        return (worst, mostAhead)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            try await flood.value
            let span = ContinuousClock.now - othersStart
            let stats = await router.poolStatistics()["default"]
            return (waits.map(\.0).max() ?? .zero, waits.map(\.1).max() ?? 99, span, stats)
        }
        // First come, first served would make each other tenant's first read wait behind the
        // flood's whole backlog (76 leases, about the whole span; 2.47 s measured). Taking turns,
        // a waiting tenant is passed by at most one lease of each tenant with waiters (5) plus
        // those granted between its grant and its look at the counter (more of those on a loaded
        // machine: 13 seen once in a full suite run beside a benchmark; hence 20, still far from
        // the 76 of first come, first served). On a quiet machine the worst wait is about 0.2 s of
        // a 1.1 s span; both scale with the machine's load.
        #expect(ahead <= 20, "up to \(ahead) leases went to others while one request waited")
        // The lease count above is the load-independent check; this one only rules out FCFS (a
        // wait of about the whole span) and leaves room for a loaded machine (0.51 of the span seen).
        #expect(worst < span * 0.8, "worst wait of the other tenants: \(worst) of the flood's \(span)")
        #expect((stats?.peakOpen ?? 99) <= 4, "the cap held")
        #expect((stats?.evictions ?? 0) > 0, "connections of the flooding tenant were closed to serve the others")
    }

    @Test("a route changed in the catalog is followed by a second router by NOTIFY, long before its cache expires")
    func routeChangeFollowed() async throws {
        let fixture = try await RouterFixture.make(count: 1)
        let tenant = fixture.ids[0]
        let elapsed = try await fixture.withRouter(pool: RouterFixture.pool(cap: 5)) { first, catalog in
            try await fixture.withRouter(pool: RouterFixture.pool(cap: 5)) { second, _ in
                #expect(try await second.route(for: tenant).writeSource == .unified)
                #expect(try await first.route(for: tenant).writeSource == .unified)
                await first.waitUntilListening()
                await second.waitUntilListening()
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
        // Followed by NOTIFY, not by the route cache's expiry (30 s): the bound says which, not how
        // fast a loaded CI machine is (the router benchmark measures the latency).
        #expect(elapsed < .seconds(5), "followed after \(elapsed)")
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
            let sessions = try await TestPostgres.strings(admin, "SELECT pid::text FROM pg_stat_activity WHERE datname = '\(database)'").compactMap { $0 }
            try await Database.withConnection(admin, logger: TestPostgres.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(database) ALLOW_CONNECTIONS false"), logger: TestPostgres.logger)
                try await connection.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(database)", logger: TestPostgres.logger)
            }
            // The terminated sessions are gone: the pool's idle connection to the tenant database is dead.
            try await eventually("the terminated sessions are gone") {
                try await TestPostgres.strings(
                    admin, "SELECT count(*)::text FROM pg_stat_activity WHERE pid = ANY('{\(sessions.joined(separator: ","))}'::int[])") == ["0"]
            }
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

    @Test("a tenant server restarted under load: the router recovers, no connection leaks")
    func serverRestart() async throws {
        // A server that keeps its directory across stop/start (`.temporary()` deletes it on stop)
        // and its port: one below the ephemeral range, so that the load's reconnect attempts
        // cannot take it while the server is down (Linux connects a socket to itself when the
        // target port equals the ephemeral source port it picked).
        let second = try await RestartableServer.start()
        do {
            try await restartUnderLoad(second)
            try await second.remove()
        } catch {
            try? await second.remove()
            throw error
        }
    }

    private func restartUnderLoad(_ second: RestartableServer) async throws {
        let base = try await ProvisioningFixture.make()
        let keyring = base.keyring
        let secondURL = try second.url()
        let server = ServerRecord(
            name: "second", host: "127.0.0.1", port: secondURL.port, adminUser: secondURL.user,
            adminPasswordSealed: try keyring.seal(secondURL.password ?? "", tenant: "server:second", field: "admin_password"))
        let ids = try (1...4).map { try TenantID("\($0)") }
        try await base.withProvisioner(servers: [server]) { provisioner in
            try await provisioner.catalog.upsertServer(server)
            for id in ids { _ = try await provisioner.provision(id, server: "second") }
        }
        let fixture = RouterFixture(base: base, ids: ids)
        let sessions = "SELECT count(*)::text FROM pg_stat_activity WHERE usename LIKE '\(base.catalogURL.database)_u_%'"
        let result = try await fixture.withRouter(
            // The query timeout ends a query sent on a connection the restart just closed, which
            // PostgresNIO would otherwise leave waiting forever.
            pool: RouterFixture.pool(cap: 6, timeout: .seconds(3)), servers: [server], serverKeyring: keyring, queryTimeout: .seconds(5)
        ) { router, catalog in
            for id in ids {
                var record = try await catalog.requireTenant(id)
                record.placement = .dedicated
                try await catalog.upsertTenant(record)
            }
            let stop = ManagedFlag()
            let load = Task {
                try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                    for worker in 0..<8 {
                        group.addTask {
                            var (ok, failed) = (0, 0)
                            var step = 0
                            while !stop.isSet {
                                step += 1
                                let id = ids[(worker + step) % ids.count]
                                do {
                                    try await router.withConnection(tenant: id, intent: .write) { connection in
                                        try await connection.query("INSERT INTO customers (name) VALUES ('load')")
                                    }
                                    ok += 1
                                } catch {
                                    failed += 1
                                }
                                try? await Task.sleep(for: .milliseconds(5))
                            }
                            return (ok, failed)
                        }
                    }
                    return try await group.reduce((0, 0)) { ($0.0 + $1.0, $0.1 + $1.1) }
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            try await withTimeLimit(.seconds(90), "stopping the server") { try await second.stop() }
            try await Task.sleep(for: .milliseconds(500))
            try await withTimeLimit(.seconds(90), "starting the server") { try await second.start() }
            #expect(try second.url().port == secondURL.port, "restarted on the same port")
            try await Task.sleep(for: .seconds(2))
            stop.set()
            // Every call is bounded by the lease timeout (3 s) plus one query: the load ends at once.
            let (okDuring, failedDuring) = try await withTimeLimit(.seconds(20), "the load to stop") { try await load.value }
            // After the restart, every tenant works again.
            var okAfter = 0
            for id in ids {
                try await withTimeLimit(.seconds(10), "a write after the restart") {
                    try await router.withConnection(tenant: id, intent: .write) { connection in
                        try await connection.query("INSERT INTO customers (name) VALUES ('after')")
                    }
                }
                okAfter += 1
            }
            let stats = try #require(await router.poolStatistics()["second"])
            // Closed connections leave pg_stat_activity a moment after the client closes them.
            var serverSide = -1
            for _ in 0..<50 {
                serverSide = try await TestPostgres.strings(try second.url(), sessions).first.flatMap { $0.flatMap(Int.init) } ?? -1
                if serverSide == stats.open { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            return (okDuring, failedDuring, okAfter, stats, serverSide)
        }
        let (okDuring, failedDuring, okAfter, pool, serverSide) = result
        // Most writes during the restart wait for the server within the lease timeout (3 s) and succeed.
        #expect(okDuring > 0, "the load ran across the restart (\(okDuring) ok, \(failedDuring) failed)")
        #expect(okAfter == ids.count)
        #expect(pool.open <= 6 && pool.peakOpen <= 6)
        #expect(pool.leased == 0 && pool.waiting == 0)
        #expect(serverSide == pool.open, "server sessions \(serverSide) vs pool open \(pool.open): none leaked")
        #expect(pool.discarded + pool.connectFailures > 0, "the restart was noticed")
    }
}

/// Runs `body`, failing with a clear error instead of hanging when it takes longer than `limit`.
/// (A body that ignores cancellation keeps running in the background; the test goes on.)
func withTimeLimit<T: Sendable>(
    _ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let result = NIOLockedValueBox<CheckedContinuation<T, any Error>?>(nil)
    return try await withCheckedThrowingContinuation { continuation in
        result.withLockedValue { $0 = continuation }
        let work = Task {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
            result.withLockedValue { $0.take() }?.resume(with: outcome)
        }
        Task {
            try? await Task.sleep(for: limit)
            if let continuation = result.withLockedValue({ $0.take() }) {
                work.cancel()
                continuation.resume(throwing: TimeLimitExceeded(what: what, limit: limit))
            }
        }
    }
}

/// `withTimeLimit` ran out.
struct TimeLimitExceeded: Error, CustomStringConvertible {
    var what: String
    var limit: Duration
    var description: String { "\(what) took longer than \(limit)" }
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
