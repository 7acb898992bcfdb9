import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

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
