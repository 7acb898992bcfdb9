extension TenantPool {
    /// Runs `operation` and returns its result, or throws `timeout()` at `deadline` (or
    /// `CancellationError` when the caller is cancelled), whichever comes first.
    ///
    /// The caller never waits past the deadline, even for an operation that ignores cancellation
    /// (a connect to a server that accepted the socket but never answers). A result that arrives
    /// after the race is lost is handed to `onLate`, so a connection nobody will use gets closed.
    /// (``Deadline/run(until:timeout:onLate:sleep:_:)``: no timer outlives the call.)
    static func withDeadline<T: Sendable>(
        _ deadline: ContinuousClock.Instant,
        timeout: @escaping @Sendable () -> any Error,
        _ operation: @escaping @Sendable () async throws -> T,
        onLate: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        try await Deadline.run(until: deadline, timeout: timeout, onLate: onLate, operation)
    }
}
