import ArgumentParser
import Tenantry
import TenantryCore

/// `tenantry status`: the catalog at a glance.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show tenants by status, placement and move phase, servers and the read policy.")

    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let (summary, states) = try await Services.with(context) { services in
                let summary = try await services.catalog.summary()
                let unifiedURL = try services.servers.adminURL(server: nil, database: services.databaseURL.database)
                let capture = Capture(unifiedURL: unifiedURL, discriminator: context.configuration.naming.discriminator, logger: context.logger)
                let states = try await capture.isInstalled() ? try await capture.states() : nil
                return (summary, states)
            }
            if json {
                try Output.json(Status(summary: summary, capture: states))
                return
            }
            func counts(_ values: [String: Int]) -> String {
                values.isEmpty ? "none" : values.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            }
            Output.line("catalog version: \(summary.catalogVersion)")
            Output.line("tenants: \(summary.tenants)")
            Output.line("  by status: \(counts(summary.byStatus))")
            Output.line("  by placement: \(counts(summary.byPlacement))")
            Output.line("  by phase: \(counts(summary.byPhase))")
            Output.line("servers: \(summary.servers.isEmpty ? "none registered" : summary.servers.joined(separator: ", "))")
            let policy = summary.readPolicy
            Output.line("reads: \(policy.strategy) (fallback \(policy.enableFallback ? "on" : "off"), consistency checks \(policy.verifyConsistency ? "on" : "off"))")
            if let states {
                Output.line("capture: installed; \(states.count) tenant(s) captured")
                if !states.isEmpty { printStates(states) }
            } else {
                Output.line("capture: not installed ('tenantry capture install')")
            }
        }
    }
}

/// `status --json`: the catalog summary's fields, plus `capture` (per-tenant capture state, or
/// null when capture is not installed).
private struct Status: Encodable {
    var summary: CatalogSummary
    var capture: [Capture.State]?

    enum Keys: String, CodingKey { case capture }

    func encode(to encoder: any Encoder) throws {
        try summary.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(capture, forKey: .capture)
    }
}
