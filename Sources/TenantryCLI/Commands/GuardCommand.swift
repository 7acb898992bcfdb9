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
                installed too: its trigger rejects direct writes of tenants that have moved. \
                Tenant roles are shut out of the unified database and of the server's postgres and template1: \
                every other login role that can connect to them now (and each --app-role) is granted CONNECT, then \
                PUBLIC's CONNECT is revoked. The changes are printed first; --dry-run prints them and changes nothing. \
                A role created later needs GRANT CONNECT ON DATABASE to reach those databases.
                """)

        @Option(name: .customLong("app-role"), parsing: .singleValue,
                help: "The application's role, confined by row-level security (repeatable; default: the roles of the last install).")
        var appRoles: [String] = []
        @Option(help: "Where refused attempts are recorded: auto, dblink or server-log.") var audit = "auto"
        @Flag(help: "Print what would change (CONNECT grants and revocations) and change nothing.") var dryRun = false
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            guard ["auto", "dblink", "server-log"].contains(audit) else {
                throw ValidationError("--audit must be auto, dblink or server-log")
            }
        }

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let (quiet, dryRun) = (json, dryRun)
                let output = try await Services.with(context) { services in
                    let guarded = try tenantGuard(services)
                    let roles = appRoles.isEmpty ? try await guarded.status().appRoles : appRoles
                    let planned = try await connectLockdown(services, appRoles: roles).plan()
                    if dryRun { return InstallOutput(report: nil, connect: planned) }
                    if !quiet { printConnect(planned, dryRun: false) }
                    let report = try await guarded.install(
                        appRoles: appRoles.isEmpty ? nil : appRoles, audit: TenantGuard.AuditMode(rawValue: audit))
                    let connect = try await connectLockdown(services, appRoles: report.appRoles).apply()
                    try? await services.catalog.audit(
                        actor: context.actor, action: "guard-install", outcome: .ok,
                        detail: ["tables": "\(report.tables.count)", "audit": report.auditMode.rawValue,
                                 "app_roles": report.appRoles.joined(separator: ","),
                                 "connect_revoked_from_public": connect.map { "\($0.server)/\($0.database)" }.joined(separator: ",")])
                    return InstallOutput(report: report, connect: connect)
                }
                guard let report = output.report else {
                    if json { try Output.json(output) } else { printConnect(output.connect, dryRun: true) }
                    return
                }
                if json { try Output.json(output) } else {
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

/// `guard install`'s JSON: the guard's report (its fields absent on a dry run) and the CONNECT changes.
private struct InstallOutput: Encodable, Sendable {
    var report: TenantGuard.InstallReport?
    var connect: [ConnectLockdown.Change]

    enum Keys: String, CodingKey { case tables, changed, auditMode, auditNote, appRoles, captureInstalled, connect, dryRun }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encodeIfPresent(report?.tables, forKey: .tables)
        try container.encodeIfPresent(report?.changed, forKey: .changed)
        try container.encodeIfPresent(report?.auditMode, forKey: .auditMode)
        try container.encodeIfPresent(report?.auditNote, forKey: .auditNote)
        try container.encodeIfPresent(report?.appRoles, forKey: .appRoles)
        try container.encodeIfPresent(report?.captureInstalled, forKey: .captureInstalled)
        try container.encode(connect, forKey: .connect)
        try container.encode(report == nil, forKey: .dryRun)
    }
}

/// Says which databases PUBLIC loses CONNECT on and who keeps it (before it is done).
private func printConnect(_ changes: [ConnectLockdown.Change], dryRun: Bool) {
    if changes.isEmpty {
        Output.line("connect: PUBLIC already cannot connect to the unified database, postgres or template1; nothing to change")
        return
    }
    for change in changes {
        Output.line("connect\(dryRun ? " (dry run, not done)" : ""): revoke CONNECT on \(change.server)/\(change.database) from PUBLIC; "
            + "grant it to \(change.grantTo.isEmpty ? "no role (superusers need none)" : change.grantTo.joined(separator: ", "))"
            + (change.tenantRolesShutOut.isEmpty ? "" : "; shuts out \(change.tenantRolesShutOut.count) tenant role(s)"))
    }
}

/// The CONNECT lockdown of the unified database and each server's postgres and template1.
private func connectLockdown(_ services: Services, appRoles: [String]) -> ConnectLockdown {
    ConnectLockdown(
        catalog: services.catalog, servers: services.servers, unifiedDatabase: services.databaseURL.database,
        appRoles: appRoles, logger: services.context.logger)
}

/// The guard of the unified database, as the admin login (it owns the tables).
private func tenantGuard(_ services: Services) throws -> TenantGuard {
    let unifiedURL = try services.servers.adminURL(server: nil, database: services.databaseURL.database)
    return TenantGuard(
        unifiedURL: unifiedURL, discriminator: services.context.configuration.naming.discriminator, logger: services.context.logger)
}
