import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import Tenantry
import TenantryCore

/// `tenantry capture install|status`.
struct CaptureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture", abstract: "Install change capture in the unified database, or show its state.",
        subcommands: [Install.self, Status.self])

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install (or refresh after a schema change) the capture tables and one trigger per tenant table.")
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let report = try await Services.with(context) { services in
                    let move = try await MoveServices.make(services)
                    let report = try await move.capture().install()
                    try? await services.catalog.audit(
                        actor: context.actor, action: "capture-install", outcome: .ok, detail: ["tables": "\(report.tables.count)"])
                    return report
                }
                if json { try Output.json(report) } else {
                    Output.line("capture installed on \(report.tables.count) tenant tables: \(report.tables.joined(separator: ", "))")
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Per tenant: capturing, queue depth, lag, dead letters.")
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let states = try await Services.with(context) { services in
                    let move = try await MoveServices.make(services)
                    try await move.requireCapture()
                    return try await move.capture().states()
                }
                if json { try Output.json(states) } else { printStates(states) }
            }
        }
    }
}

func printStates(_ states: [Capture.State]) {
    guard !states.isEmpty else {
        Output.line("no tenant is being captured")
        return
    }
    Output.line("tenant      capture  sync     queue   lag(s)  dead")
    for state in states {
        let sync = state.syncPaused ? "paused" : (state.hasSnapshot ? "on" : "-")
        Output.line(
            "\(state.tenant.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0))  "
                + "\((state.capturing ? "on" : "off").padding(toLength: 7, withPad: " ", startingAt: 0))  "
                + "\(sync.padding(toLength: 7, withPad: " ", startingAt: 0))  "
                + "\(String(state.queueDepth).padding(toLength: 6, withPad: " ", startingAt: 0))  "
                + "\(String(format: "%6.1f", state.lagSeconds))  \(state.deadLetters)"
                + (state.pausedReason.map { "  (\($0))" } ?? ""))
    }
}

