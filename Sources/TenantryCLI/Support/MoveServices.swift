import Foundation
import Logging
import Tenantry
import TenantryCore

/// What the move commands build on ``Services``: the library's ``MoveOperations`` (unified
/// database as an admin login, move plan, capture, copier, relay).
struct MoveServices: Sendable {
    let services: Services
    let move: MoveOperations

    var unifiedURL: PostgresURL { move.unifiedURL }
    var plan: MovePlan { move.plan }
    var context: CommandContext { services.context }
    var catalog: Catalog { services.catalog }
    var logger: Logger { services.context.logger }

    /// Reads the move plan from the unified database.
    static func make(_ services: Services) async throws -> MoveServices {
        MoveServices(services: services, move: try await services.operations.move())
    }

    func capture(timeout: Duration = .seconds(30)) -> Capture { move.capture(timeout: timeout) }

    /// Fails with one clear line when capture is not installed.
    func requireCapture() async throws { try await move.requireCapture() }

    func copier(captureTimeout: Duration) -> Copier { move.copier(captureTimeout: captureTimeout) }

    func relay(_ configuration: Relay.Configuration = Relay.Configuration()) -> Relay { move.relay(configuration) }

    func deadLetters() -> DeadLetters { move.deadLetters() }

    /// The tenant database URL (admin login) of a provisioned tenant.
    func tenantURL(_ tenant: TenantID) async throws -> PostgresURL { try await move.tenantURL(tenant) }

    /// `--all` (every provisioned tenant, or every tenant in `phases`) or the ids given.
    func selectTenants(all: Bool, ids: [String], phases: [MovePhase]? = nil) async throws -> [TenantID] {
        try await move.select(try TenantSelection.parse(all: all, ids: ids), phases: phases)
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
