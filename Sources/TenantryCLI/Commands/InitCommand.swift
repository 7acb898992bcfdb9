import ArgumentParser
import Tenantry
import TenantryCore

/// `tenantry init`: create or upgrade the catalog.
struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create or upgrade the Tenantry catalog (schema 'tenantry'); safe to run again and concurrently.")

    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            var policy = ReadPolicy()
            policy.strategy = context.configuration.migration.tenantReads ? context.configuration.migration.strategy : .unified
            let seed = policy
            let url = try await context.catalogURL()
            let report = try await context.withCatalog { catalog in
                let report = try await catalog.migrate(seedPolicy: seed)
                try await catalog.audit(
                    actor: context.actor, action: "init", outcome: .ok,
                    detail: ["applied": report.applied.map(String.init).joined(separator: ","), "version": "\(report.version)"])
                return report
            }
            // Capture goes in with the catalog when the unified database has tenant tables.
            let captured: [String]? = try await Services.with(context) { services in
                do {
                    return try await services.move().capture().install().tables
                } catch let error as TenantryError where error.code == .invalidArgument {
                    Output.note("capture not installed: \(error.message)")
                    return nil
                }
            }
            if let captured, !json {
                Output.line("capture installed on \(captured.count) tenant table(s)")
            }
            if json {
                try Output.json(report)
            } else if report.applied.isEmpty {
                Output.line("catalog is current (version \(report.version)) at \(url)")
            } else {
                Output.line("catalog migrated to version \(report.version) at \(url) (applied \(report.applied.map(String.init).joined(separator: ", ")))")
            }
        }
    }
}
