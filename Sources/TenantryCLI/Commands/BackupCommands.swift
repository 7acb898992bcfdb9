import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// The backup directory when `--out`/`--dir` is not given: `TENANTRY_BACKUP_DIR`, else `./backups`.
var defaultBackupDirectory: String {
    ProcessInfo.processInfo.environment["TENANTRY_BACKUP_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "./backups"
}

/// `tenantry backup`.
struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up tenant databases: one pg_dump per tenant with a checksummed manifest.",
        discussion: """
            Each backup is <out>/<tenant>/<tenant>-<time>.dump plus its manifest <…>.json (tenant, server, database, \
            schema version, size, SHA-256, times, PostgreSQL version, rows per table), files 0600, written atomically. \
            --all backs up every provisioned tenant in parallel; when a --all run was interrupted, the next one resumes it.
            """,
        subcommands: [BackupRunCommand.self, BackupListCommand.self, BackupPruneCommand.self, BackupArchiveCommand.self, BackupBaseCommand.self],
        defaultSubcommand: BackupRunCommand.self)
}

/// `tenantry backup [run]`.
struct BackupRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Back up one tenant or all of them (the default subcommand).")

    @Option(help: "The tenant to back up.") var tenant: String?
    @Flag(help: "Back up every provisioned tenant.") var all = false
    @Option(help: "Tenants backed up at a time (--all).") var concurrency = 4
    @Option(help: "The backup directory (default TENANTRY_BACKUP_DIR, else ./backups).") var out: String?
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            guard (tenant != nil) != all else {
                throw TenantryError(code: .invalidArgument, message: "name one tenant (--tenant ID) or --all")
            }
            guard concurrency >= 1 else { throw TenantryError(code: .invalidArgument, message: "--concurrency must be 1 or more") }
            let context = try CommandContext.load()
            let id = try tenant.map { try TenantID($0) }
            let (store, concurrency, quiet) = (BackupStore(root: out ?? defaultBackupDirectory), concurrency, json)
            if let id {
                let manifest = try await Services.with(context) { try await $0.operations.backups().backup(id, into: store) }
                if json { try Output.json(manifest); return }
                Output.line("backed up tenant \(id): \(ByteSize.format(manifest.bytes)), \(manifest.rows) row(s), schema version "
                    + "\(manifest.schemaVersion)")
                Output.line(manifest.path ?? "")
                return
            }
            if !quiet { Output.note("backing up every provisioned tenant into \(store.root), \(concurrency) at a time") }
            let report = try await Services.with(context) { services in
                try await services.operations.backups().backupAll(into: store, concurrency: concurrency, progress: Output.progress(quiet: quiet))
            }
            if json {
                try Output.json(report)
            } else {
                Output.line("\(report.written.count) backed up (\(ByteSize.format(report.bytes)) in \(report.milliseconds) ms), "
                    + "\(report.resumed.count) already done by the resumed run, \(report.failed.count) failed")
                for (tenant, error) in report.failed.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
            }
            if !report.failed.isEmpty {
                if !quiet { Output.note("run 'tenantry backup --all' again to resume: the tenants already backed up are skipped") }
                throw ExitCode.failure
            }
        }
    }
}

/// `tenantry backup list`.
struct BackupListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the backups in a backup directory, oldest first.")

    @Option(help: "Only this tenant's backups.") var tenant: String?
    @Option(help: "The backup directory (default TENANTRY_BACKUP_DIR, else ./backups).") var out: String?
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let id = try tenant.map { try TenantID($0) }
            let backups = try BackupStore(root: out ?? defaultBackupDirectory).list(tenant: id)
            if json { try Output.json(["backups": backups]); return }
            if backups.isEmpty { Output.line("no backups"); return }
            for backup in backups {
                Output.line([
                    backup.tenant.rawValue, ISO8601DateFormatter().string(from: backup.startedAt), ByteSize.format(backup.bytes),
                    "v\(backup.schemaVersion)", "\(backup.rows) rows", backup.path ?? "",
                ].joined(separator: "  "))
            }
        }
    }
}

