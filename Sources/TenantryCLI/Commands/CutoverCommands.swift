import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// `tenantry cutover`.
struct CutoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "Switch synced tenants' writes to their databases: a short pause under the tenant's fence, nothing lost.",
        discussion: """
            Per tenant: drain, pause writes (fence), drain the rest, reserve an id block, start reverse sync, mark moved \
            (direct writes to unified are rejected), flip the placement (routers follow), resume. A pause longer than \
            --max-pause aborts cleanly and is retried up to --retries times (under load, a later attempt usually fits). \
            'tenantry rollback' undoes it.
            """)

    @Flag(help: "Every syncing tenant.") var all = false
    @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Tenant ids.") var tenants: [String] = []
    @Option(help: "The longest write pause allowed per tenant (e.g. 500ms, 2s).") var maxPause = "500ms"
    @Option(help: "Attempts per tenant after one aborted cleanly (0-100).") var retries = 0
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard all != !tenants.isEmpty else { throw ValidationError("give --tenant ids or --all (not both)") }
        guard (0...100).contains(retries) else { throw ValidationError("--retries must be from 0 to 100") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let pause = try parsePause(maxPause)
            let selection = try TenantSelection.parse(all: all, ids: tenants)
            let (quiet, retries) = (json, retries)
            let report = try await Services.with(context) { services in
                try await services.move().cutover(selection, maxPause: pause, retries: retries, progress: Output.progress(quiet: quiet))
            }
            if json {
                try Output.json(report)
            } else {
                Output.line("\(report.cutover.count) tenant(s) cut over, \(report.failed.count) failed"
                    + (report.retries > 0 ? " (\(report.retries) aborted attempt(s) retried)" : ""))
                for (tenant, error) in report.failed.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
                if !report.cutover.isEmpty { Output.line("reverse sync keeps unified current while 'tenantry sync run' runs") }
            }
            if !report.failed.isEmpty { throw ExitCode.failure }
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
                try await services.move().rollback(ids, maxPause: pause)
            }
            if json { try Output.json(reports) } else {
                for report in reports { Output.line("tenant \(report.tenant): shared again (unified serves its reads and writes)") }
            }
        }
    }
}
