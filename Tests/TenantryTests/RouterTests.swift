import EmbeddedPostgres
import Foundation
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Provisioned tenants plus a router over them.
struct RouterFixture {
    let base: ProvisioningFixture
    let ids: [TenantID]

    /// Provisions `count` tenants, puts `Ada <id>` into each database and into unified
    /// (`customers(shop_id, id, name)` in the catalog database), and marks them `syncing`.
    static func make(count: Int, servers: [ServerRecord] = [], serverKeyring: Keyring? = nil) async throws -> RouterFixture {
        let base = try await ProvisioningFixture.make()
        let ids = try (1...count).map { try TenantID("\($0)") }
        try await base.withProvisioner(servers: servers) { provisioner in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for chunk in stride(from: 0, to: ids.count, by: max(1, ids.count / 4)) {
                    let slice = ids[chunk..<min(ids.count, chunk + max(1, ids.count / 4))]
                    group.addTask { for id in slice { _ = try await provisioner.provision(id) } }
                }
                try await group.waitForAll()
            }
            for id in ids {
                try await provisioner.catalog.setPhase(id, to: .copying)
                try await provisioner.catalog.setPhase(id, to: .syncing)
            }
        }
        try await Database.withConnection(base.catalogURL, logger: TestPostgres.logger) { connection in
            try await connection.query("CREATE TABLE customers (shop_id text, id bigint, name text)", logger: TestPostgres.logger)
            for id in ids {
                try await connection.query(
                    "INSERT INTO customers VALUES (\(id.rawValue), 1, \("Ada \(id.rawValue)"))", logger: TestPostgres.logger)
            }
        }
        return RouterFixture(base: base, ids: ids)
    }

    /// Seeds each tenant database with the same row as unified (as a copy would).
    func seedTenantDatabases(_ router: TenantRouter) async throws {
        for id in ids {
            try await router.withTransaction(tenant: id, intent: .write) { _ in }
            try await withTenantDatabase(id) { connection in
                try await connection.query("INSERT INTO customers (id, name) VALUES (1, \("Ada \(id.rawValue)"))", logger: TestPostgres.logger)
            }
        }
    }

    func withTenantDatabase<T: Sendable>(_ id: TenantID, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        let url = try await TestPostgres.url(database: base.naming.databaseName(for: id))
        return try await Database.withConnection(url, logger: TestPostgres.logger, body)
    }

    func withRouter<T: Sendable>(
        pool: TenantPool.Configuration, servers: [ServerRecord] = [], serverKeyring: Keyring? = nil, queryTimeout: Duration? = nil,
        _ body: @escaping @Sendable (TenantRouter, Catalog) async throws -> T
    ) async throws -> T {
        try await Catalog.withCatalog(base.catalogURL, logger: TestPostgres.logger) { catalog in
            let directory = ServerDirectory(
                databaseURL: base.catalogURL, superuser: nil, superuserPassword: nil, servers: servers,
                keyring: serverKeyring ?? base.keyring)
            var configuration = TenantRouter.Configuration(unifiedURL: base.catalogURL, pool: pool)
            configuration.queryTimeout = queryTimeout
            let router = TenantRouter(
                configuration: configuration, catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: base.keyring), servers: directory,
                logger: TestPostgres.logger)
            return try await router.running { try await body(router, catalog) }
        }
    }

    /// Reads customer 1's name through the router, on whichever side it is routed to.
    static func readName(_ router: TenantRouter, _ tenant: TenantID) async throws -> (String, Route.Source) {
        try await router.withConnection(tenant: tenant, intent: .read) { connection in
            let rows = connection.source == .unified
                ? try await connection.query("SELECT name FROM customers WHERE shop_id = \(tenant.rawValue) AND id = 1")
                : try await connection.query("SELECT name FROM customers WHERE id = 1")
            return (try rows.first?.decode(String.self) ?? "", connection.source)
        }
    }

    static func pool(cap: Int, perTenant: Int = 20, timeout: Duration = .seconds(10)) -> TenantPool.Configuration {
        var configuration = TenantPool.Configuration()
        configuration.maxConnections = cap
        configuration.maxPerKey = perTenant
        configuration.leaseTimeout = timeout
        return configuration
    }
}

