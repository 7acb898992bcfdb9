import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Runs `body` while `services` (a router, a relay, …) run, all in one `ServiceGroup`, and returns
/// what `body` returns once every service has stopped.
///
/// The body is the group's last service: when it returns (or throws) the group shuts down
/// gracefully, in reverse order, so the services it used stop after it. SIGTERM or SIGINT shuts
/// the group down gracefully as well: `body` is cancelled first, then the services stop, each
/// returning from `run()` cleanly, and the call throws `CancellationError` (whatever error the
/// cancelled body ended with). A service that fails cancels the
/// group and its error is thrown. This is how the CLI runs long-lived work (`tenantry sync run`,
/// `tenantry demo`), so a container's stop signal ends it without losing anything in flight.
///
/// ```swift
/// let report = try await withServiceGroup([router, relay], logger: logger) {
///     try await move.cutover(.all)
/// }
/// ```
public func withServiceGroup<Result: Sendable>(
    _ services: [any Service], handlesSignals: Bool = true, logger: Logger,
    _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
    let bodyService = BodyService(body)
    var entries = services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
    entries.append(.init(
        service: bodyService, successTerminationBehavior: .gracefullyShutdownGroup,
        failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "body"))
    var configuration = ServiceGroupConfiguration(
        services: entries, gracefulShutdownSignals: handlesSignals ? [.sigterm, .sigint] : [], logger: logger)
    configuration.maximumGracefulShutdownDuration = maximumGracefulShutdown
    try await ServiceGroup(configuration: configuration).run()
    return try bodyService.result()
}

/// The body of ``withServiceGroup(_:handlesSignals:logger:_:)`` as a service: it keeps the
/// body's outcome (value or error) for the caller instead of handing an error to the group.
private final class BodyService<Value: Sendable>: Service, Sendable, CustomStringConvertible {
    private let body: @Sendable () async throws -> Value
    private let outcome = NIOLockedValueBox<Swift.Result<Value, any Error>?>(nil)

    init(_ body: @escaping @Sendable () async throws -> Value) { self.body = body }

    var description: String { "body" }

    func run() async {
        let result: Swift.Result<Value, any Error>
        do {
            result = .success(try await cancelWhenGracefulShutdown { [body] in
                do {
                    return try await body()
                } catch where Task.isCancelled {
                    // Stopped by a shutdown: whatever the body failed with (often a wrapped
                    // CancellationError), the cause is the shutdown.
                    throw CancellationError()
                }
            })
        } catch {
            result = .failure(error)
        }
        outcome.withLockedValue { $0 = result }
    }

    /// The body's value, or its error; `CancellationError` when it never ran to the end.
    func result() throws -> Value {
        guard let outcome = outcome.withLockedValue({ $0 }) else { throw CancellationError() }
        return try outcome.get()
    }
}

/// Runs `services` in one `ServiceGroup` until SIGTERM or SIGINT shuts them down gracefully (or
/// one of them fails, which cancels the others and is thrown): `tenantry sync run`.
public func runServiceGroup(_ services: [any Service], logger: Logger) async throws {
    var configuration = ServiceGroupConfiguration(
        services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    configuration.maximumGracefulShutdownDuration = maximumGracefulShutdown
    try await ServiceGroup(configuration: configuration).run()
}

/// How long a graceful shutdown may take before the services are cancelled: a stop stuck behind
/// a lock or a COMMIT deadline ends instead of needing SIGKILL. Cancelling is safe: a relay batch
/// is applied idempotently and a cutover is finished or undone by running it again.
let maximumGracefulShutdown: Duration = .seconds(60)

/// Work that runs until asked to stop, as a service: `run` is started, and on graceful shutdown
/// `stop` is called and `run` awaited. Neither is cancelled by a graceful shutdown, so work that
/// needs an orderly stop (a load generator with operations in flight) gets one.
public struct BackgroundService: Service {
    private let work: @Sendable () async -> Void
    private let stop: @Sendable () async -> Void

    /// `run` until `stop` is called.
    public init(run: @escaping @Sendable () async -> Void, stop: @escaping @Sendable () async -> Void) {
        self.work = run
        self.stop = stop
    }

    /// Runs the work; on graceful shutdown (or cancellation) stops it and waits for it to end.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await work() }
            try? await gracefulShutdown()
            await stop()
        }
    }
}
