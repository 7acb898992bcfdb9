import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// `tenantry guard`: the unified database's security guards (docs/security.md).
struct GuardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guard",
        abstract: "Guard the unified database: immutable, audited discriminator; row-level security; moved tenants' writes rejected.",
        subcommands: [Install.self, Status.self, Uninstall.self])

    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install (or bring up to date) the guards on every tenant table. Safe to re-run.",
            discussion: """
                A trigger refuses any change of the discriminator (shop_id) and records the attempt in tenantry.guard_audit \
                (through a dblink loopback session, so the record survives the refused transaction; else in the server log). \
                With --app-role, row-level security confines that role to the rows of the tenant named by the session \
                setting tenantry.tenant (the router sets it); the tables' owner and superusers are not affected. Capture is \
                installed too: its trigger rejects direct writes of tenants that have moved.
                """)

        @Option(name: .customLong("app-role"), parsing: .singleValue,
                help: "The application's role, confined by row-level security (repeatable; default: the roles of the last install).")
        var appRoles: [String] = []
        @Option(help: "Where refused attempts are recorded: auto, dblink or server-log.") var audit = "auto"
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            guard ["auto", "dblink", "server-log"].contains(audit) else {
                throw ValidationError("--audit must be auto, dblink or server-log")
            }
        }

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let report = try await Services.with(context) { services in
                    let report = try await tenantGuard(services).install(
                        appRoles: appRoles.isEmpty ? nil : appRoles, audit: TenantGuard.AuditMode(rawValue: audit))
                    try? await services.catalog.audit(
                        actor: context.actor, action: "guard-install", outcome: .ok,
                        detail: ["tables": "\(report.tables.count)", "audit": report.auditMode.rawValue,
                                 "app_roles": report.appRoles.joined(separator: ",")])
                    return report
                }
                if json { try Output.json(report) } else {
                    Output.line("guard installed on \(report.tables.count) tenant tables (\(report.changed.count) changed by this run)")
                    Output.line("  discriminator: immutable; attempts audited in "
                        + (report.auditMode == .dblink ? "tenantry.guard_audit (dblink)" : "the server log only"))
                    if let note = report.auditNote, report.auditMode != .dblink { Output.line("    because \(note)") }
                    Output.line("  row-level security: " + (report.appRoles.isEmpty
                        ? "not configured (give --app-role)" : "on for \(report.appRoles.joined(separator: ", "))"))
                    Output.line("  moved tenants' direct writes: " + (report.captureInstalled ? "rejected (capture installed)" : "NOT guarded"))
                }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show which guards are in place and how many attempts were audited.")
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let status = try await Services.with(context) { services in try await tenantGuard(services).status() }
                if json { try Output.json(status); return }
                guard status.installed else {
                    Output.line("guard: not installed (run 'tenantry guard install --app-role ROLE')")
                    return
                }
                Output.line("guard: installed; audit to \(status.auditMode == .dblink ? "tenantry.guard_audit" : "the server log"), "
                    + "\(status.auditedAttempts) attempt(s) recorded")
                Output.line("  guarded tables: \(status.guardedTables.count)"
                    + (status.unguardedTables.isEmpty ? "" : "; NOT guarded: \(status.unguardedTables.joined(separator: ", ")) (re-run install)"))
                Output.line("  row-level security: \(status.rowLevelSecurityTables.count) table(s)"
                    + (status.appRoles.isEmpty ? "" : " for \(status.appRoles.joined(separator: ", "))"))
                Output.line("  capture (moved-tenant guard): \(status.captureInstalled ? "installed" : "not installed")")
            }
        }
    }

    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove the discriminator guard and Tenantry's row-level security policies (the audit table and capture stay).")
        @Flag(help: "Confirm.") var yes = false
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            guard yes else { throw ValidationError("removing the guards needs --yes") }
        }

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let report = try await Services.with(context) { services in
                    let report = try await tenantGuard(services).uninstall()
                    try? await services.catalog.audit(
                        actor: context.actor, action: "guard-uninstall", outcome: .ok, detail: ["tables": "\(report.tables.count)"])
                    return report
                }
                if json { try Output.json(report) } else { Output.line("guard removed from \(report.tables.count) table(s)") }
            }
        }
    }
}

/// The guard of the unified database, as the admin login (it owns the tables).
private func tenantGuard(_ services: Services) throws -> TenantGuard {
    let unifiedURL = try services.servers.adminURL(server: nil, database: services.databaseURL.database)
    return TenantGuard(
        unifiedURL: unifiedURL, discriminator: services.context.configuration.naming.discriminator, logger: services.context.logger)
}
