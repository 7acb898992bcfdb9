import Foundation
import Logging
import Tenantry
import TenantryCore

/// What the move commands build on ``Services``: the unified database as an admin login, the
/// move plan, capture, copier and relay.
struct MoveServices: Sendable {
    let services: Services
    let unifiedURL: PostgresURL
    let plan: MovePlan

    var context: CommandContext { services.context }
    var catalog: Catalog { services.catalog }
    var logger: Logger { services.context.logger }

    /// Reads the move plan from the unified database.
    static func make(_ services: Services) async throws -> MoveServices {
        let databaseURL = services.databaseURL
        let unifiedURL = try services.servers.adminURL(server: nil, database: databaseURL.database)
        let naming = services.context.configuration.naming
        let plan = try await Database.withConnection(unifiedURL, logger: services.context.logger) { connection in
            try await MovePlan.load(connection, discriminator: naming.discriminator, logger: services.context.logger)
        }
        return MoveServices(services: services, unifiedURL: unifiedURL, plan: plan)
    }

    func capture(timeout: Duration = .seconds(30)) -> Capture {
        Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, enableTimeout: timeout, logger: logger)
    }

    /// Fails with one clear line when capture is not installed.
    func requireCapture() async throws {
        guard try await capture().isInstalled() else {
            throw TenantryError(
                code: .conflict, message: "capture is not installed in the unified database: run 'tenantry capture install' first")
        }
    }

    func copier(captureTimeout: Duration) -> Copier {
        Copier(
            catalog: catalog, servers: services.servers, unifiedURL: unifiedURL, plan: plan,
            capture: capture(timeout: captureTimeout), actor: context.actor, logger: logger)
    }

    func relay(_ configuration: Relay.Configuration = Relay.Configuration()) -> Relay {
        Relay(configuration: configuration, catalog: catalog, servers: services.servers, unifiedURL: unifiedURL, plan: plan, logger: logger)
    }

    func deadLetters() -> DeadLetters { DeadLetters(unifiedURL: unifiedURL, logger: logger) }

    /// The tenant database URL (admin login) of a provisioned tenant.
    func tenantURL(_ tenant: TenantID) async throws -> PostgresURL {
        try services.servers.adminURL(of: try await catalog.requireTenant(tenant))
    }

    /// `--all` (every provisioned tenant) or the ids given.
    func selectTenants(all: Bool, ids: [String], phases: [MovePhase]? = nil) async throws -> [TenantID] {
        guard all else { return try parseTenantIDs(ids) }
        if let phases { return try await catalog.tenants(inPhases: phases) }
        return try await catalog.tenants().filter { $0.status == .active && $0.databaseName != nil }.map(\.id)
    }
}

/// Parses `1,2,4` (seconds) into durations.
func parseDelays(_ text: String) throws -> [Duration] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap(Double.init)
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 && $0 <= 3600 }) else {
        throw TenantryError(code: .invalidArgument, message: "--retry-delays must be seconds separated by commas, like 1,2,4")
    }
    return values.map { .milliseconds(Int64($0 * 1000)) }
}
