import Foundation
import TenantryCore

extension Operations {
    /// Moves one planned tenant and returns its switch's write pause in milliseconds.
    typealias ServerMover = @Sendable (RebalancePlanner.Move) async throws -> Double?

    /// The one place rebalance and drain reach the move engine: `body` gets a mover that runs a
    /// whole server move per tenant (``ServerMoves/run(_:to:reason:maxPause:switchAttempts:archiveDirectory:progress:)``:
    /// start, catch up, verify, switch, complete), its steps reported as notes through `progress`.
    func withServerMover<Result: Sendable>(
        maxPause: Duration, archiveDirectory: String?, progress: ProgressHandler?, total: Int,
        _ body: (@escaping ServerMover) async throws -> Result
    ) async throws -> Result {
        try await move().withServerMoves { moves in
            try await body { planned in
                let report = try await moves.run(
                    planned.tenant, to: planned.to, reason: planned.reason, maxPause: maxPause, archiveDirectory: archiveDirectory
                ) { step in
                    progress?(OperationProgress(done: 0, total: total, message: "tenant \(planned.tenant) (\(planned.from) → \(planned.to)): \(step)"))
                }
                return report.switched.pauseMilliseconds
            }
        }
    }
}
