import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The credential registry's one-statement read: the tenant record and its credential together,
/// marked used, and the same refusals as before for what is missing.
@Suite("credential registry: one catalog statement per miss", .timeLimit(.minutes(3)))
struct CredentialRegistryTests {
    @Test("a miss returns the record's database and the opened password, marks the credential used; missing parts are refused apart")
    func oneStatement() async throws {
        let fixture = try await ProvisioningFixture.make()
        let tenant = try TenantID("7")
        _ = try await fixture.withProvisioner { try await $0.provision(tenant) }
        try await Catalog.withCatalog(fixture.catalogURL, logger: TestPostgres.logger) { catalog in
            let registry = CredentialRegistry(catalog: catalog, keyring: fixture.keyring)
            let record = try await catalog.requireTenant(tenant)
            let stored = try #require(try await catalog.credential(tenant))
            #expect(stored.lastUsedAt == nil)
            let credentials = try await registry.credentials(for: tenant)
            #expect(credentials.database == record.databaseName && credentials.server == record.serverName)
            #expect(credentials.username == stored.username)
            #expect(credentials.password == (try fixture.keyring.open(stored.passwordSealed, tenant: "7", field: "password")))
            #expect(try await catalog.credential(tenant)?.lastUsedAt != nil)
            // The router's route resolves from one query too, with the same fields.
            let router = TenantRouter(
                configuration: .init(unifiedURL: fixture.catalogURL, pool: TenantPool.Configuration()), catalog: catalog, registry: registry,
                servers: ServerDirectory(databaseURL: fixture.catalogURL, superuser: nil, superuserPassword: nil, servers: [], keyring: nil),
                logger: TestPostgres.logger)
            let route = try await router.route(for: tenant)
            #expect(route.database == record.databaseName && route.role == record.roleName && route.epoch == record.epoch)
            #expect(route.phase == (try await catalog.move(tenant)?.phase ?? .shared) && route.placement == record.placement)
            #expect(try await router.route(for: try TenantID("404")) == Route.shared(try TenantID("404")))

            // An inactive credential, then a missing one: "no stored credentials"; no tenant: "no provisioned database".
            try await Self.execute(fixture.catalogURL, "UPDATE tenantry.credentials SET active = false WHERE tenant_id = '7'")
            await registry.invalidate(tenant)
            let inactive = await #expect(throws: TenantryError.self) { try await registry.credentials(for: tenant) }
            #expect(inactive?.message.contains("no stored credentials") == true)
            try await Self.execute(fixture.catalogURL, "DELETE FROM tenantry.credentials WHERE tenant_id = '7'")
            let missing = await #expect(throws: TenantryError.self) { try await registry.credentials(for: tenant) }
            #expect(missing?.message.contains("no stored credentials") == true)
            let unknown = await #expect(throws: TenantryError.self) { try await registry.credentials(for: try TenantID("404")) }
            #expect(unknown?.message.contains("no provisioned database") == true)
        }
    }

    static func execute(_ url: PostgresURL, _ sql: String) async throws {
        try await Database.withConnection(url, logger: TestPostgres.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: TestPostgres.logger)
        }
    }
}
