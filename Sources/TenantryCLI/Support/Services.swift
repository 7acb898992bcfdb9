import Foundation
import Tenantry
import TenantryCore

/// The catalog plus what most commands build on it: admin logins per server.
struct Services: Sendable {
    let context: CommandContext
    let catalog: Catalog
    let servers: ServerDirectory
    let databaseURL: PostgresURL

    /// Runs `body` with the services over a current catalog.
    static func with<Result: Sendable>(
        _ context: CommandContext, _ body: @Sendable (Services) async throws -> Result
    ) async throws -> Result {
        let databaseURL = try await context.databaseURL()
        return try await context.withCatalog { catalog in
            try await catalog.requireCurrent()
            let directory = ServerDirectory(
                databaseURL: databaseURL, superuser: context.configuration.superuser,
                superuserPassword: context.configuration.superuserPassword,
                servers: try await catalog.servers(), keyring: context.configuration.keyring)
            return try await body(Services(context: context, catalog: catalog, servers: directory, databaseURL: databaseURL))
        }
    }

    /// A provisioner (needs `TENANT_ENCRYPTION_KEY` and the fleet migration files).
    func provisioner(migrationsDirectory: String?, needsMigrations: Bool = true) throws -> TenantProvisioner {
        let keyring = try context.configuration.requireKeyring()
        let directory = migrationsDirectory ?? context.configuration.migrationsDirectory
        let files: [MigrationFile]
        if FileManager.default.fileExists(atPath: directory) {
            files = try MigrationFile.load(directory: directory)
        } else if !needsMigrations {
            files = []
        } else {
            throw TenantryError(
                code: .invalidArgument,
                message: "migrations directory \(directory) does not exist: run 'tenantry schema derive' first "
                    + "(or set --migrations / TENANTRY_MIGRATIONS)")
        }
        return TenantProvisioner(
            catalog: catalog, servers: servers, keyring: keyring, naming: context.configuration.naming,
            migrations: files, connectionLimit: context.configuration.pool.maxPerTenant + 5,
            actor: context.actor, logger: context.logger)
    }
}

/// Parses tenant ids given as arguments (each may be a comma-separated list).
func parseTenantIDs(_ values: [String]) throws -> [TenantID] {
    var ids: [TenantID] = []
    for value in values {
        for part in value.split(separator: ",", omittingEmptySubsequences: false) {
            let id = try TenantID(String(part).trimmingCharacters(in: .whitespaces))
            if !ids.contains(id) { ids.append(id) }
        }
    }
    return ids
}
