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
    @Option(help: "Server to use (default: the one with the fewest tenants).") var server: String?
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
            let quiet = json
            let (outcomes, failures) = try await Services.with(context) { services in
                let provisioner = try services.provisioner(migrationsDirectory: migrations)
                let ids = all ? try await UnifiedTenants.list(services) : explicit
                try await services.catalog.registerTenants(ids)
                if !quiet { Output.note("provisioning \(ids.count) tenant(s), \(concurrency) at a time") }
                // One session for the whole run: admin connections and the template check are shared.
                return try await provisioner.withSession { try await provisionAll(ids, with: $0, quiet: quiet) }
            }
            if json {
                struct Report: Encodable { var provisioned: [TenantProvisioner.Outcome]; var failed: [String: String] }
                try Output.json(Report(provisioned: outcomes.sorted { $0.tenant < $1.tenant }, failed: failures))
            } else {
                let created = outcomes.filter { $0.result == "created" }.count
                Output.line("\(created) provisioned, \(outcomes.count - created) already provisioned, \(failures.count) failed")
                for (tenant, error) in failures.sorted(by: { $0.key < $1.key }) { Output.line("  tenant \(tenant): \(error)") }
            }
            if !failures.isEmpty { throw ExitCode.failure }
        }
    }

    /// Provisions `ids`, `concurrency` at a time, with progress on standard error unless `quiet`.
    private func provisionAll(
        _ ids: [TenantID], with provisioner: TenantProvisioner, quiet: Bool
    ) async throws -> ([TenantProvisioner.Outcome], [String: String]) {
        let started = ContinuousClock.now
        var outcomes: [TenantProvisioner.Outcome] = []
        var failures: [String: String] = [:]
        try await withThrowingTaskGroup(of: (TenantID, Result<TenantProvisioner.Outcome, any Error>).self) { group in
            var next = 0
            func add() {
                let id = ids[next]
                next += 1
                group.addTask {
                    do { return (id, .success(try await provisioner.provision(id, server: server))) } catch { return (id, .failure(error)) }
                }
            }
            for _ in 0..<min(concurrency, ids.count) { add() }
            while let (id, result) = try await group.next() {
                switch result {
                case .success(let outcome): outcomes.append(outcome)
                case .failure(let error): failures[id.rawValue] = userMessage(for: error)
                }
                let done = outcomes.count + failures.count
                if !quiet {
                    let elapsed = ContinuousClock.now - started
                    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                    let rate = Double(done) / max(0.001, seconds)
                    let what = failures[id.rawValue].map { "FAILED: \($0)" }
                        ?? outcomes.last.map { "\($0.result) \($0.database) on \($0.server) (\($0.milliseconds) ms)" } ?? ""
                    Output.note("[\(done)/\(ids.count)] tenant \(id): \(what) — \(String(format: "%.1f", rate)) tenants/s")
                }
                if next < ids.count { add() }
            }
        }
        return (outcomes, failures)
    }
}

/// The tenants of the unified database.
enum UnifiedTenants {
    /// Ids from the tenant table (`TENANTRY_TENANT_TABLE`, default `shops`), else the distinct
    /// discriminator values of every table that has the column.
    static func list(_ services: Services) async throws -> [TenantID] {
        let naming = services.context.configuration.naming
        let logger = services.context.logger
        return try await Database.withConnection(services.databaseURL, logger: logger) { connection in
            let table = try SQLIdentifier.quoted(naming.tenantTable)
            let column = try SQLIdentifier.quoted(naming.discriminator)
            var sql: String
            let exists = try await connection.query(
                "SELECT to_regclass(\(naming.tenantTable)) IS NOT NULL", logger: logger).decode(Bool.self).first { _ in true }
            if exists == true {
                sql = "SELECT id::text FROM \(table) ORDER BY id"
            } else {
                var tables: [String] = []
                for try await name in try await connection.query("""
                    SELECT c.relname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attname = \(naming.discriminator) AND NOT a.attisdropped
                    """, logger: logger).decode(String.self) { tables.append(name) }
                guard !tables.isEmpty else {
                    throw TenantryError(
                        code: .invalidArgument,
                        message: "the unified database has no table \(naming.tenantTable) and no table with a \(naming.discriminator) column")
                }
                sql = try tables.map { "SELECT \(column)::text AS id FROM \(try SQLIdentifier.quoted($0))" }
                    .joined(separator: " UNION ") + " ORDER BY 1"
            }
            var ids: [TenantID] = []
            for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(String?.self) {
                guard let value else { continue }
                ids.append(try TenantID(value))
            }
            return ids.sorted()
        }
    }
}

/// `tenantry deprovision`.
struct DeprovisionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deprovision",
        abstract: "Archive a tenant database (pg_dump -Fc), then drop it and its role and remove its credentials.")

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
                try await services.provisioner(migrationsDirectory: nil, needsMigrations: false).deprovision(id, archiveDirectory: archiveDir)
            }
            if json { try Output.json(outcome) } else {
                Output.line("deprovisioned tenant \(id): dropped \(outcome.database); archive \(outcome.archive) (\(outcome.archiveBytes) bytes)")
            }
        }
    }
}
