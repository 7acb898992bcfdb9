import Logging
import PostgresNIO
import TenantryCore

/// The databases fleet migrations run on: the template (`tenantry_template`, which provisioning
/// clones) and every provisioned tenant database in the catalog.
public struct SchemaFleet: Sendable {
    /// The template database's name.
    public var templateDatabase: String

    /// The catalog that lists tenants.
    public var catalog: Catalog
    /// Admin logins per server.
    public var servers: ServerDirectory
    /// Logger.
    public var logger: Logger

    /// Creates a fleet view.
    public init(catalog: Catalog, servers: ServerDirectory, templateDatabase: String = TemplateDatabase.defaultName, logger: Logger) {
        self.templateDatabase = templateDatabase
        self.catalog = catalog
        self.servers = servers
        self.logger = logger
    }

    /// The tenant databases to migrate: every active tenant with a database, or just `only`.
    public func targets(only: [TenantID]? = nil) async throws -> [FleetMigrator.Target] {
        let tenants = try await catalog.tenants()
        if let only {
            for id in only where !tenants.contains(where: { $0.id == id && $0.databaseName != nil }) {
                throw TenantryError(
                    code: .tenantNotFound, message: "tenant \(id) has no database in the catalog (provision it first)",
                    tenant: id.rawValue)
            }
        }
        var targets = try tenants.filter { tenant in
            tenant.databaseName != nil && tenant.status == .active && (only?.contains(tenant.id) ?? true)
        }.map { tenant in
            let database = tenant.databaseName ?? ""
            return FleetMigrator.Target(
                database: database, tenant: tenant.id, url: try servers.adminURL(server: tenant.serverName, database: database))
        }
        // A tenant moving between servers has a second database kept current by the relay: it is
        // migrated too, so that both hold the same schema when the writes switch.
        for move in try await catalog.activeServerMoves()
        where (move.phase == .moving || move.phase == .switched) && (only?.contains(move.tenant) ?? true) {
            targets.append(FleetMigrator.Target(
                database: "\(move.followerDatabase)@\(move.followerServer)", tenant: move.tenant,
                url: try servers.adminURL(server: move.followerServer, database: move.followerDatabase)))
        }
        return targets
    }

    /// Migrates the template of the default server and of every registered server (each under the
    /// template lock). Stops at the first failure.
    public func prepareTemplates(migrations: [MigrationFile]) async throws -> [FleetMigrator.Outcome] {
        let template = TemplateDatabase(name: templateDatabase, servers: servers, migrations: migrations, logger: logger)
        var outcomes: [FleetMigrator.Outcome] = []
        for server in [nil] + servers.servers.map(\.name) {
            var outcome = try await template.prepare(server: server)
            outcome.database = "\(templateDatabase)@\(server ?? ServerDirectory.defaultServerName)"
            outcomes.append(outcome)
        }
        return outcomes
    }

    /// Stores each tenant's schema version in the catalog after a run.
    public func record(_ outcomes: [FleetMigrator.Outcome]) async throws {
        for outcome in outcomes {
            guard let tenant = outcome.tenant else { continue }
            try await catalog.client.query(
                "UPDATE tenantry.tenants SET schema_version = \(outcome.version), updated_at = now() WHERE id = \(tenant)",
                logger: logger)
        }
    }
}
