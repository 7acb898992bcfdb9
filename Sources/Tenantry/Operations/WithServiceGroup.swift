import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Runs `body` while `services` (a router, a relay, …) run, all in one `ServiceGroup`, and returns
/// what `body` returns once every service has stopped.
///
/// The body is the group's last service: when it returns (or throws) the group shuts down
/// gracefully, in reverse order, so the services it used stop after it. SIGTERM or SIGINT shuts
/// the group down gracefully as well: `body` is cancelled first (it sees `CancellationError`),
/// then the services stop, each returning from `run()` cleanly. A service that fails cancels the
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
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(
        services: entries, gracefulShutdownSignals: handlesSignals ? [.sigterm, .sigint] : [], logger: logger))
    try await group.run()
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
            result = .success(try await cancelWhenGracefulShutdown(body))
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
    try await ServiceGroup(configuration: ServiceGroupConfiguration(
        services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
}
