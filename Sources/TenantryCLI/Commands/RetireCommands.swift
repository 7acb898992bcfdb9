import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// `tenantry retire-legacy`.
struct RetireLegacyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retire-legacy",
        abstract: "Delete dedicated tenants' rows from the unified database: verified first, archived, restorable.",
        discussion: """
            Refuses if any tenant differs between unified and its database (VERIFY_BEFORE_RETIREMENT, default on). \
            Archives every row first (ARCHIVE_BEFORE_DELETE, default on) into --archive-dir; 'tenantry restore-legacy' \
            puts them back.
            """)

    @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Tenant ids (default: every dedicated tenant).")
    var tenants: [String] = []
    @Option(help: "Where the archive goes.") var archiveDir = "./archives"
    @Flag(help: "Verify and count only; change nothing.") var dryRun = false
    @Flag(help: "Confirm: the rows are deleted from the unified database (after the archive).") var yes = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            guard yes || dryRun else {
                throw TenantryError(
                    code: .invalidArgument, message: "retire-legacy deletes rows from the unified database: add --yes (or --dry-run)")
            }
            let ids = try parseTenantIDs(tenants)
            let (archiveDir, dryRun) = (archiveDir, dryRun)
            let report = try await Services.with(context) { services in
                try await services.move().retire(ids.isEmpty ? nil : ids, archiveDirectory: archiveDir, dryRun: dryRun)
            }
            if json { try Output.json(report); return }
            let total = report.tables.reduce(0) { $0 + $1.rows }
            Output.line("\(report.dryRun ? "would retire" : "retired") \(report.tenants.count) tenant(s): \(total) row(s)")
            for table in Set(report.tables.map(\.table)).sorted() {
                let rows = report.tables.filter { $0.table == table }.reduce(0) { $0 + $1.rows }
                if rows > 0 { Output.line("  \(table): \(rows)") }
            }
            if let archive = report.archive { Output.line("archive: \(archive) (tenantry restore-legacy --archive-dir \(archive))") }
        }
    }
}

/// `tenantry restore-legacy`.
struct RestoreLegacyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore-legacy",
        abstract: "Put retired tenants' archived rows back into the unified database; reverse sync then brings them up to date.")

    @Option(help: "The archive directory retire-legacy printed.") var archiveDir: String
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let archiveDir = archiveDir
            let report = try await Services.with(context) { try await $0.move().restore(archive: archiveDir) }
            if json { try Output.json(report); return }
            Output.line("restored \(report.tables.reduce(0) { $0 + $1.rows }) row(s) of \(report.tenants.count) tenant(s); "
                + "they are dedicated again ('tenantry sync run' applies what changed since)")
        }
    }
}