/// `tenantry migrate-data`: the snapshot copy.
struct MigrateDataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-data",
        abstract: "Copy tenants' rows into their databases online: capture on, one snapshot, COPY, then sync takes over.",
        discussion: """
            Resumable: a tenant already copied is skipped, a copy that was killed starts over cleanly. Writes go on \
            during the copy; they are captured and applied by 'tenantry sync run'.
            """)

    @Flag(help: "Every provisioned tenant.") var all = false
    @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Tenant ids.") var tenants: [String] = []
    @Option(help: "Tenants copied at once.") var concurrency = 2
    @Option(help: "Seconds to wait for transactions older than capture to end.") var captureTimeout = 30
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard all != !tenants.isEmpty else { throw ValidationError("give --tenant ids or --all (not both)") }
        guard (1...32).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 32") }
        guard (1...3600).contains(captureTimeout) else { throw ValidationError("--capture-timeout must be from 1 to 3600 seconds") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let quiet = json
            let dualWriteOff = context.environment["ENABLE_DUAL_WRITE"] != nil && !context.configuration.migration.dualWrite
            let (reports, failures) = try await Services.with(context) { services in
                let move = try await MoveServices.make(services)
                try await move.requireCapture()
                let ids = try await move.selectTenants(all: all, ids: tenants)
                let copier = move.copier(captureTimeout: .seconds(captureTimeout))
                if !quiet { Output.note("copying \(ids.count) tenant(s), \(concurrency) at a time") }
                let progress = ProgressPrinter(quiet: quiet)
                var reports: [Copier.Report] = []
                var failures: [String: String] = [:]
                try await withThrowingTaskGroup(of: (TenantID, Result<Copier.Report, any Error>).self) { group in
                    var next = 0
                    func add() {
                        let id = ids[next]
                        next += 1
                        group.addTask {
                            do {
                                let report = try await copier.copy(id) { progress.update($0) }
                                if dualWriteOff, !report.skipped {
                                    try await move.capture().setSyncPaused(id, true, reason: "dual-write disabled (ENABLE_DUAL_WRITE=false)")
                                }
                                return (id, .success(report))
                            } catch {
                                return (id, .failure(error))
                            }
                        }
                    }
                    for _ in 0..<min(concurrency, ids.count) { add() }
                    while let (id, result) = try await group.next() {
                        switch result {
                        case .success(let report): reports.append(report)
                        case .failure(let error): failures[id.rawValue] = userMessage(for: error)
                        }
                        if !quiet {
                            let done = reports.count + failures.count
                            let line = failures[id.rawValue].map { "FAILED: \($0)" } ?? reports.last.map { report in
                                report.skipped ? "already copied"
                                    : "\(report.rows) rows in \(String(format: "%.2f", report.seconds)) s "
                                        + "(\(Int(Double(report.rows) / max(report.seconds, 0.001))) rows/s)"
                            } ?? ""
                            Output.note("[\(done)/\(ids.count)] tenant \(id): \(line) — \(progress.summary())")
                        }
                        if next < ids.count { add() }
                    }
                }
                return (reports, failures)
            }
            if json {
                struct Report: Encodable { var copied: [Copier.Report]; var failed: [String: String] }
                try Output.json(Report(copied: reports.sorted { $0.tenant < $1.tenant }, failed: failures))
            } else {
                let copied = reports.filter { !$0.skipped }
                Output.line("\(copied.count) copied (\(copied.reduce(0) { $0 + $1.rows }) rows), "
                    + "\(reports.count - copied.count) already copied, \(failures.count) failed")
                for (tenant, error) in failures.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
                if dualWriteOff {
                    Output.line("ENABLE_DUAL_WRITE=false: changes are captured but not applied until 'tenantry dual-write enable'")
                } else if !copied.isEmpty {
                    Output.line("next: 'tenantry sync run' applies the writes captured since the snapshot")
                }
            }
            if !failures.isEmpty { throw ExitCode.failure }
        }
    }
}

/// Prints copy progress at most once a second: rows copied in all and the rate.
final class ProgressPrinter: Sendable {
    private struct State {
        var rows: [TenantID: Int] = [:]
        var lastPrint = ContinuousClock.now
    }
    private let state = NIOLockedValueBox(State())
    private let started = ContinuousClock.now
    private let quiet: Bool

    init(quiet: Bool) { self.quiet = quiet }

    func update(_ progress: Copier.Progress) {
        let line: String? = state.withLockedValue { state in
            state.rows[progress.tenant] = progress.rows
            guard !quiet, ContinuousClock.now - state.lastPrint >= .seconds(1) else { return nil }
            state.lastPrint = .now
            return "tenant \(progress.tenant): table \(progress.tablesDone + 1)/\(progress.tablesTotal) \(progress.table), "
                + "\(progress.rows) rows"
        }
        if let line { Output.note("\(line) — \(summary())") }
    }

    func summary() -> String {
        let rows = state.withLockedValue { $0.rows.values.reduce(0, +) }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return "\(rows) rows, \(Int(Double(rows) / max(seconds, 0.001))) rows/s"
    }
}

