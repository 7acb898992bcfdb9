import Foundation
import Tenantry
import TenantryCore

/// The command context plus the library's ``Operations`` over a current catalog (what the CLI
/// commands and the admin API share).
struct Services: Sendable {
    let context: CommandContext
    let operations: Operations

    var catalog: Catalog { operations.catalog }
    var servers: ServerDirectory { operations.servers }
    var databaseURL: PostgresURL { operations.databaseURL }

    /// Runs `body` with the services over a current catalog.
    static func with<Result: Sendable>(
        _ context: CommandContext, _ body: @Sendable (Services) async throws -> Result
    ) async throws -> Result {
        let databaseURL = try await context.databaseURL()
        return try await context.withCatalog { catalog in
            let operations = try await Operations.make(
                configuration: context.configuration, catalog: catalog, databaseURL: databaseURL, actor: context.actor,
                logger: context.logger)
            return try await body(Services(context: context, operations: operations))
        }
    }

    /// The move components and phases over the unified database (reads the move plan from it).
    func move() async throws -> MoveOperations {
        try await operations.move()
    }

    /// A provisioner (needs `TENANT_ENCRYPTION_KEY` and the fleet migration files).
    func provisioner(migrationsDirectory: String?, needsMigrations: Bool = true) throws -> TenantProvisioner {
        try operations.provisioner(migrationsDirectory: migrationsDirectory, needsMigrations: needsMigrations)
    }
}

/// Parses tenant ids given as arguments (each may be a comma-separated list).
func parseTenantIDs(_ values: [String]) throws -> [TenantID] {
    try TenantID.parseList(values)
}
