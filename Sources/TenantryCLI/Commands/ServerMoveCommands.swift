import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import Tenantry
import TenantryCore

/// `tenantry move start|status|verify|switch|reverse|complete|cancel`: a dedicated tenant's
/// database moved to another server online (docs/server-moves.md).
struct ServerMoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "move",
        abstract: "Move dedicated tenants' databases between servers online: start, verify, switch, then complete (or cancel, reverse).",
        discussion: """
            start copies the database to the target server and keeps it current ('tenantry sync run' or 'tenantry serve' \
            runs the relay); switch moves the writes under a short pause; complete drops the source. Exit status: 0 done \
            (verify: equal), 1 failed (verify: different), 2 bad input (unknown tenant or server, a bad option).
            """,
        subcommands: [Start.self, Status.self, Verify.self, Switch.self, Reverse.self, Complete.self, Cancel.self])

    /// The tenant of a one-tenant verb.
    struct One: ParsableArguments {
        @Option(help: "The tenant id.") var tenant: String
        @Flag(help: "Print one JSON object.") var json = false
    }

    /// Runs `body` with the server-move operations over a relay of their own (closed afterwards).
    static func withMoves<Result: Sendable>(
        _ context: CommandContext, _ body: @escaping @Sendable (Services, ServerMoves) async throws -> Result
    ) async throws -> Result {
        try await Services.with(context) { services in
            let move = try await services.move()
            return try await move.withServerMoves { moves in try await body(services, moves) }
        }
    }

    /// `id` parsed and known to the catalog (else a bad-input error).
    static func knownTenant(_ id: String, _ services: Services) async throws -> TenantID {
        let tenant = try TenantID(id)
        guard try await services.catalog.tenant(tenant) != nil else {
            throw TenantryError(code: .tenantNotFound, message: "tenant \(tenant) is not in the catalog", tenant: tenant.rawValue)
        }
        return tenant
    }

    /// `name` is the default server or a registered one (else a bad-input error).
    static func requireServer(_ name: String, _ services: Services) throws {
        guard name == ServerDirectory.defaultServerName || services.servers.servers.contains(where: { $0.name == name }) else {
            throw TenantryError(code: .invalidArgument, message: "server '\(name)' is not registered (tenantry servers list)")
        }
    }

    /// A one-tenant verb: the tenant checked, the report printed (or its JSON).
    static func runOne<Report: Encodable & Sendable>(
        _ arguments: One, _ verb: @escaping @Sendable (ServerMoves, TenantID) async throws -> Report,
        print: (Report) -> Void
    ) async throws {
        let context = try CommandContext.load()
        let id = arguments.tenant
        let report = try await withMoves(context) { services, moves in
            try await verb(moves, try await knownTenant(id, services))
        }
        if arguments.json { try Output.json(report) } else { print(report) }
    }

    // MARK: - start

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Provision the tenant's database on another server, copy it from one snapshot, and keep it current.",
            discussion: """
                Writes go on to the source during the copy and after it; the relay applies them to the target. Several \
                tenants (--tenants, --all-from) move --concurrency at a time; a tenant already moving resumes.
                """)

        @Option(help: "The tenant id.") var tenant: String?
        @Option(help: "Tenant ids, separated by commas.") var tenants: String?
        @Option(help: "Every tenant database on this server.") var allFrom: String?
        @Option(help: "The target server (a registered name, or 'default').") var to: String
        @Option(help: "Tenants moved at once (1-16).") var concurrency = 2
        @Option(help: "Why (kept with the move).") var reason: String?
        @Flag(help: "Print one JSON object.") var json = false

        /// What several starts did.
        struct Report: Encodable, Sendable {
            var targetServer: String
            var started: [ServerMoves.StartReport]
            var failed: [String: String]
        }

        func run() async throws {
            try await runMoveCommand {
                let context = try CommandContext.load()
                let given = [tenant != nil, tenants != nil, allFrom != nil].filter { $0 }.count
                guard given == 1 else {
                    throw TenantryError(code: .invalidArgument, message: "give one of --tenant ID, --tenants 1,2,3 or --all-from SERVER")
                }
                guard (1...16).contains(concurrency) else {
                    throw TenantryError(code: .invalidArgument, message: "--concurrency must be from 1 to 16")
                }
                let listed = try tenant.map { [try TenantID($0)] } ?? tenants.map { try TenantID.parseList([$0]) }
                let (server, source, quiet, concurrency, reason) = (to, allFrom, json, concurrency, reason)
                let report = try await withMoves(context) { services, moves in
                    try requireServer(server, services)
                    var ids = listed ?? []
                    if let source {
                        try requireServer(source, services)
                        guard source != server else {
                            throw TenantryError(code: .invalidArgument, message: "--all-from and --to name the same server '\(source)'")
                        }
                        ids = try await services.operations.tenants(onServer: source)
                        guard !ids.isEmpty else {
                            throw TenantryError(code: .invalidArgument, message: "no tenant database on server '\(source)'")
                        }
                    } else {
                        for id in ids { _ = try await knownTenant(id.rawValue, services) }
                    }
                    if !quiet, ids.count > 1 { Output.note("moving \(ids.count) tenant(s) to \(server), \(concurrency) at a time") }
                    let rows = ProgressPrinter(quiet: quiet)
                    var started: [ServerMoves.StartReport] = []
                    var failed: [String: String] = [:]
                    var lastError: (any Error)?
                    try await forEachConcurrently(ids, concurrency: concurrency, { id in
                        try await moves.start(id, to: server, reason: reason, progress: rows.update)
                    }) { index, result, done in
                        let id = ids[index]
                        switch result {
                        case .success(let report):
                            started.append(report)
                            let what = report.alreadyStarted
                                ? "already copied" : "\(report.rowsCopied) rows copied in \(String(format: "%.2f", report.copySeconds)) s"
                            if !quiet { Output.note("[\(done)/\(ids.count)] tenant \(id): moving to \(report.targetServer), \(what)") }
                        case .failure(let error):
                            failed[id.rawValue] = userMessage(for: error)
                            lastError = error
                            // One tenant: its error is the command's line (below), not a progress line too.
                            if !quiet, ids.count > 1 { Output.note("[\(done)/\(ids.count)] tenant \(id): FAILED: \(userMessage(for: error))") }
                        }
                    }
                    // One tenant: its error is the command's (one line; exit 2 for bad input).
                    if ids.count == 1, let lastError { throw lastError }
                    return Report(targetServer: server, started: started.sorted { $0.tenant < $1.tenant }, failed: failed)
                }
                if json {
                    try Output.json(report)
                } else {
                    let rows = report.started.reduce(0) { $0 + $1.rowsCopied }
                    Output.line("\(report.started.count) tenant(s) moving to \(report.targetServer) (\(rows) rows copied), \(report.failed.count) failed")
                    for (tenant, error) in report.failed.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
                    if let first = report.started.first {
                        Output.line("next: 'tenantry move verify --tenant \(first.tenant)', then 'tenantry move switch --tenant \(first.tenant)'")
                    }
                }
                if !report.failed.isEmpty { throw ExitCode.failure }
            }
        }
    }

    // MARK: - status

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Active server moves (or a tenant's latest): phase, rows copied, queue depth, lag, dead letters.")
        @Option(help: "Only this tenant (its latest move, active or ended).") var tenant: String?
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runMoveCommand {
                let context = try CommandContext.load()
                let tenant = tenant
                let moves = try await withMoves(context) { services, moves in
                    try await moves.status(try await tenant.asyncMap { try await knownTenant($0, services) })
                }.sorted { $0.tenant < $1.tenant }
                if json { try Output.json(["moves": moves]); return }
                guard !moves.isEmpty else {
                    Output.line(tenant.map { "tenant \($0) has never moved between servers" } ?? "no server move is active")
                    return
                }
                printMoves(moves)
            }
        }
    }

    // MARK: - verify, switch, reverse, complete, cancel

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Compare the tenant's two databases row by row (chunk checksums); differing rows named.",
            discussion: """
                Waits until the other database has every change made in the live one so far (the one that takes the \
                writes: the source before a switch, the target after), then compares them. Exit 0 only when every table \
                is equal, 1 when a row differs.
                """)
        @OptionGroup var arguments: One
        @Option(help: "Rows per checksum chunk.") var chunkSize = 10_000
        @Option(help: "Seconds to wait for the other database to catch up first.") var timeout = 300

        func run() async throws {
            try await runMoveCommand {
                guard chunkSize >= 2 else { throw TenantryError(code: .invalidArgument, message: "--chunk-size must be at least 2") }
                guard (1...3600).contains(timeout) else {
                    throw TenantryError(code: .invalidArgument, message: "--timeout must be from 1 to 3600 seconds")
                }
                let (chunkSize, timeout) = (chunkSize, timeout)
                let context = try CommandContext.load()
                let id = arguments.tenant
                let report = try await withMoves(context) { services, moves in
                    let tenant = try await knownTenant(id, services)
                    try await moves.catchUp(tenant, timeout: .seconds(timeout))
                    return try await moves.verify(tenant, chunkSize: chunkSize)
                }
                if arguments.json { try Output.json(report) } else {
                    for table in report.tables where table.differenceCount > 0 {
                        Output.line("  \(table.table): live \(table.unifiedRows) rows, other \(table.tenantRows) rows, "
                            + "\(table.differenceCount) row(s) differ")
                        for difference in table.differences.prefix(10) { Output.line("    \(difference)") }
                    }
                    Output.line("tenant \(report.tenant): \(report.equal ? "equal" : "differs") "
                        + "(\(report.tables.count) tables, \(String(format: "%.2f", report.seconds)) s)")
                }
                if !report.equal { throw ExitCode.failure }
            }
        }
    }

    struct Switch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the tenant's writes to the target: fence, drain, sequences, placement flip; the pause is measured.",
            discussion: "A pause longer than --max-pause aborts and the source keeps the writes. 'tenantry move reverse' goes back.")
        @OptionGroup var arguments: One
        @Option(help: "The longest write pause allowed (e.g. 500ms, 2s).") var maxPause = "500ms"

        func run() async throws {
            try await runMoveCommand {
                let pause = try parsePause(maxPause)
                try await runOne(arguments, { try await $0.switchTraffic($1, maxPause: pause) }) { printSwitch($0, reversed: false) }
            }
        }
    }

    struct Reverse: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "After a switch, move the tenant's writes back to the source (nothing lost); the move stays active.")
        @OptionGroup var arguments: One
        @Option(help: "The longest write pause allowed (e.g. 500ms, 2s).") var maxPause = "500ms"

        func run() async throws {
            try await runMoveCommand {
                let pause = try parsePause(maxPause)
                try await runOne(arguments, { try await $0.reverse($1, maxPause: pause) }) { printSwitch($0, reversed: true) }
            }
        }
    }

    struct Complete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "After a switch: stop syncing back and drop the source database and role (archived first with --archive-dir).")
        @OptionGroup var arguments: One
        @Option(help: "Write a pg_dump archive of the source here before dropping it.") var archiveDir: String?

        func run() async throws {
            let directory = archiveDir
            try await runMoveCommand {
                try await runOne(arguments, { try await $0.complete($1, archiveDirectory: directory) }) { report in
                    Output.line("tenant \(report.tenant): move complete, served from \(report.server); "
                        + "dropped \(report.droppedDatabase) on \(report.droppedServer)" + (report.archive.map { " (archive \($0))" } ?? ""))
                }
            }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Before a switch: drop the target database and role; the source keeps serving, untouched.")
        @OptionGroup var arguments: One

        func run() async throws {
            try await runMoveCommand {
                try await runOne(arguments, { try await $0.cancel($1) }) { report in
                    Output.line("tenant \(report.tenant): move cancelled, stays on \(report.server); "
                        + "dropped \(report.droppedDatabase) on \(report.droppedServer)")
                }
            }
        }
    }
}

