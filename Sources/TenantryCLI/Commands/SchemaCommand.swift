import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// `tenantry schema derive|migrate|status|plan`.
struct SchemaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schema",
        abstract: "Derive the tenant schema from the unified database, and migrate every tenant database.",
        subcommands: [Derive.self, Migrate.self, Status.self, Plan.self])

    /// Options shared by the fleet subcommands.
    struct FleetOptions: ParsableArguments {
        @Option(help: "Directory of V<n>__<name>.sql files (default: TENANTRY_MIGRATIONS or ./migrations).")
        var migrations: String?

        @Option(name: .customLong("tenant"), parsing: .upToNextOption, help: "Only these tenants (default: all).")
        var tenants: [String] = []

        func loadFiles(_ context: CommandContext) throws -> [MigrationFile] {
            try MigrationFile.load(directory: migrations ?? context.configuration.migrationsDirectory)
        }

        func tenantIDs() throws -> [TenantID]? {
            guard !tenants.isEmpty else { return nil }
            return try tenants.flatMap { $0.split(separator: ",") }.map { try TenantID(String($0)) }
        }
    }

    /// Builds the fleet view over the catalog.
    static func withFleet<Result: Sendable>(
        _ context: CommandContext, _ body: @Sendable (SchemaFleet) async throws -> Result
    ) async throws -> Result {
        try await Services.with(context) { services in
            try await body(SchemaFleet(
                catalog: services.catalog, servers: services.servers,
                templateDatabase: context.configuration.naming.templateDatabase, logger: context.logger))
        }
    }

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply pending migrations: the template database first, then every tenant database in parallel.")

        @OptionGroup var fleet: FleetOptions
        @Option(help: "Tenant databases migrated at once.") var concurrency = 4
        @Flag(help: "Print one JSON object with every outcome.") var json = false

        func validate() throws {
            guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 256") }
        }

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let files = try fleet.loadFiles(context)
                let only = try fleet.tenantIDs()
                let quiet = json
                let outcomes = try await SchemaCommand.withFleet(context) { fleet in
                    var outcomes: [FleetMigrator.Outcome] = []
                    do {
                        outcomes = try await fleet.prepareTemplates(migrations: files)
                    } catch {
                        outcomes.append(.init(
                            database: context.configuration.naming.templateDatabase, tenant: nil, applied: [], version: 0,
                            error: userMessage(for: error), milliseconds: 0))
                        return outcomes
                    }
                    if !quiet {
                        for outcome in outcomes { Output.note("\(outcome.database): at V\(outcome.version)") }
                    }
                    let targets = try await fleet.targets(only: only)
                    let migrator = FleetMigrator(migrations: files, logger: context.logger)
                    outcomes += await migrator.migrateFleet(
                        template: nil, targets: targets, concurrency: concurrency
                    ) { outcome, done, total in
                        guard !quiet else { return }
                        let what = outcome.error.map { "FAILED: \($0)" }
                            ?? (outcome.applied.isEmpty ? "already at V\(outcome.version)"
                                : "applied \(outcome.applied.map { "V\($0)" }.joined(separator: ", ")) (\(outcome.milliseconds) ms)")
                        Output.note("[\(done)/\(total)] \(outcome.database): \(what)")
                    }
                    try await fleet.record(outcomes)
                    try await fleet.catalog.audit(
                        actor: context.actor, action: "schema.migrate", outcome: outcomes.contains { $0.error != nil } ? .failed : .ok,
                        detail: ["databases": "\(outcomes.count)", "latest": "\(files.last?.version ?? 0)",
                                 "failed": "\(outcomes.filter { $0.error != nil }.count)"])
                    return outcomes
                }
                let failed = outcomes.filter { $0.error != nil }
                if json {
                    struct Report: Encodable {
                        var latest: Int, migrated: Int, current: Int, failed: Int, outcomes: [FleetMigrator.Outcome]
                    }
                    try Output.json(Report(
                        latest: files.last?.version ?? 0, migrated: outcomes.filter { !$0.applied.isEmpty && $0.error == nil }.count,
                        current: outcomes.filter { $0.applied.isEmpty && $0.error == nil }.count, failed: failed.count,
                        outcomes: outcomes))
                } else {
                    let migrated = outcomes.filter { !$0.applied.isEmpty && $0.error == nil }.count
                    let current = outcomes.filter { $0.applied.isEmpty && $0.error == nil }.count
                    Output.line("\(outcomes.count) databases (templates + tenants): \(migrated) migrated, \(current) already current, \(failed.count) failed; latest V\(files.last?.version ?? 0)")
                    for outcome in failed { Output.line("  \(outcome.database): \(outcome.error ?? "")") }
                    if outcomes.first?.tenant == nil, outcomes.first?.error != nil {
                        Output.line("  the template failed, so no tenant database was touched")
                    }
                }
                if !failed.isEmpty { throw ExitCode.failure }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each tenant database's schema version and pending, edited or missing migrations.")

        @OptionGroup var fleet: FleetOptions
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let files = try fleet.loadFiles(context)
                let only = try fleet.tenantIDs()
                let statuses = try await SchemaCommand.withFleet(context) { fleet in
                    let migrator = FleetMigrator(migrations: files, logger: context.logger)
                    let targets = try await fleet.targets(only: only)
                    // The template accepts connections only while TemplateDatabase allows them.
                    let template = only == nil ? [try await fleet.template(files).status(server: nil)] : []
                    return template + (try await concurrentMap(targets, concurrency: max(1, targets.count)) { await migrator.status($0) })
                }
                if json {
                    struct Report: Encodable { var latest: Int; var databases: [FleetMigrator.Status] }
                    try Output.json(Report(latest: files.last?.version ?? 0, databases: statuses))
                    return
                }
                Output.line("latest: V\(files.last?.version ?? 0) (\(files.count) files)")
                for status in statuses {
                    var line = "\(status.database)\(status.tenant.map { " (tenant \($0))" } ?? ""): V\(status.version) \(status.state)"
                    if !status.pending.isEmpty { line += ", pending \(status.pending.joined(separator: " "))" }
                    if !status.edited.isEmpty { line += ", EDITED after apply: \(status.edited.joined(separator: " "))" }
                    if !status.missingFiles.isEmpty { line += ", applied but no file: \(status.missingFiles.map { "V\($0)" }.joined(separator: " "))" }
                    if let error = status.error { line += ": \(error)" }
                    Output.line(line)
                }
                let counts = Dictionary(grouping: statuses, by: \.state).mapValues(\.count)
                Output.line(counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            }
        }
    }

    struct Plan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what 'schema migrate' would run, per database.")

        @OptionGroup var fleet: FleetOptions

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let files = try fleet.loadFiles(context)
                let only = try fleet.tenantIDs()
                let statuses = try await SchemaCommand.withFleet(context) { fleet in
                    let migrator = FleetMigrator(migrations: files, logger: context.logger)
                    let targets = try await fleet.targets(only: only)
                    var result = [try await fleet.template(files).status(server: nil)]
                    for target in targets { result.append(await migrator.status(target)) }
                    return result
                }
                let groups = Dictionary(grouping: statuses) { $0.error ?? $0.pending.joined(separator: " ") }
                for (plan, members) in groups.sorted(by: { $0.key < $1.key }) {
                    let names = members.map(\.database).joined(separator: ", ")
                    if members[0].error != nil {
                        Output.line("cannot read \(names): \(plan)")
                    } else {
                        Output.line(plan.isEmpty ? "nothing to run: \(names)" : "would run \(plan) on \(members.count) database(s): \(names)")
                    }
                }
            }
        }
    }
}

extension SchemaFleet {
    /// The default server's template database at `files`.
    func template(_ files: [MigrationFile]) -> TemplateDatabase {
        TemplateDatabase(name: templateDatabase, servers: servers, migrations: files, logger: logger)
    }
}
