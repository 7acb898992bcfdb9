import NIOConcurrencyHelpers

extension TenantPool {
    /// Runs `operation` in its own task and returns its result, or throws `timeout()` at
    /// `deadline` (or `CancellationError` when the caller is cancelled), whichever comes first.
    ///
    /// The caller never waits past the deadline, even for an operation that ignores cancellation
    /// (a connect to a server that accepted the socket but never answers). A result that arrives
    /// after the race is lost is handed to `onLate`, so a connection nobody will use gets closed.
    static func withDeadline<T: Sendable>(
        _ deadline: ContinuousClock.Instant,
        timeout: @escaping @Sendable () -> any Error,
        _ operation: @escaping @Sendable () async throws -> T,
        onLate: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        let race = DeadlineRace<T>()
        let work = Task {
            do {
                let value = try await operation()
                if !race.finish(.success(value)) { onLate(value) }
            } catch {
                race.finish(.failure(error))
            }
        }
        let timer = Task {
            try? await Task.sleep(until: deadline)
            race.finish(.failure(timeout()))
        }
        defer {
            timer.cancel()
            work.cancel()
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                race.start(continuation)
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }
}

/// The first of several results wins; later ones are refused.
final class DeadlineRace<T: Sendable>: Sendable {
    private enum State {
        case waiting
        case started(CheckedContinuation<T, any Error>)
        case early(Result<T, any Error>)
        case finished
    }

    private let state = NIOLockedValueBox(State.waiting)

    /// Installs the continuation; resumes it at once when a result came first.
    func start(_ continuation: CheckedContinuation<T, any Error>) {
        let early: Result<T, any Error>? = state.withLockedValue { state in
            switch state {
            case .waiting:
                state = .started(continuation)
                return nil
            case .early(let result):
                state = .finished
                return result
            case .started, .finished:
                preconditionFailure("DeadlineRace started twice")
            }
        }
        if let early { continuation.resume(with: early) }
    }

    /// Offers a result; `false` when another one already won.
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        let (won, continuation): (Bool, CheckedContinuation<T, any Error>?) = state.withLockedValue { state in
            switch state {
            case .waiting:
                state = .early(result)
                return (true, nil)
            case .started(let continuation):
                state = .finished
                return (true, continuation)
            case .early, .finished:
                return (false, nil)
            }
        }
        continuation?.resume(with: result)
        return won
    }
}
