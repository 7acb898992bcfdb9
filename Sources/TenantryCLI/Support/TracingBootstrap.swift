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
    /// still queued: a one-shot command loses none. A bad `OTEL_*` value is one error line.
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
        async let exporting: Void = exporter.run()
        let outcome: Result<Void, any Error>
        do { outcome = .success(try await execute(command)) } catch { outcome = .failure(error) }
        // Graceful shutdown of the exporter's group flushes the batch processor, then exports.
        await exporter.triggerGracefulShutdown()
        _ = try? await exporting
        try outcome.get()
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
