import ArgumentParser
import Foundation
import Logging
import OTel
import ServiceLifecycle
import TenantryCore
import Tracing

extension TenantryCommand {
    /// The entry point: ArgumentParser's (parse, run, one line for an error), with every command
    /// run inside ``TracingBootstrap/run(_:)`` so its spans are exported when tracing is on.
    static func main() async {
        do {
            try await TracingBootstrap.run(try await asyncParseAsRoot())
        } catch {
            exit(withError: error)
        }
    }
}

/// The process's one tracing bootstrap (the executable's job, never the library's): when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, swift-otel's tracer over OTLP/HTTP; otherwise nothing,
/// and the library's spans cost a check each (docs/tracing.md).
enum TracingBootstrap {
    /// Runs `command`. With tracing on, bootstraps the tracer first, runs its exporter alongside,
    /// and after the command (whatever its outcome) shuts the exporter down, which sends the spans
    /// still queued: a one-shot command loses none (unless the collector does not answer within
    /// ``flushLimit``). A bad `OTEL_*` value is one error line.
    static func run(_ command: sending any ParsableCommand) async throws {
        let settings: TenantryConfiguration.Tracing
        do {
            settings = try TenantryConfiguration.Tracing(environment: ProcessInfo.processInfo.environment)
        } catch {
            Output.note("error: \(error.message)")
            throw ExitCode.failure
        }
        guard settings.enabled else { return try await execute(command) }
        let exporter: ServiceGroup
        do {
            exporter = try bootstrap(settings)
        } catch {
            Output.note("error: tracing: \(error)")
            throw ExitCode.failure
        }
        let (stopping, stop) = AsyncStream.makeStream(of: Void.self)
        async let exporting: Void = runExporter(exporter, stopping: stopping)
        let outcome: Result<Void, any Error>
        do { outcome = .success(try await execute(command)) } catch { outcome = .failure(error) }
        // Graceful shutdown of the exporter's group flushes the batch processor, then exports.
        stop.finish()
        await exporter.triggerGracefulShutdown()
        await exporting
        try outcome.get()
    }

    /// How long the exit waits for the last spans to be sent: a reachable collector takes
    /// milliseconds; an unreachable one would hold the command up for the exporter's timeout and
    /// retries, so past this the spans are dropped (swift-otel logs a warning).
    static let flushLimit: Duration = .seconds(3)

    /// Runs the exporter until it has shut down, or until ``flushLimit`` after `stopping` ends
    /// (then cancels it).
    private static func runExporter(_ exporter: ServiceGroup, stopping: AsyncStream<Void>) async {
        let cutOff = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = try? await exporter.run()
                return false
            }
            group.addTask {
                for await _ in stopping {}
                return (try? await Task.sleep(for: flushLimit)) != nil
            }
            defer { group.cancelAll() }
            return await group.next() ?? false
        }
        if cutOff {
            Output.note("tracing: the collector did not take the last spans within \(flushLimit); they were dropped")
        }
    }

    /// Runs the parsed command, as ArgumentParser's own `main()` does.
    private static func execute(_ command: sending any ParsableCommand) async throws {
        var command = command
        if var asyncCommand = command as? any AsyncParsableCommand {
            try await asyncCommand.run()
        } else {
            try command.run()
        }
    }

    /// Bootstraps `InstrumentationSystem` with swift-otel's tracer (traces only: swift-metrics and
    /// swift-log keep their own bootstraps) and returns the group that runs its exporter.
    private static func bootstrap(_ settings: TenantryConfiguration.Tracing) throws -> ServiceGroup {
        var configuration = OTel.Configuration.default
        configuration.serviceName = settings.serviceName
        configuration.diagnosticLogLevel = .warning
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.otlpExporter.protocol = settings.exportProtocol == "http/json" ? .httpJSON : .httpProtobuf
        // Environment variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, …) override these.
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(backend.factory)
        var logger = Logger(label: "tenantry.tracing", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .warning
        return ServiceGroup(configuration: .init(services: [backend.service], logger: logger))
    }
}