@Suite("router", .timeLimit(.minutes(5)))
struct RouterTests {
    @Test("read strategies route as specified; writes stay on unified until dedicated")
    func strategies() async throws {
        let fixture = try await RouterFixture.make(count: 4)
        try await fixture.withRouter(pool: RouterFixture.pool(cap: 10)) { router, catalog in
            try await fixture.seedTenantDatabases(router)
            let ids = fixture.ids
            func sources() async throws -> [Route.Source] {
                router.invalidateRoutes()
                var result: [Route.Source] = []
                for id in ids { result.append(try await RouterFixture.readName(router, id).1) }
                return result
            }
            #expect(try await sources() == [.unified, .unified, .unified, .unified])
            var policy = ReadPolicy()
            policy.strategy = .canary
            policy.canaryIDs = [ids[1]]
            try await catalog.setReadPolicy(policy)
            #expect(try await sources() == [.unified, .tenant, .unified, .unified])
            policy.strategy = .shopList
            policy.shopIDs = [ids[0], ids[3]]
            try await catalog.setReadPolicy(policy)
            #expect(try await sources() == [.tenant, .unified, .unified, .tenant])
            policy.strategy = .percentage
            policy.percentage = 50
            try await catalog.setReadPolicy(policy)
            #expect(try await sources() == ids.map { ReadPolicy.bucket(of: $0) < 50 ? .tenant : .unified })
            policy.strategy = .tenant
            try await catalog.setReadPolicy(policy)
            #expect(try await sources() == [.tenant, .tenant, .tenant, .tenant])
            // Names are the same on both sides.
            #expect(try await RouterFixture.readName(router, ids[2]).0 == "Ada 3")
            // Writes go to unified while the tenant is shared.
            let writeSource = try await router.withConnection(tenant: ids[0], intent: .write) { $0.source }
            #expect(writeSource == .unified)
            // Unified connections carry the tenant for row-level security.
            let setting = try await router.withConnection(tenant: ids[0], intent: .write) { connection in
                try await connection.query("SELECT current_setting('tenantry.tenant')").first?.decode(String.self)
            }
            #expect(setting == "1")
        }
    }

    @Test("50 tenant databases, cap 10, 40 concurrent tasks: never more than 10 server connections, all succeed")
    func globalCap() async throws {
        let fixture = try await RouterFixture.make(count: 50)
        let prefix = fixture.base.catalogURL.database
        let (peakSeen, stats, failures) = try await fixture.withRouter(pool: RouterFixture.pool(cap: 10, perTenant: 4)) { router, catalog in
            var policy = ReadPolicy()
            policy.strategy = .tenant
            try await catalog.setReadPolicy(policy)
            // One sampling connection for the whole run (not one per sample: a connection every
            // 10 ms adds churn to a server the other tests share). Stopped by a flag, not by
            // cancellation: cancelling a task mid-query closes its connection and throws.
            let stop = NIOLockedValueBox(false)
            let sampling = Task {
                try await Database.withConnection(fixture.base.catalogURL, logger: TestPostgres.logger) { connection in
                    var peak = 0
                    var previous = 0
                    while !stop.withLockedValue({ $0 }) {
                        let rows = try await connection.query(PostgresQuery(unsafeSQL: """
                            SELECT count(*)::int FROM pg_stat_activity WHERE usename LIKE '\(prefix)_u_%'
                            """), logger: TestPostgres.logger)
                        var count = 0
                        for try await value in rows.decode(Int.self) { count = value }
                        // The backend of a connection the pool has just closed (evicted) leaves
                        // pg_stat_activity a moment after its replacement appears: a count counts
                        // when the next sample, 10 ms later, still sees it (the pool's own
                        // `peakOpen` below is the exact check).
                        peak = max(peak, min(previous, count))
                        previous = count
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                    return peak
                }
            }
            let failures = try await withThrowingTaskGroup(of: Int.self) { group in
                for task in 0..<40 {
                    group.addTask {
                        var failed = 0
                        for step in 0..<15 {
                            let id = fixture.ids[(task * 7 + step * 13) % fixture.ids.count]
                            do {
                                let value = try await router.withConnection(tenant: id, intent: .read) { connection in
                                    try await connection.query("SELECT count(*)::int FROM customers, pg_sleep(0.002)").first?.decode(Int.self)
                                }
                                if value == nil { failed += 1 }
                            } catch { failed += 1 }
                        }
                        return failed
                    }
                }
                return try await group.reduce(0, +)
            }
            stop.withLockedValue { $0 = true }
            let peak = try await sampling.value
            return (peak, await router.poolStatistics()["default"], failures)
        }
        #expect(failures == 0)
        #expect(peakSeen <= 10, "pg_stat_activity saw \(peakSeen) tenant connections")
        #expect(peakSeen >= 5, "the test did not load the pool (peak \(peakSeen))")
        #expect((stats?.peakOpen ?? 99) <= 10)
        #expect((stats?.evictions ?? 0) > 0, "at the cap, idle connections of other tenants are evicted")
    }

    @Test("saturated pool: the lease times out with a clear error")
    func leaseTimeout() async throws {
        let fixture = try await RouterFixture.make(count: 2)
        try await fixture.withRouter(pool: RouterFixture.pool(cap: 1, timeout: .milliseconds(300))) { router, _ in
            let (held, holding) = AsyncStream.makeStream(of: Void.self)
            let holder = Task {
                try await router.withConnection(tenant: fixture.ids[0], intent: .write) { connection in
                    holding.yield()
                    try await connection.query("SELECT pg_sleep(1.5)")
                }
            }
            for await _ in held { break }  // the only connection is leased
            let start = ContinuousClock.now
            let error = await #expect(throws: TenantryError.self) {
                try await router.withConnection(tenant: fixture.ids[1], intent: .write) { _ in }
            }
            #expect(error?.code == .timeout)
            #expect(error?.message.contains("no connection for") == true, "\(error?.message ?? "")")
            #expect(ContinuousClock.now - start < .seconds(1))
            _ = try await holder.value
        }
    }
}
