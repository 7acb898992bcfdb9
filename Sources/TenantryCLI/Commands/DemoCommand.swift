import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// `tenantry demo`: the online move of HandyShop, every phase, under live load, with a report.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Move a generated HandyShop from one shared database to a database per shop, online, and report.",
        discussion: """
            Creates a HandyShop unified database with generated shops (on a private PostgreSQL started for the \
            demo, or on DATABASE_URL's server in a new database), runs application load through the router from \
            start to end, and goes through every phase: provision, migrate-data, dual-write, verify-sync, reads \
            canary → percentage → tenant, cutover, verify (reverse sync), retire-legacy with an archive. Then every \
            write the load was told succeeded is looked up, row by row. Exits non-zero on any lost row or mismatch.
            """)

    @Option(help: "Shops (tenants) to generate (1-200).") var shops = 8
    @Option(help: "Rows per shop, roughly (10-100000).") var rowsPerShop = 300
    @Option(help: "Load: operations per second through the router (1-5000).") var rate = 50
    @Option(help: "Seconds of load between read-switch steps (0.5-60).") var phaseSeconds = 2.0
    @Flag(help: "Keep the demo's server and databases afterwards.") var keep = false
    @Flag(help: "Print the report as one JSON object on the last line.") var json = false

    func validate() throws {
        guard (1...200).contains(shops) else { throw ValidationError("--shops must be from 1 to 200") }
        guard (10...100_000).contains(rowsPerShop) else { throw ValidationError("--rows-per-shop must be from 10 to 100000") }
        guard (1...5_000).contains(rate) else { throw ValidationError("--rate must be from 1 to 5000") }
        guard (0.5...60).contains(phaseSeconds) else { throw ValidationError("--phase-seconds must be from 0.5 to 60") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let options = DemoRun.Options(
                shops: shops, rowsPerShop: rowsPerShop, rate: rate, phaseSeconds: phaseSeconds, keep: keep, json: json)
            let report: DemoRun.Report
            do {
                report = try await DemoRun(options: options, context: context).run()
            } catch is CancellationError {
                // SIGTERM or SIGINT: the phases were cancelled, the load, relay and router stopped.
                Output.note("stopped by a signal before the end" + (keep ? "" : "; the demo's databases were removed"))
                throw ExitCode.failure
            }
            if json {
                try Output.json(report)
            } else {
                Self.printReport(report)
            }
            if !report.verified || report.lostRows > 0 { throw ExitCode.failure }
        }
    }

    static func printReport(_ report: DemoRun.Report) {
        func ms(_ value: Double?) -> String { value.map { String(format: "%.1f ms", $0) } ?? "-" }
        Output.line("")
        Output.line("Tenantry demo: \(report.shops) shops moved online, \(report.rowsMoved) rows")
        Output.line("")
        Output.line("phase".padding(toLength: 29, withPad: " ", startingAt: 0) + "  seconds  what happened")
        for phase in report.phases {
            Output.line(phase.name.padding(toLength: 29, withPad: " ", startingAt: 0)
                + String(format: "%9.2f", phase.seconds) + "  " + phase.detail)
        }
        Output.line("")
        Output.line("verified                     \(report.verified ? "yes: every shop equal, row by row, before and after cutover" : "NO")")
        Output.line("lost rows                    \(report.lostRows)")
        Output.line("load errors                  \(report.loadErrors) of \(report.loadOperations) operations "
            + String(format: "(%.1f ops/s)", report.loadThroughput))
        Output.line("writes during the move       \(report.writesDuringMove)")
        Output.line("cutover write pause          p50 \(ms(report.cutoverPauseMsP50)), max \(ms(report.cutoverPauseMsMax))")
        Output.line("rows retired from unified    \(report.rowsRetired) (archive: \(report.archive ?? "-"))")
        Output.line("")
        Output.line("Performance (the seed's targets table, measured on this run's load):")
        Output.line("                             P50        P95        P99")
        Output.line("  unified DB (before)        \(pad(ms(report.p50MsUnified))) \(pad(ms(report.p95MsUnified))) \(ms(report.p99MsUnified))")
        Output.line("  tenant DBs (after)         \(pad(ms(report.p50MsTenant))) \(pad(ms(report.p95MsTenant))) \(ms(report.p99MsTenant))")
        for line in report.lost { Output.line("LOST: \(line)") }
        for line in report.differences { Output.line("DIFFERENT: \(line)") }
        for line in report.errorSamples { Output.line("load error: \(line)") }
    }

    private static func pad(_ text: String) -> String {
        text.padding(toLength: 10, withPad: " ", startingAt: 0)
    }
}
