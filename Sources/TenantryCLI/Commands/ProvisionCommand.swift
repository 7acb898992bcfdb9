import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry provision`.
struct ProvisionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Create tenant databases: role with a SCRAM verifier, database from the template, privileges, sealed credentials.",
        discussion: "Idempotent: an already provisioned, healthy tenant is a no-op; a failed one is undone and can be retried.")

    @Argument(help: "Tenant ids (or --all).") var tenants: [String] = []
    @Flag(help: "Every tenant of the unified database (its tenant table, else the distinct discriminator values).") var all = false
    @Option(help: "Tenants provisioned at once.") var concurrency = 4
    @Option(help: "Server to use (default: the least loaded registered server with room).") var server: String?
    @Option(help: "Directory of fleet migrations (default: TENANTRY_MIGRATIONS or ./migrations).") var migrations: String?
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard all != !tenants.isEmpty else { throw ValidationError("give tenant ids or --all (not both)") }
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 64") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let explicit = try parseTenantIDs(tenants)
            let (quiet, all, concurrency, server, migrations) = (json, all, concurrency, server, migrations)
            let report = try await Services.with(context) { services in
                // Checked before listing the tenants: a missing key or migrations directory is the first error.
                _ = try services.provisioner(migrationsDirectory: migrations)
                let ids = all ? try await services.operations.unifiedTenants() : explicit
                if !quiet { Output.note("provisioning \(ids.count) tenant(s), \(concurrency) at a time") }
                let started = ContinuousClock.now
                return try await services.operations.provision(
                    .tenants(ids), concurrency: concurrency, server: server, migrationsDirectory: migrations,
                    progress: Output.progress(quiet: quiet) { event in
                        let elapsed = ContinuousClock.now - started
                        let seconds = elapsed.totalSeconds
                        return "\(String(format: "%.1f", Double(event.done) / max(0.001, seconds))) tenants/s"
                    })
            }
            if json {
                try Output.json(report)
            } else {
                let created = report.provisioned.filter { $0.result == "created" }.count
                Output.line("\(created) provisioned, \(report.provisioned.count - created) already provisioned, \(report.failed.count) failed")
                for (tenant, error) in report.failed.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
            }
            if !report.failed.isEmpty { throw ExitCode.failure }
        }
    }
}

/// `tenantry deprovision`.
struct DeprovisionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deprovision",
        abstract: "Archive a tenant database (pg_dump -Fc), then drop it and its role and remove its credentials.",
        discussion: """
            Only a database and role that carry Tenantry's mark for the tenant (comment 'tenantry:tenant=ID') are dropped. \
            A tenant moving before cutover (copying, syncing, reads_switched) is rolled back first: capture off, its queued \
            changes and dead letters cleared, reads back on the unified database. A tenant at cutover or later is refused: \
            roll it back first (its data is served from its database).
            """)

    @Argument(help: "The tenant id.") var tenant: String
    @Option(help: "Where the archive goes.") var archiveDir = "./archives"
    @Flag(help: "Confirm: the database is dropped (after the archive is written).") var yes = false
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let id = try TenantID(tenant)
            guard yes else {
                throw TenantryError(
                    code: .invalidArgument, message: "deprovision drops the database of tenant \(id): add --yes to confirm")
            }
            let outcome = try await Services.with(context) { services in
                // A tenant moving before cutover is moved back first (capture off, its queue cleared).
                try await services.provisioner(migrationsDirectory: nil, needsMigrations: false).deprovision(
                    id, archiveDirectory: archiveDir, abandonMove: { tenant in _ = try await services.move().rollback([tenant]) })
            }
            if json { try Output.json(outcome) } else {
                Output.line("deprovisioned tenant \(id): dropped \(outcome.database); archive \(outcome.archive) (\(outcome.archiveBytes) bytes)")
            }
        }
    }
}
