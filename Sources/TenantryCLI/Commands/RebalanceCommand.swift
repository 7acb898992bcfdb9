import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// `tenantry rebalance --plan|--apply`.
struct RebalanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebalance",
        abstract: "Plan, or make, the server moves that keep every server within its budget and the spread even.",
        discussion: """
            Measures every tenant database (pg_database_size, connections and transactions per second from \
            pg_stat_database, sampled twice --sample apart) and every server's capacity (--max-connections and \
            --max-bytes of 'tenantry servers add|set'). The plan moves tenants off servers over their byte budget or \
            connection cap, then evens the servers' fills (bytes ÷ budget when every server has a budget, else the \
            share of the bytes) while they differ by more than --tolerance points. Every move names its reason. Only \
            dedicated tenants move; once servers are registered the default server is left out (see 'servers drain'). \
            --apply runs the plan as server moves (start, catch up, verify, switch, complete). See docs/server-moves.md.
            """)

    @Flag(help: "Print the plan; change nothing.") var plan = false
    @Flag(help: "Make the planned moves.") var apply = false
    @Option(help: "Moves at a time with --apply (1-64).") var concurrency = 1
    @Option(help: "The longest write pause allowed per switch (e.g. 500ms, 2s).") var maxPause = "500ms"
    @Option(help: "Archive each source database here (pg_dump) before it is dropped.") var archiveDir: String?
    @Option(help: "Seconds between the two samples of the transaction counters (0: one sample).") var sample = 1.0
    @Option(help: "Stop evening when the fullest and emptiest servers' fills differ by at most this many percentage points.")
    var tolerance = 10.0
    @Option(help: "The most evening moves in one plan.") var maxMoves = 20
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard plan != apply else { throw ValidationError("give --plan or --apply") }
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 64") }
        guard (0...60).contains(sample) else { throw ValidationError("--sample must be from 0 to 60 seconds") }
        guard (0...100).contains(tolerance) else { throw ValidationError("--tolerance must be from 0 to 100") }
        guard (0...1000).contains(maxMoves) else { throw ValidationError("--max-moves must be from 0 to 1000") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let pause = try parsePause(maxPause)
            let options = RebalancePlanner.Options(evenTolerance: tolerance / 100, maxMoves: maxMoves)
            let interval = Duration.milliseconds(Int64(sample * 1000))
            let (apply, json, concurrency, archive) = (apply, json, concurrency, archiveDir)
            try await Services.with(context) { services in
                let report = try await services.operations.rebalancePlan(options: options, sample: interval)
                guard apply else {
                    if json { try Output.json(report) } else { PlanText.lines(report).forEach(Output.line) }
                    return
                }
                if !json { PlanText.lines(report).forEach(Output.line) }
                let applied = try await services.operations.applyRebalance(
                    report, concurrency: concurrency, maxPause: pause, archiveDirectory: archive,
                    progress: Output.progress(quiet: json))
                try PlanText.finish(applied, json: json)
            }
        }
    }
}

extension ServersCommand {
    /// `tenantry servers drain SERVER`.
    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move every tenant off a server, to the servers with room (server moves, --concurrency at a time).",
            discussion: """
                Targets are chosen by the same measures as 'tenantry rebalance', within the other servers' byte budgets \
                and connection caps. When they have no room for every tenant, or a tenant cannot move now, nothing is \
                moved and the error names each one. --plan prints the plan only. Afterwards the server is an ordinary \
                one again: 'tenantry servers set NAME --max-bytes 1B' first keeps placement and rebalance off it.
                """)

        @Argument(help: "The server to empty (a registered name, or default).") var server: String
        @Flag(help: "Print the plan; change nothing.") var plan = false
        @Option(help: "Moves at a time (1-64).") var concurrency = 1
        @Option(help: "The longest write pause allowed per switch (e.g. 500ms, 2s).") var maxPause = "500ms"
        @Option(help: "Archive each source database here (pg_dump) before it is dropped.") var archiveDir: String?
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 64") }
        }

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let pause = try parsePause(maxPause)
                let (server, planOnly, json, concurrency, archive) = (server, plan, json, concurrency, archiveDir)
                try await Services.with(context) { services in
                    let report = try await services.operations.drainPlan(server, sample: .zero)
                    if planOnly {
                        if json { try Output.json(report) } else { PlanText.lines(report).forEach(Output.line) }
                        return
                    }
                    if !json { PlanText.lines(report).forEach(Output.line) }
                    let applied = try await services.operations.applyRebalance(
                        report, concurrency: concurrency, maxPause: pause, archiveDirectory: archive,
                        progress: Output.progress(quiet: json))
                    try PlanText.finish(applied, json: json)
                }
            }
        }
    }
}

/// A plan and its outcome as text for people.
enum PlanText {
    /// Every move and why, then each server before and after.
    static func lines(_ report: RebalancePlanReport) -> [String] {
        let plan = report.plan
        var lines: [String] = []
        let what = report.draining.map { "drain \($0)" } ?? "rebalance"
        lines.append(plan.moves.isEmpty ? "\(what): no move needed" : "\(what): \(plan.moves.count) move(s)")
        for move in plan.moves {
            lines.append("  tenant \(move.tenant): \(move.from) → \(move.to) (\(ByteSize.format(move.bytes))): \(move.reason)")
        }
        for problem in plan.unresolved { lines.append("  unresolved: \(problem)") }
        let header = ["server", "tenants", "bytes", "budget", "connections", "queries/s", plan.fillIsOfBudget ? "of budget" : "of bytes"]
        var rows = [header]
        let percent = { (fill: Double?) in fill.map { "\(Int(($0 * 100).rounded()))%" } ?? "-" }
        for figures in plan.servers {
            let (before, after) = (figures.before, figures.after)
            let changed = { (a: String, b: String) in a == b ? a : "\(a) → \(b)" }
            rows.append([
                figures.server.name + (figures.server.draining ? " (draining)" : ""),
                changed("\(before.tenants)", "\(after.tenants)"),
                changed(ByteSize.format(before.bytes), ByteSize.format(after.bytes)),
                figures.server.maxBytes.map(ByteSize.format) ?? "none",
                changed("\(before.connections)", "\(after.connections)") + " of \(figures.server.maxConnections)",
                changed(String(format: "%.1f", before.queriesPerSecond), String(format: "%.1f", after.queriesPerSecond)),
                changed(percent(before.fill), percent(after.fill)),
            ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            var line = "  " + row.indices.map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            while line.hasSuffix(" ") { line.removeLast() }
            lines.append(line)
        }
        return lines
    }

    /// Prints the summary of an applied plan; a failure exits non-zero.
    static func finish(_ report: RebalanceApplyReport, json: Bool) throws {
        if json {
            try Output.json(report)
        } else {
            var summary = "\(report.moved.count) moved, \(report.failed.count) failed in \(String(format: "%.1f", report.seconds)) s"
            if let longest = report.longestPauseMilliseconds { summary += String(format: ", longest write pause %.1f ms", longest) }
            Output.line(summary)
            for (tenant, error) in report.failed.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
        }
        if !report.failed.isEmpty { throw ExitCode.failure }
    }
}
