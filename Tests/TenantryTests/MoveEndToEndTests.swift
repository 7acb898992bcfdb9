import Foundation
import HandyShop
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("online move end to end: 10 shops, router load and direct writers, every phase", .timeLimit(.minutes(6)))
struct MoveEndToEndTests {
    @Test("copy → sync → reads canary → percentage 50 → tenant → cutover → rollback of one shop: every acknowledged write lands, row by row")
    func tenShops() async throws {
        let fixture = try await MoveFixture.make(shops: 10, rowsPerShop: 60)
        let logger = MoveFixture.logger
        try await fixture.withMover { copier, relay, catalog in
            var pool = TenantPool.Configuration()
            pool.maxConnections = 16
            var configuration = TenantRouter.Configuration(unifiedURL: fixture.unifiedURL, pool: pool)
            configuration.afterSyncedWrite = { tenant in await relay.drain(tenant) }
            let router = TenantRouter(
                configuration: configuration, catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: fixture.base.keyring), servers: fixture.directory(),
                logger: logger)
            let routerTask = Task { try await router.run() }
            let relayTask = Task { try await relay.run() }
            defer { routerTask.cancel(); relayTask.cancel() }

            // The application, through the router, and two old clients writing straight to unified.
            let load = try HandyShopLoad(router: router, shops: fixture.ids, options: .init(rate: 80, workers: 4, writeShare: 0.5, seed: 3))
            let loadTask = Task { await load.run() }
            let direct = DirectWriters(url: fixture.unifiedURL, shops: fixture.ids)
            let directTasks = (0..<2).map { worker in Task { try await direct.run(worker) } }

            // Copy and sync under load (once the load has written); verify twice (the verifier and an
            // independent query).
            try await eventually("the load is writing") { load.report().writes >= 5 }
            _ = try await concurrentMap(fixture.ids, concurrency: 2) { id in try await copier.copy(id) }
            _ = try await relay.catchUp(timeout: .seconds(60))
            let verifier = Verifier(plan: fixture.plan, logger: logger)
            for id in fixture.ids {
                let report = try await verifier.verify(
                    id, unifiedURL: fixture.unifiedURL, tenantURL: try await fixture.tenantURL(id),
                    settle: { _ = try await relay.catchUp([id], timeout: .seconds(30)) })
                #expect(report.equal, "shop \(id) differs after copy and sync: \(report.tables.flatMap(\.differences).prefix(3))")
            }

            // Reads: canary, then half, then every shop; each step is followed live by the router.
            var policy = try await catalog.readPolicy()
            policy.strategy = .canary
            policy.canaryIDs = [fixture.ids[0]]
            try await catalog.setReadPolicy(policy)
            try await eventually("the canary's reads go to its database") {
                try await router.withConnection(tenant: fixture.ids[0], intent: .read) { $0.source } == .tenant
            }
            #expect(try await router.withConnection(tenant: fixture.ids[1], intent: .read) { $0.source } == .unified)
            policy.strategy = .percentage
            policy.percentage = 50
            try await catalog.setReadPolicy(policy)
            try await eventually("about half the shops read from their databases") {
                var tenantReads = 0
                for id in fixture.ids where try await router.withConnection(tenant: id, intent: .read, { $0.source }) == .tenant {
                    tenantReads += 1
                }
                return tenantReads == fixture.ids.filter { policy.readsFromTenantDatabase($0) }.count
            }
            policy.strategy = .tenant
            try await catalog.setReadPolicy(policy)
            try await eventually("every shop reads from its database") {
                for id in fixture.ids where try await router.withConnection(tenant: id, intent: .read, { $0.source }) != .tenant {
                    return false
                }
                return true
            }
            let writesBeforeCutover = load.report().writes
            try await eventually("the load writes while every shop reads from its database") {
                load.report().writes >= writesBeforeCutover + 5
            }

            // Cutover of every shop under load.
            let cutover = Cutover(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: logger)
            for id in fixture.ids {
                // A generous bound: every suite runs at once on the test machine (the benchmark measures the pause).
                _ = try await cutover.cutover(id, maxPause: .seconds(30))
                #expect(try await catalog.tenant(id)?.placement == .dedicated)
            }
            let writesAfterCutover = load.report().writes
            try await eventually("the load writes to the dedicated shops") { load.report().writes >= writesAfterCutover + 5 }
            // Direct writers are now refused for every shop, with the clear error.
            try await eventually("every direct writer was refused") { direct.refusals.withLockedValue { $0 } >= 2 }
            #expect(direct.unexpected.withLockedValue { $0 } == [])

            // Rollback of one shop after cutover: its writes go to unified again.
            let rolledBack = fixture.ids[2]
            _ = try await cutover.rollback(rolledBack, maxPause: .seconds(30))
            // Routers learn the flip by NOTIFY: soon, not necessarily before rollback returns (a write
            // that reaches the tenant database meanwhile is refused there and rerun on unified).
            try await eventually("the router sends the rolled-back shop's writes to unified") {
                try await router.withTransaction(tenant: rolledBack, intent: .write) { $0.source } == .unified
            }
            let writesAfterRollback = load.report().writes
            try await eventually("the load writes after the rollback") { load.report().writes >= writesAfterRollback + 5 }

            await load.stop()
            await loadTask.value
            direct.stop.withLockedValue { $0 = true }
            for task in directTasks { try await task.value }
            _ = try await relay.catchUp(timeout: .seconds(60))

            // Every write the router acknowledged is where the shop's data lives now, row by row.
            let report = load.report()
            #expect(report.errors == 0, "load errors: \(report.errorSamples)")
            #expect(report.writes > 50, "the load wrote \(report.writes)")
            #expect((report.writesBySource["tenant"] ?? 0) > 0 && (report.writesBySource["unified"] ?? 0) > 0)
            #expect(try await load.lostWrites() == [])
            // Every acknowledged direct write too: in the tenant database of a moved shop, in
            // unified for the rolled-back one.
            let acknowledged = direct.acknowledged.withLockedValue { $0 }
            #expect(acknowledged.count > 10)
            for (shop, emails) in Dictionary(grouping: acknowledged, by: \.shop).mapValues({ $0.map(\.email) }) {
                let url = shop == rolledBack ? fixture.unifiedURL : try await fixture.tenantURL(shop)
                let found = Set(try await TestPostgres.strings(url, "SELECT email FROM customers WHERE email LIKE 'direct.%'").compactMap { $0 })
                #expect(Set(emails).isSubset(of: found), "shop \(shop): \(Set(emails).subtracting(found).count) direct writes missing")
            }
            // Reverse sync kept unified equal to every dedicated shop, and the rolled-back shop's
            // database equals unified up to the rollback; checked by an independent query.
            for id in fixture.ids where id != rolledBack {
                #expect(try await fixture.independentDifferences(id) == [], "shop \(id)")
            }
            routerTask.cancel()
            _ = try? await routerTask.value
        }
    }
}