/// `tenantry sync run`: the relay.
struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync", abstract: "Apply captured writes to tenant databases (the relay).", subcommands: [Run.self])

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the relay: a long-lived service, or with --until-caught-up drain what was captured so far and exit.")

        @Flag(help: "Apply everything captured so far, then exit (0 when caught up, 1 when a tenant is paused by a dead letter).")
        var untilCaughtUp = false
        @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Only these tenants (default: every syncing tenant).")
        var tenants: [String] = []
        @Option(help: "Seconds between retries of a failing change, then a dead letter.") var retryDelays = "1,2,4"
        @Option(help: "With --until-caught-up: give up after this many seconds.") var timeout = 600
        @Flag(help: "Print one JSON object (with --until-caught-up).") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                var relayConfiguration = Relay.Configuration()
                relayConfiguration.retryDelays = try parseDelays(retryDelays)
                let configuration = relayConfiguration
                let ids = try parseTenantIDs(tenants)
                let untilCaughtUp = untilCaughtUp
                let timeout = timeout
                let report = try await Services.with(context) { services -> Relay.CatchUpReport? in
                    let move = try await MoveServices.make(services)
                    try await move.requireCapture()
                    let relay = move.relay(configuration)
                    guard untilCaughtUp else {
                        Output.note("relay running (Ctrl-C to stop)")
                        try await relay.run()
                        return nil
                    }
                    defer { Task { await relay.close() } }
                    return try await relay.catchUp(ids.isEmpty ? nil : ids, timeout: .seconds(timeout))
                }
                guard let report else { return }
                if json { try Output.json(report) } else {
                    Output.line("caught up: \(report.applied) change(s) applied for \(report.tenants.count) tenant(s)")
                    for (tenant, reason) in report.paused.sorted(by: { $0.key < $1.key }) {
                        Output.line("  tenant \(tenant) is paused: \(reason) (see 'tenantry dlq list')")
                    }
                }
                if report.paused.values.contains(where: { $0.hasPrefix("dead letter") }) { throw ExitCode.failure }
            }
        }
    }
}

/// `tenantry dual-write enable|disable`.
struct DualWriteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dual-write",
        abstract: "Turn the secondary writes (capture and sync) on or off for tenants.",
        discussion: """
            enable: capture on (for tenants not copied yet) and sync resumed. disable: sync paused; capture keeps \
            recording, so the backlog is kept and nothing is lost; enable applies it.
            """,
        subcommands: [Enable.self, Disable.self])

    struct Selection: ParsableArguments {
        @Flag(help: "Every tenant being moved.") var all = false
        @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Tenant ids.") var tenants: [String] = []
        func validate() throws {
            guard all != !tenants.isEmpty else { throw ValidationError("give --tenant ids or --all (not both)") }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Capture on, sync resumed.")
        @OptionGroup var selection: Selection
        func run() async throws { try await DualWriteCommand.set(selection, enabled: true) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sync paused (capture keeps the backlog).")
        @OptionGroup var selection: Selection
        func run() async throws { try await DualWriteCommand.set(selection, enabled: false) }
    }

    static func set(_ selection: Selection, enabled: Bool) async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let count = try await Services.with(context) { services in
                let move = try await MoveServices.make(services)
                try await move.requireCapture()
                let ids = try await move.selectTenants(
                    all: selection.all, ids: selection.tenants,
                    phases: [.provisioned, .copying, .syncing, .readsSwitched])
                let capture = move.capture()
                for id in ids {
                    _ = try await services.catalog.requireTenant(id)
                    if enabled {
                        try await capture.enable(id)
                        try await capture.setSyncPaused(id, false)
                    } else {
                        try await capture.setSyncPaused(id, true, reason: "dual-write disabled")
                    }
                    try? await services.catalog.audit(
                        actor: context.actor, action: enabled ? "dual-write-enable" : "dual-write-disable", tenant: id, outcome: .ok)
                }
                return ids.count
            }
            Output.line("dual-write \(enabled ? "enabled" : "disabled (capture keeps recording)") for \(count) tenant(s)")
        }
    }
}

