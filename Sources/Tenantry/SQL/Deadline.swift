import NIOConcurrencyHelpers
import TenantryCore

/// The one deadline primitive: a task group races the body against a sleep; whichever finishes
/// first wins and the other is cancelled before the call returns.
///
/// A PostgresNIO query sent on a connection the server has just closed can wait forever, ignoring
/// cancellation (the write fails without completing the query). So the group's body child awaits
/// the operation through a bridge it can abandon: when the sleep wins (or the caller is
/// cancelled), the operation is cancelled and the child ends at once, and a result arriving later
/// goes to `onLate`, awaited there (a connection nobody will use gets closed). The sleep is always a child of the
/// group: no timer outlives the call.
///
/// The operation itself is the one unstructured task, on purpose: a task group cannot return
/// before every child has ended, so an operation that ignores cancellation as a child would hold
/// the caller past its deadline, which is the very hang this type exists to bound. It is cancelled
/// as soon as the race is decided, and holds nothing but its own result.
enum Deadline {
    /// Runs `operation` and returns its result, throws `timeout()` at `deadline`, or
    /// `CancellationError` when the caller is cancelled, whichever comes first. `sleep` is the
    /// timer child (tests pass one that observes its cancellation).
    static func run<T: Sendable>(
        until deadline: ContinuousClock.Instant,
        timeout: @escaping @Sendable () -> any Error,
        onLate: @escaping @Sendable (T) async -> Void = { _ in },
        sleep: @escaping @Sendable (ContinuousClock.Instant) async throws -> Void = { try await Task.sleep(until: $0) },
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let race = DeadlineRace<T>()
        // Unstructured on purpose (see the type's comment): the caller must not wait for it.
        let work = Task {
            do {
                let value = try await operation()
                if !race.finish(.success(value)) { await onLate(value) }
            } catch {
                race.finish(.failure(error))
            }
        }
        return try await withThrowingTaskGroup(of: Child<T>.self) { group in
            group.addTask {
                do {
                    return .body(.success(try await withTaskCancellationHandler {
                        try await withCheckedThrowingContinuation { continuation in race.start(continuation) }
                    } onCancel: {
                        work.cancel()
                        race.finish(.failure(CancellationError()))
                    }))
                } catch {
                    return .body(.failure(error))
                }
            }
            group.addTask {
                // Ends at the deadline, or at once when the caller is cancelled: either way the
                // race is decided below.
                try? await sleep(deadline)
                return .timer
            }
            defer { group.cancelAll() }
            while let child = try await group.next() {
                switch child {
                case .body(let result):
                    return try result.get()
                case .timer:
                    // The deadline passed (or the caller was cancelled). Decide the race: when the
                    // timer wins, the body child ends with CancellationError and a result arriving
                    // later goes to `onLate`. When the operation's result won a moment earlier,
                    // the body child is delivering it: take it, never drop it (a connection
                    // dropped here would stay open, unseen by any pool's count).
                    guard race.finish(.failure(CancellationError())) else { continue }
                    work.cancel()
                    if Task.isCancelled { throw CancellationError() }
                    throw timeout()
                }
            }
            throw CancellationError()
        }
    }

    /// What a child of the race returned.
    private enum Child<Value: Sendable>: Sendable {
        case body(Result<Value, any Error>)
        case timer
    }
}

/// Runs `body` and returns its result, or throws ``TenantryError/Code/timeout`` after `limit`
/// (``Deadline/run(until:timeout:onLate:sleep:_:)``; the relay bounds each batch with it).
func withDeadline<T: Sendable>(
    _ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await Deadline.run(
        until: .now + limit,
        timeout: { TenantryError(code: .timeout, message: "\(what) took longer than \(limit)") },
        body)
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
