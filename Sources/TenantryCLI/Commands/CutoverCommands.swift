import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// Parses `500ms`, `2s` or a number of milliseconds.
func parsePause(_ text: String) throws -> Duration {
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    let value: Double?
    if trimmed.hasSuffix("ms") {
        value = Double(trimmed.dropLast(2))
    } else if trimmed.hasSuffix("s") {
        value = Double(trimmed.dropLast()).map { $0 * 1000 }
    } else {
        value = Double(trimmed)
    }
    guard let value, value >= 1, value <= 600_000 else {
        throw TenantryError(code: .invalidArgument, message: "--max-pause must be a duration like 500ms or 2s (1 ms to 10 min)")
    }
    return .milliseconds(Int64(value))
}

/// `tenantry cutover`.
struct CutoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "Switch synced tenants' writes to their databases: a short pause under the tenant's fence, nothing lost.",
        discussion: """
            Per tenant: drain, pause writes (fence), drain the rest, reserve an id block, start reverse sync, mark moved \
            (direct writes to unified are rejected), flip the placement (routers follow), resume. A pause longer than \
            --max-pause aborts cleanly and can be retried. 'tenantry rollback' undoes it.
            """)

    @Flag(help: "Every syncing tenant.") var all = false
    @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Tenant ids.") var tenants: [String] = []
    @Option(help: "The longest write pause allowed per tenant (e.g. 500ms, 2s).") var maxPause = "500ms"
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard all != !tenants.isEmpty else { throw ValidationError("give --tenant ids or --all (not both)") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let pause = try parsePause(maxPause)
            let quiet = json
            let (reports, failures) = try await Services.with(context) { services in
                let move = try await MoveServices.make(services)
                try await move.requireCapture()
                let ids = try await move.selectTenants(all: all, ids: tenants, phases: Relay.syncingPhases)
                let relay = move.relay()
                let cutover = Cutover(
                    catalog: services.catalog, servers: services.servers, unifiedURL: move.unifiedURL, plan: move.plan,
                    relay: relay, actor: context.actor, logger: move.logger)
                var reports: [Cutover.Report] = []
                var failures: [String: String] = [:]
                for (index, id) in ids.enumerated() {
                    do {
                        let report = try await cutover.cutover(id, maxPause: pause)
                        reports.append(report)
                        if !quiet {
                            Output.note("[\(index + 1)/\(ids.count)] tenant \(id): dedicated (writes paused "
                                + "\(String(format: "%.1f", report.pauseMilliseconds)) ms, \(report.drained) change(s) drained)")
                        }
                    } catch {
                        failures[id.rawValue] = userMessage(for: error)
                        if !quiet { Output.note("[\(index + 1)/\(ids.count)] tenant \(id): FAILED: \(userMessage(for: error))") }
                    }
                }
                await relay.close()
                return (reports, failures)
            }
            if json {
                struct Report: Encodable { var cutover: [Cutover.Report]; var failed: [String: String] }
                try Output.json(Report(cutover: reports, failed: failures))
            } else {
                Output.line("\(reports.count) tenant(s) cut over, \(failures.count) failed")
                for (tenant, error) in failures.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
                if !reports.isEmpty { Output.line("reverse sync keeps unified current while 'tenantry sync run' runs") }
            }
            if !failures.isEmpty { throw ExitCode.failure }
        }
    }
}

/// `tenantry rollback`.
struct RollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Move tenants back to the unified database from any phase, losing nothing.",
        discussion: """
            Before cutover: capture stops and reads and writes are the unified database's again. After cutover: a \
            cutover in the other direction (reverse sync drains, the tenant database refuses writes, the placement flips).
            """)

    @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Tenant ids.") var tenants: [String] = []
    @Option(help: "The longest write pause allowed per tenant after cutover (e.g. 2s).") var maxPause = "5s"
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard !tenants.isEmpty else { throw ValidationError("give --tenant ids") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let pause = try parsePause(maxPause)
            let ids = try parseTenantIDs(tenants)
            let reports = try await Services.with(context) { services in
                let move = try await MoveServices.make(services)
                try await move.requireCapture()
                let relay = move.relay()
                let cutover = Cutover(
                    catalog: services.catalog, servers: services.servers, unifiedURL: move.unifiedURL, plan: move.plan,
                    relay: relay, actor: context.actor, logger: move.logger)
                var reports: [Cutover.Report] = []
                for id in ids {
                    _ = try await services.catalog.requireTenant(id)
                    reports.append(try await cutover.rollback(id, maxPause: pause))
                }
                await relay.close()
                return reports
            }
            if json { try Output.json(reports) } else {
                for report in reports { Output.line("tenant \(report.tenant): shared again (unified serves its reads and writes)") }
            }
        }
    }
}
