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
                    let move = try await services.move()
                    let report = try await move.installCapture()
                    try? await services.catalog.audit(
                        actor: context.actor, action: "capture-install", outcome: .ok,
                        detail: ["tables": "\(report.tables.count)", "tenant_databases": "\(report.tenantDatabases.count)"])
                    return report
                }
                if json { try Output.json(report) } else {
                    Output.line("capture installed on \(report.tables.count) tenant tables: \(report.tables.joined(separator: ", "))")
                    if !report.tenantDatabases.isEmpty {
                        Output.line("reverse capture refreshed in \(report.tenantDatabases.count) dedicated tenant databases")
                    }
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
                    let move = try await services.move()
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
    Output.line("tenant      capture  sync     queue   lag(s)  dead  id headroom")
    for state in states {
        let sync = state.syncPaused ? "paused" : (state.moved ? "reverse" : (state.hasSnapshot ? "on" : "-"))
        Output.line(
            "\(state.tenant.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0))  "
                + "\((state.capturing ? "on" : "off").padding(toLength: 7, withPad: " ", startingAt: 0))  "
                + "\(sync.padding(toLength: 7, withPad: " ", startingAt: 0))  "
                + "\(String(state.queueDepth).padding(toLength: 6, withPad: " ", startingAt: 0))  "
                + "\(String(format: "%6.1f", state.lagSeconds))  "
                + "\(String(state.deadLetters).padding(toLength: 4, withPad: " ", startingAt: 0))  "
                + (state.idHeadroom.map(String.init) ?? "-")
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
            let dualWriteOff = context.configuration.migration.pauseSyncAfterCopy
            let selection = try TenantSelection.parse(all: all, ids: tenants)
            let (quiet, concurrency, captureTimeout) = (json, concurrency, captureTimeout)
            let report = try await Services.with(context) { services in
                let rows = ProgressPrinter(quiet: quiet)
                return try await services.move().migrateData(
                    selection, concurrency: concurrency, captureTimeout: .seconds(captureTimeout), pauseSync: dualWriteOff,
                    rows: rows.update, progress: Output.progress(quiet: quiet) { _ in rows.summary() })
            }
            if json {
                try Output.json(report)
            } else {
                let copied = report.copied.filter { !$0.skipped }
                Output.line("\(copied.count) copied (\(copied.reduce(0) { $0 + $1.rows }) rows), "
                    + "\(report.copied.count - copied.count) already copied, \(report.failed.count) failed")
                for (tenant, error) in report.failed.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
                if dualWriteOff {
                    Output.line("ENABLE_DUAL_WRITE=false: changes are captured but not applied until 'tenantry dual-write enable'")
                } else if !copied.isEmpty {
                    Output.line("next: 'tenantry sync run' applies the writes captured since the snapshot")
                }
            }
            if !report.failed.isEmpty { throw ExitCode.failure }
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
        let seconds = elapsed.totalSeconds
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
                let logger = context.logger
                let report = try await Services.with(context) { services -> Relay.CatchUpReport? in
                    let move = try await services.move()
                    try await move.requireCapture()
                    guard untilCaughtUp else {
                        // A service in a ServiceGroup: SIGTERM or SIGINT ends the current batch, then the relay stops.
                        Output.note("relay running (Ctrl-C to stop)")
                        try await runServiceGroup([move.relay(configuration)], logger: logger)
                        return nil
                    }
                    // SIGTERM or SIGINT cancels the catch-up; the relay is closed either way.
                    return try await withServiceGroup([], logger: logger) {
                        try await move.catchUp(ids.isEmpty ? .all : .tenants(ids), configuration: configuration, timeout: .seconds(timeout))
                    }
                }
                guard let report else { return }
                if json { try Output.json(report) } else {
                    Output.line("caught up: \(report.applied) change(s) applied for \(report.tenants.count) tenant(s)")
                    for (tenant, reason) in report.paused.sorted(by: { $0.key < $1.key }) {
                        Output.line("  tenant \(tenant) is paused: \(reason) (see 'tenantry dlq list')")
                    }
                }
                if !report.deadLettered.isEmpty { throw ExitCode.failure }
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
            let tenants = try TenantSelection.parse(all: selection.all, ids: selection.tenants)
            let count = try await Services.with(context) { services in
                try await services.move().setDualWrite(tenants, enabled: enabled).count
            }
            Output.line("dual-write \(enabled ? "enabled" : "disabled (capture keeps recording)") for \(count) tenant(s)")
        }
    }
}

/// `tenantry dlq list|replay|discard`.
struct DLQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "The dead letter queue: changes the relay gave up on (both sync directions).",
        subcommands: [List.self, Replay.self, Discard.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters with their errors.")
        @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Only these tenants.") var tenants: [String] = []
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let ids = try parseTenantIDs(tenants)
                let letters = try await Services.with(context) { services in
                    let move = try await services.move()
                    try await move.requireCapture()
                    return try await move.deadLetters().list(tenants: ids.isEmpty ? nil : ids)
                }
                if json { try Output.json(letters); return }
                if letters.isEmpty { Output.line("no dead letters"); return }
                for letter in letters {
                    Output.line("#\(letter.id) tenant \(letter.tenant) \(letter.direction) \(letter.operation) \(letter.table) "
                        + "\(letter.key.prefix(80)) after \(letter.attempts) attempts: \(letter.error)")
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
                    let move = try await services.move()
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

    struct Discard: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop a tenant's dead letters without applying them, and resume its streams.",
            discussion: """
                For a change that must never apply, such as one that would overwrite another tenant's row in the \
                unified database. Fix the row where it lives first (give it an id of its own), so that fix flows \
                as a change of its own; then discard the letter. Audited.
                """)
        @Option(help: "The tenant.") var tenant: String
        @Option(name: .customLong("id"), parsing: .upToNextOption, help: "Only these letters (default: all of the tenant's).")
        var ids: [Int64] = []

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let id = try TenantID(tenant)
                let count = try await Services.with(context) { services in
                    let move = try await services.move()
                    try await move.requireCapture()
                    let count = try await move.deadLetters().discard(tenant: id, ids: ids.isEmpty ? nil : ids)
                    try? await services.catalog.audit(
                        actor: context.actor, action: "dlq-discard", tenant: id, outcome: .ok,
                        detail: ["letters": "\(count)", "ids": ids.map(String.init).joined(separator: ",")])
                    return count
                }
                Output.line("\(count) dead letter(s) of tenant \(id) discarded; its streams are resumed")
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
            let selection = try TenantSelection.parse(all: all, ids: tenants)
            let (quiet, chunkSize) = (json, chunkSize)
            let report = try await Services.with(context) { services in
                try await services.move().verify(selection, chunkSize: chunkSize, progress: Output.progress(quiet: quiet))
            }
            let reports = report.tenants
            if json {
                try Output.json(report)
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
            if !report.equal { throw ExitCode.failure }
        }
    }
}
