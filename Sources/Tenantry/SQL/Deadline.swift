import NIOConcurrencyHelpers
import TenantryCore

/// Runs `body` and returns its result, or throws ``TenantryError/Code/timeout`` after `limit`.
///
/// A PostgresNIO query sent on a connection the server has just closed can wait forever (the
/// write fails without completing the query). Work that must keep going — the relay — bounds
/// each database round with this and abandons the connection when it expires. The abandoned
/// body keeps its task until it ends (it holds no lock once its connections are closed).
func withDeadline<T: Sendable>(
    _ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let slot = NIOLockedValueBox<CheckedContinuation<T, any Error>?>(nil)
    let work = NIOLockedValueBox<Task<Void, Never>?>(nil)
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            slot.withLockedValue { $0 = continuation }
            let task = Task {
                let outcome: Result<T, any Error>
                do { outcome = .success(try await body()) } catch { outcome = .failure(error) }
                slot.withLockedValue { $0.take() }?.resume(with: outcome)
            }
            work.withLockedValue { $0 = task }
            Task {
                try? await Task.sleep(for: limit)
                if let continuation = slot.withLockedValue({ $0.take() }) {
                    task.cancel()
                    continuation.resume(throwing: TenantryError(code: .timeout, message: "\(what) took longer than \(limit)"))
                }
            }
        }
    } onCancel: {
        work.withLockedValue { $0 }?.cancel()
        // Do not wait for a body stuck in a query: the caller is cancelled, it goes now.
        slot.withLockedValue { $0.take() }?.resume(throwing: CancellationError())
    }
}
