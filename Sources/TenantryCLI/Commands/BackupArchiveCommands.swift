import ArgumentParser
import EmbeddedPostgres
import Foundation
import Tenantry
import TenantryCore

/// `tenantry backup archive enable|status`: continuous WAL archiving, for point-in-time restores.
struct BackupArchiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive", abstract: "Continuous WAL archiving of a server, for point-in-time restores (restore --to-time).",
        subcommands: [Enable.self, Status.self])

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Configure WAL archiving of a server into a directory, and take a base backup once it is active.",
            discussion: """
                Sets archive_mode = on, wal_level = replica (when it was minimal) and an archive_command that copies each WAL \
                segment to DIR/wal (never overwriting a different one), with ALTER SYSTEM, then reloads the configuration. \
                archive_mode and wal_level take effect only when the server restarts: the command says so, prints the next \
                steps, and never restarts a server itself. Once archiving is active it takes a base backup into DIR/base. \
                DIR must be a directory this machine and the server both see; it records the server in DIR/archive.json.
                """)

        @Option(help: "The server: `default` (the unified database's) or a registered one.") var server = ServerDirectory.defaultServerName
        @Option(help: "The archive directory (one per server).") var dir: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let (server, dir) = (server, dir)
                let report = try await Services.with(context) { try await $0.operations.enableArchiving(server: server, directory: dir) }
                if json { try Output.json(report); return }
                Output.line("WAL archiving of server '\(server)' configured into \(report.directory)")
                for setting in report.settings {
                    let shown = setting.name == "archive_command" ? "copies each segment to \(report.directory)/wal" : setting.after
                    let change = setting.before == setting.after ? "\(shown) (unchanged)" : "\(setting.name == "archive_command" ? "" : setting.before + " → ")\(shown)"
                    Output.line("  \(setting.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(change)"
                        + (setting.needsRestart ? "   [takes effect at the next restart]" : ""))
                }
                Output.line("  \(report.directoryNote)")
                if report.restartNeeded {
                    Output.line("RESTART NEEDED: WAL is not archived until server '\(server)' restarts; Tenantry does not restart it.")
                } else if let base = report.baseBackup {
                    Output.line("archiving is active; base backup taken: \(base.path ?? "") (\(ByteSize.format(base.bytes)))")
                }
                Output.line("next steps:")
                for (index, step) in report.nextSteps.enumerated() { Output.line("  \(index + 1). \(step)") }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Archiving on or off per server, the last archived WAL segment, and the base backups with their times.")

        @Option(help: "One server (default: every server).") var server: String?
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let server = server
                let reports = try await Services.with(context) { try await $0.operations.archiveStatus(server: server) }
                if json { try Output.json(["servers": reports]); return }
                for report in reports { print(report) }
            }
        }

        private func print(_ report: WALArchive.StatusReport) {
            if let error = report.error {
                Output.line("server \(report.server): status unavailable: \(error)")
                return
            }
            let state = report.archiving ? "on" : report.restartNeeded ? "configured, waiting for a restart" : "off"
            Output.line("server \(report.server): archiving \(state)" + (report.directory.map { " into \($0)" } ?? ""))
            let archiver = report.archiver
            Output.line("  last archived: \(archiver.lastArchivedWAL ?? "none")"
                + (archiver.lastArchivedTime.map { " at \(PointInTimeFormat.string($0))" } ?? "")
                + "; \(archiver.archivedCount) archived, \(archiver.failedCount) failed"
                + (archiver.lastFailedWAL.map { " (last failed: \($0))" } ?? ""))
            guard report.directory != nil else { return }
            Output.line("  WAL segments in the archive: \(report.walFiles)")
            Output.line("  base backups: \(report.baseBackups.count)")
            for base in report.baseBackups {
                Output.line("    \((base.path as NSString?)?.lastPathComponent ?? "?")  started \(PointInTimeFormat.string(base.startedAt))  "
                    + "ended \(PointInTimeFormat.string(base.finishedAt))  \(ByteSize.format(base.bytes))  from \(base.startWALFile)")
            }
        }
    }
}

