import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// A HandyShop unified database (with the catalog inside it), its tenants provisioned from the
/// derived schema, and capture installed: the starting point of a move.
struct MoveFixture {
    let base: ProvisioningFixture
    let unifiedURL: PostgresURL
    let ids: [TenantID]
    let plan: MovePlan
    let migration: MigrationFile
    /// Registered servers (tenant databases may live there).
    let servers: [ServerRecord]
    /// The server holding the tenant databases, when not the shared test server.
    var tenantServer: PostgresURL?
    static let logger = TestPostgres.logger

    static func make(
        shops: Int, rowsPerShop: Int = 120, provision: Int? = nil,
        servers: (Keyring) throws -> [ServerRecord] = { _ in [] }, server: String? = nil
    ) async throws -> MoveFixture {
        try await make(tenants: provision ?? shops, servers: servers, server: server) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: logger)
            _ = try await HandyShopGenerator(options: .init(shops: shops, rowsPerShop: rowsPerShop, seed: 7))
                .generate(on: connection, logger: logger)
        }
    }

    /// A unified database loaded by `load`, tenants `1...tenants` provisioned from its derived
    /// schema, capture installed.
    static func make(
        tenants: Int, servers makeServers: (Keyring) throws -> [ServerRecord] = { _ in [] }, server: String? = nil,
        load: (PostgresConnection) async throws -> Void
    ) async throws -> MoveFixture {
        let base = try await ProvisioningFixture.make()
        let servers = try makeServers(base.keyring)
        let url = base.catalogURL
        let (plan, ddl) = try await Database.withConnection(url, logger: logger) { connection in
            try await load(connection)
            let unified = try await SchemaIntrospector(logger: logger).read(connection)
            let derived = try TenantSchemaDeriver().derive(from: unified)
            return (try MovePlan.make(unified: unified, discriminator: "shop_id"), try SchemaDDL.render(derived.schema))
        }
        let migration = MigrationFile(version: 1, name: "tenant schema", sql: ddl)
        let ids = try (1...tenants).map { try TenantID("\($0)") }
        let fixture = MoveFixture(base: base, unifiedURL: url, ids: ids, plan: plan, migration: migration, servers: servers)
        try await fixture.withProvisioner(servers: servers) { provisioner in
            for record in servers { try await provisioner.catalog.upsertServer(record) }
            _ = try await concurrentMap(ids, concurrency: 4) { id in _ = try await provisioner.provision(id, server: server) }
        }
        try await fixture.capture().install()
        return fixture
    }

    func withProvisioner<T: Sendable>(
        servers: [ServerRecord] = [], _ body: @Sendable (TenantProvisioner) async throws -> T
    ) async throws -> T {
        try await Catalog.withCatalog(base.catalogURL, logger: Self.logger) { catalog in
            let provisioner = TenantProvisioner(
                catalog: catalog, servers: directory(servers: servers), keyring: base.keyring, naming: base.naming,
                migrations: [migration], actor: "test", logger: Self.logger)
            return try await body(provisioner)
        }
    }

    func directory(servers: [ServerRecord] = []) -> ServerDirectory {
        ServerDirectory(databaseURL: unifiedURL, superuser: nil, superuserPassword: nil, servers: servers, keyring: base.keyring)
    }

    func capture() -> Capture {
        Capture(unifiedURL: unifiedURL, enableTimeout: .seconds(20), logger: Self.logger)
    }

    /// Runs `body` with a copier and a relay over the fixture's catalog.
    func withMover<T: Sendable>(
        relay configuration: Relay.Configuration = Relay.Configuration(),
        _ body: @Sendable (Copier, Relay, Catalog) async throws -> T
    ) async throws -> T {
        try await Catalog.withCatalog(base.catalogURL, logger: Self.logger) { catalog in
            let copier = Copier(
                catalog: catalog, servers: directory(servers: servers), unifiedURL: unifiedURL, plan: plan, capture: capture(),
                actor: "test", logger: Self.logger)
            var relayLogger = Logger(label: "relay", factory: { StreamLogHandler.standardError(label: $0) })
            relayLogger.logLevel = ProcessInfo.processInfo.environment["TENANTRY_TEST_RELAY_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
            let relay = Relay(
                configuration: configuration, catalog: catalog, servers: directory(servers: servers), unifiedURL: unifiedURL,
                plan: plan, logger: relayLogger)
            do {
                let result = try await body(copier, relay, catalog)
                await relay.close()
                return result
            } catch {
                await relay.close()
                throw error
            }
        }
    }

    func tenantURL(_ id: TenantID) async throws -> PostgresURL {
        if let tenantServer { return tenantServer.with(database: base.naming.databaseName(for: id)) }
        return try await TestPostgres.url(database: base.naming.databaseName(for: id))
    }

    /// Every tenant table's rows of `id`, as `ROW(…)::text` sorted, from each side, computed by a
    /// query independent of the verifier.
    func independentDifferences(_ id: TenantID) async throws -> [String] {
        var differences: [String] = []
        for table in plan.tables {
            let columns = table.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
            let unified = try await TestPostgres.strings(
                unifiedURL, "SELECT ROW(\(columns))::text FROM \"\(table.name)\" WHERE shop_id = \(id.rawValue) ORDER BY 1")
            let tenant = try await TestPostgres.strings(
                try await tenantURL(id), "SELECT ROW(\(columns))::text FROM \"\(table.name)\" ORDER BY 1")
            if unified != tenant {
                let u = Set(unified.compactMap { $0 }), t = Set(tenant.compactMap { $0 })
                differences.append("\(table.name): \(u.subtracting(t).count) only in unified, \(t.subtracting(u).count) only in tenant")
            }
        }
        return differences
    }
}