/// Old clients that write to the unified database directly (not through the router): each insert
/// they were told committed is remembered; a refusal because the shop moved is counted.
final class DirectWriters: Sendable {
    struct Write: Sendable { var shop: TenantID; var email: String }
    let url: PostgresURL
    let shops: [TenantID]
    let stop = NIOLockedValueBox(false)
    let acknowledged = NIOLockedValueBox<[Write]>([])
    let refusals = NIOLockedValueBox(0)
    let unexpected = NIOLockedValueBox<[String]>([])

    init(url: PostgresURL, shops: [TenantID]) {
        self.url = url
        self.shops = shops
    }

    func run(_ worker: Int) async throws {
        var count = 0
        var refusedShops: Set<TenantID> = []
        while !stop.withLockedValue({ $0 }) {
            let live = shops.filter { !refusedShops.contains($0) }
            guard !live.isEmpty else {
                try await Task.sleep(for: .milliseconds(50))
                continue
            }
            let shop = live[count % live.count]
            let email = "direct.\(worker).\(count)@example.com"
            count += 1
            do {
                try await Database.withConnection(url, logger: TestPostgres.logger) { connection in
                    try await connection.query("""
                        INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(Int64(shop.rawValue)!), 'D', 'W', \(email))
                        """, logger: TestPostgres.logger)
                }
                acknowledged.withLockedValue { $0.append(Write(shop: shop, email: email)) }
            } catch {
                let message = Database.message(of: error)
                if message.contains("has moved to its own database") {
                    if refusedShops.isEmpty { refusals.withLockedValue { $0 += 1 } }
                    refusedShops.insert(shop)
                } else {
                    unexpected.withLockedValue { $0.append(message) }
                }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
