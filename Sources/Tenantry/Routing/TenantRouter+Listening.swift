import NIOConcurrencyHelpers

/// A boolean a task can wait for: set by the one who knows (the route listener), awaited by
/// whoever depends on it (tests, the demo), instead of sleeping "long enough".
final class ReadySignal: Sendable {
    private struct State {
        var isSet = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }
    private let state = NIOLockedValueBox(State())

    /// Whether it is set now.
    var isSet: Bool { state.withLockedValue { $0.isSet } }

    /// Sets or clears it; setting wakes every waiter.
    func set(_ value: Bool) {
        let woken: [CheckedContinuation<Void, Never>] = state.withLockedValue { state in
            state.isSet = value
            guard value else { return [] }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Returns once it is set, or when the calling task is cancelled.
    func wait() async {
        let id = state.withLockedValue { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLockedValue { state -> Bool in
                    if state.isSet || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLockedValue { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

extension TenantRouter {
    /// Returns once the router listens for route changes (`LISTEN tenantry_routes` is in place), so
    /// that a change made afterwards is followed; returns at once when it already does. Use it
    /// where "the router is running" must mean "it hears NOTIFY" (tests, a demo step).
    public func waitUntilListening() async { await listening.wait() }

    /// Whether the router listens for route changes now.
    public var isListening: Bool { listening.isSet }
}
