import Foundation
import TenantryCore

extension Operations {
    /// Moves one planned tenant and returns its switch's write pause in milliseconds (nil when
    /// the engine does not report one).
    typealias ServerMover = @Sendable (RebalancePlanner.Move) async throws -> Double?

    /// The one place rebalance and drain reach the move engine (``ServerMoves``): `body` gets a
    /// mover that runs a whole move (start, catch up, verify, switch, complete) per tenant.
    func withServerMover<Result: Sendable>(
        maxPause: Duration, archiveDirectory: String?, _ body: (@escaping ServerMover) async throws -> Result
    ) async throws -> Result {
        // The engine's `run(_:to:reason:maxPause:archiveDirectory:progress:)` is not on this
        // branch yet: refuse before anything is changed.
        throw TenantryError(code: .conflict, message: "server moves are not available in this build yet: run 'tenantry move start' per tenant")
    }
}