/// `tenantry backup base`.
struct BackupBaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "base", abstract: "Take a base backup of a server into its WAL archive (pg_basebackup; see 'backup archive enable').")

    @Option(help: "The server: `default` (the unified database's) or a registered one.") var server = ServerDirectory.defaultServerName
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let server = server
            let base = try await Services.with(context) { try await $0.operations.takeBaseBackup(server: server) }
            if json { try Output.json(base); return }
            Output.line("base backup of server '\(server)': \(ByteSize.format(base.bytes)), started \(PointInTimeFormat.string(base.startedAt)), "
                + "ended \(PointInTimeFormat.string(base.finishedAt)), WAL from \(base.startWALFile)")
            Output.line(base.path ?? "")
        }
    }
}

/// A point-in-time recovery's scratch server: EmbeddedPostgres in a new temporary directory,
/// adopting the extracted base backup, reached over its private unix socket; stopped and deleted
/// afterwards, and by its watchdog if this process dies first.
struct EmbeddedScratchServer: PointInTimeScratchServer {
    let server: EmbeddedPostgres
    var dataDirectory: String { "\(server.configuration.directory)/data" }
    var logFile: String { server.logFilePath }

    /// The factory over `context`'s PostgreSQL programs.
    static func factory(_ context: CommandContext) -> PointInTimeScratchFactory {
        { request in
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("tenantry-pitr-\(UUID().uuidString.prefix(8).lowercased())").path
            var configuration = try context.embeddedConfiguration(directory: directory)
            configuration.superuser = request.superuser
            configuration.settings = request.settings
            configuration.adoptsDataDirectory = true
            configuration.stopWhenProcessExits = true
            configuration.removeDirectoryOnStop = true
            return EmbeddedScratchServer(server: EmbeddedPostgres(configuration: configuration, logger: context.logger))
        }
    }

    func start() async throws -> PostgresURL {
        try await server.start()
        return PostgresURL(
            user: server.superuser, password: nil, host: try server.socketDirectory, port: try server.port, database: "postgres",
            tls: .disable)
    }

    func isRunning() async -> Bool { (try? await server.isRunning()) ?? false }

    func remove() async {
        try? await server.stop()
        try? FileManager.default.removeItem(atPath: server.configuration.directory)
    }
}

extension RestoreCommand {
    /// `tenantry restore --tenant ID --to-time T [--as-tenant NEW] --yes`: recovers the tenant's
    /// server to T in a scratch server (its WAL archive), dumps the tenant's database from it, and
    /// restores that as `--from` would; prints how long each part took.
    func restore(toTime: String, tenant: TenantID, asTenant: TenantID?) async throws {
        guard from == nil else {
            throw TenantryError(code: .invalidArgument, message: "--from and --to-time exclude each other: name one")
        }
        let (pauseLimit, progress) = try confirmed(
            asTenant.map { "restore creates tenant \($0)" } ?? "restore replaces tenant \(tenant)'s data with its state at \(toTime)")
        let context = try CommandContext.load()
        let dropPrevious = dropPrevious
        let report = try await Services.with(context) { services in
            try await services.operations.restoreToTime(
                tenant, time: toTime, asTenant: asTenant, dropPrevious: dropPrevious, maxPause: pauseLimit,
                scratch: EmbeddedScratchServer.factory(context), progress: progress)
        }
        if json { try Output.json(report); return }
        let restored = report.restore
        Output.line("restored tenant \(report.restoredAs) to \(report.target): \(restored.rows) row(s), schema version "
            + "\(restored.schemaVersion), database \(restored.database) on \(restored.server)")
        Output.line("from base backup \(report.baseBackup) (ended \(PointInTimeFormat.string(report.baseBackupFinishedAt))), "
            + "WAL replayed from the archive of server '\(report.server)'; the scratch server is removed")
        let order = ["prepare", "base_extract", "recovery", "dump", "cleanup", "restore"]
        let parts = order.compactMap { key in report.seconds[key].map { "\(key.replacingOccurrences(of: "_", with: " ")) \(String(format: "%.2f", $0)) s" } }
        Output.line("took: " + parts.joined(separator: ", ") + String(format: "; writes paused %.1f ms", restored.pauseMilliseconds))
        if let previous = restored.previousDatabase {
            Output.line("the previous database is kept as \(previous) (drop it when you no longer need it)")
        }
    }
}