/// `tenantry dlq list|replay`.
struct DLQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "The dead letter queue: changes the relay gave up on.", subcommands: [List.self, Replay.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters with their errors.")
        @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Only these tenants.") var tenants: [String] = []
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let ids = try parseTenantIDs(tenants)
                let letters = try await Services.with(context) { services in
                    let move = try await MoveServices.make(services)
                    try await move.requireCapture()
                    return try await move.deadLetters().list(tenants: ids.isEmpty ? nil : ids)
                }
                if json { try Output.json(letters); return }
                if letters.isEmpty { Output.line("no dead letters"); return }
                for letter in letters {
                    Output.line("#\(letter.id) tenant \(letter.tenant) \(letter.operation) \(letter.table) \(letter.key.prefix(80)) "
                        + "after \(letter.attempts) attempts: \(letter.error)")
                }
                Output.line("fix the cause (see docs/moving.md), then 'tenantry dlq replay --tenant ID'")
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead letters back at the head of their tenants' streams and resume them.")
        @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Only these tenants (default: all).") var tenants: [String] = []

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let ids = try parseTenantIDs(tenants)
                let count = try await Services.with(context) { services in
                    let move = try await MoveServices.make(services)
                    try await move.requireCapture()
                    let count = try await move.deadLetters().replay(tenants: ids.isEmpty ? nil : ids)
                    try? await services.catalog.audit(
                        actor: context.actor, action: "dlq-replay", tenant: ids.count == 1 ? ids[0] : nil, outcome: .ok,
                        detail: ["letters": "\(count)"])
                    return count
                }
                Output.line("\(count) dead letter(s) back in their streams; the relay applies them next ('tenantry sync run')")
            }
        }
    }
}

/// `tenantry verify-sync`.
struct VerifySyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-sync",
        abstract: "Compare tenants' rows in the unified and tenant databases: counts, chunk checksums, differing rows.",
        discussion: "Exit 0 only when every table of every tenant is equal. Differences are re-checked after the relay drains.")

    @Flag(help: "Every tenant that has been copied.") var all = false
    @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Tenant ids.") var tenants: [String] = []
    @Option(help: "Rows per checksum chunk.") var chunkSize = 10_000
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard all != !tenants.isEmpty else { throw ValidationError("give --tenant ids or --all (not both)") }
        guard chunkSize >= 2 else { throw ValidationError("--chunk-size must be at least 2") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let quiet = json
            let reports = try await Services.with(context) { services in
                let move = try await MoveServices.make(services)
                let ids = try await move.selectTenants(
                    all: all, ids: tenants, phases: [.syncing, .readsSwitched, .cutover, .dedicated])
                let relay = move.relay()
                let verifier = Verifier(plan: move.plan, chunkSize: chunkSize, logger: move.logger)
                var reports: [Verifier.Report] = []
                for (index, id) in ids.enumerated() {
                    let report = try await verifier.verify(
                        id, unifiedURL: move.unifiedURL, tenantURL: try await move.tenantURL(id),
                        settle: { _ = try await relay.catchUp([id], timeout: .seconds(60)) })
                    reports.append(report)
                    if !quiet {
                        let rows = report.tables.reduce(0) { $0 + $1.unifiedRows }
                        Output.note("[\(index + 1)/\(ids.count)] tenant \(id): \(report.equal ? "equal" : "DIFFERENT") "
                            + "(\(report.tables.count) tables, \(rows) rows, \(String(format: "%.2f", report.seconds)) s)")
                    }
                }
                await relay.close()
                return reports
            }
            if json {
                struct Report: Encodable { var equal: Bool; var tenants: [Verifier.Report] }
                try Output.json(Report(equal: reports.allSatisfy(\.equal), tenants: reports))
            } else {
                for report in reports where !report.equal {
                    Output.line("tenant \(report.tenant): differs")
                    for table in report.tables where table.differenceCount > 0 {
                        Output.line("  \(table.table): unified \(table.unifiedRows) rows, tenant \(table.tenantRows) rows, "
                            + "\(table.differenceCount) row(s) differ")
                        for difference in table.differences.prefix(10) { Output.line("    \(difference)") }
                    }
                }
                let equal = reports.filter(\.equal).count
                Output.line("\(equal) of \(reports.count) tenant(s) equal")
            }
            if !reports.allSatisfy(\.equal) { throw ExitCode.failure }
        }
    }
}