/// `tenant 1: writes switched from a to b; write pause 12.3 ms (4 change(s) drained)`.
private func printSwitch(_ report: ServerMoves.SwitchReport, reversed: Bool) {
    Output.line("tenant \(report.tenant): writes \(reversed ? "back" : "switched") from \(report.from) to \(report.to); "
        + "write pause \(String(format: "%.1f", report.pauseMilliseconds)) ms (\(report.drained) change(s) drained)")
    Output.line(reversed
        ? "the move is active again: 'tenantry move switch' or 'tenantry move cancel --tenant \(report.tenant)'"
        : "next: 'tenantry move complete --tenant \(report.tenant)' drops the source ('tenantry move reverse' goes back)")
}

/// The `move status` table.
private func printMoves(_ moves: [ServerMoves.Status]) {
    func cell(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
    Output.line("tenant      phase      source → target          live        rows      queue   lag(s)  dead  pause(ms)")
    for move in moves {
        Output.line(cell(move.tenant.rawValue, 10) + "  " + cell(move.phase.rawValue, 9) + "  "
            + cell("\(move.sourceServer) → \(move.targetServer)", 23) + "  " + cell(move.liveServer, 10) + "  "
            + cell(String(move.rowsCopied), 8) + "  " + cell(move.queueDepth.map(String.init) ?? "?", 6) + "  "
            + (move.lagSeconds.map { String(format: "%6.1f", $0) } ?? "     ?") + "  "
            + cell(move.deadLetters.map(String.init) ?? "?", 4) + "  "
            + (move.lastPauseMilliseconds.map { String(format: "%.1f", $0) } ?? "-")
            + (move.lastError.map { "  (last error: \($0))" } ?? ""))
    }
}

/// Like ``runCommand(_:)``, with bad input (an invalid or unknown tenant, an unknown server, a
/// bad option value) as exit status 2 instead of 1.
func runMoveCommand(_ body: () async throws -> Void) async throws {
    try await runCommand {
        do {
            try await body()
        } catch let error as TenantryError
            where [.invalidArgument, .invalidTenantID, .tenantNotFound, .invalidIdentifier].contains(error.code) {
            Output.note("error: \(userMessage(for: error))")
            throw ExitCode(2)
        }
    }
}

extension Optional {
    /// `map` with an async transform.
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
