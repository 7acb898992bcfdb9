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
            let report = try await Services.with(context) { try await $0.operations.status() }
            let (summary, states) = (report.summary, report.capture)
            if json {
                try Output.json(report)
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
            Output.line("  tenant databases by server: \(counts(report.byServer))")
            for move in report.serverMoves {
                Output.line("  tenant \(move.tenant) moving \(move.sourceServer) → \(move.targetServer): \(move.phase.rawValue), "
                    + "writes on \(move.liveServer) ('tenantry move status')")
            }
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