/// `tenantry backup prune`.
struct BackupPruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Remove old backups: keep the newest of each of the last N days and of the last N weeks.",
        discussion: "Per tenant; the newest backup of every tenant is always kept. Times are UTC; weeks are ISO weeks.")

    @Option(help: "Days to keep the newest backup of.") var keepDaily: Int
    @Option(help: "Weeks to keep the newest backup of.") var keepWeekly: Int
    @Option(help: "The backup directory (default TENANTRY_BACKUP_DIR, else ./backups).") var out: String?
    @Flag(help: "Say what would be removed; remove nothing.") var dryRun = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let report = try Backups.prune(BackupStore(root: out ?? defaultBackupDirectory), keepDaily: keepDaily, keepWeekly: keepWeekly, dryRun: dryRun)
            if json { try Output.json(report); return }
            for path in report.removed { Output.line("\(dryRun ? "would remove" : "removed") \(path)") }
            Output.line("\(report.kept.count) kept, \(report.removed.count) \(dryRun ? "to remove" : "removed")")
        }
    }
}

/// `tenantry restore`.
struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a tenant from a backup into a new database, verify it, and swap it in (or restore it as a new tenant).",
        discussion: """
            --from names a backup as 'tenantry backup' prints it (its manifest), its .dump, or a backup directory (the \
            newest backup of the tenant in it). The checksum is checked first; the restored database's schema version \
            and rows per table must equal the manifest's. The swap pauses the tenant's writes for a moment; the old \
            database is kept as <name>_before_restore_<time> unless --drop-previous. With --as-tenant the backup becomes \
            a new tenant and the original is not touched.
            """)

    @Option(help: "The tenant the backup is of.") var tenant: String
    @Option(help: "The backup: a manifest, a .dump, or a backup directory.") var from: String?
    @Option(help: "Instead of --from: the time to restore to, as PostgreSQL reads a timestamptz (from the server's WAL archive).")
    var toTime: String?
    @Option(help: "Restore as this new tenant id instead, for inspection.") var asTenant: String?
    @Flag(help: "Drop the replaced database instead of keeping it.") var dropPrevious = false
    @Option(help: "Longest pause of the tenant's writes at the swap (e.g. 5s).") var maxPause = "5s"
    @Flag(help: "Confirm: the tenant's database is replaced by the backup's.") var yes = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand { try await restore() }
    }

    /// What both kinds of restore check and set up first: `--yes` (else one error saying `what`
    /// happens), the pause limit, and progress notes unless `--json`.
    func confirmed(_ what: String) throws -> (pause: Duration, progress: (@Sendable (String) -> Void)?) {
        guard yes else { throw TenantryError(code: .invalidArgument, message: "\(what): add --yes") }
        let note: @Sendable (String) -> Void = { message in Output.note(message) }
        return (try parsePause(maxPause), json ? nil : note)
    }

    private func restore() async throws {
        let id = try TenantID(tenant)
        let newID = try asTenant.map { try TenantID($0) }
        if let toTime { return try await restore(toTime: toTime, tenant: id, asTenant: newID) }
        guard let from else { throw TenantryError(code: .invalidArgument, message: "name the backup: --from PATH, or --to-time T") }
        let (pauseLimit, progress) = try confirmed(newID.map { "restore creates tenant \($0)" } ?? "restore replaces tenant \(id)'s data with the backup's")
        let context = try CommandContext.load()
        let dropPrevious = dropPrevious
        let report: Backups.RestoreReport = try await Services.with(context) { services in
            try await services.operations.backups().restore(
                id, from: from, asTenant: newID, dropPrevious: dropPrevious, maxPause: pauseLimit, progress: progress)
        }
        if json { try Output.json(report); return }
        Output.line("restored tenant \(report.tenant) from \(report.backup): \(report.rows) row(s), schema version "
            + "\(report.schemaVersion), database \(report.database) on \(report.server)")
        let parts: [String] = report.parts.keys.sorted().map { key in "\(key) \(report.parts[key] ?? 0) ms" }
        let pause = String(format: "%.1f", report.pauseMilliseconds)
        Output.line("writes paused \(pause) ms; " + parts.joined(separator: ", "))
        if let previous = report.previousDatabase {
            Output.line("the previous database is kept as \(previous) (drop it when you no longer need it)")
        }
    }
}
