import ArgumentParser
import EmbeddedPostgres
import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

/// The fleet of ``BackupBench``: a ``MoveBed`` whose shops are all provisioned and copied into
/// their tenant databases, one of them retired (restorable in place), a work directory for the
/// migrations, the retirement archive and the backups.
struct BackupFleet: Sendable {
    let bed: MoveBed
    let tenants: [TenantID]
    /// Tenant database names, as the catalog had them after the setup.
    let databases: [TenantID: String]
    let restored: TenantID
    let directory: String
    /// The server's postmaster, for its CPU time (``CPUTime``).
    var serverPID: Int?

    /// Builds the fleet (nothing timed): `tenants` shops of about `rowsPerShop` rows, all provisioned
    /// (4 at a time) and copied (`migrateData`, 2 at a time); `restored` cut over and retired.
    static func make(admin: PostgresURL, tenants: Int, rowsPerShop: Int, restored: TenantID, quiet: Bool) async throws -> BackupFleet {
        let ids = try (1...tenants).map { try TenantID("\($0)") }
        let bed = try await MoveBed.make(admin: admin, shops: tenants, rowsPerShop: rowsPerShop, provision: ids, quiet: quiet)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-bench-backup-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: "\(directory)/migrations", withIntermediateDirectories: true)
        try await Self.writeMigration(bed, into: "\(directory)/migrations")
        let bare = BackupFleet(bed: bed, tenants: ids, databases: [:], restored: restored, directory: directory, serverPID: nil)
        let names = try await bare.withOperations { operations -> [TenantID: String] in
            let move = try await operations.move()
            if !quiet { Bench.note("copying the rows of \(tenants) tenants into their databases (migrate-data, 2 at a time)…") }
            let copied = try await move.migrateData(.all, concurrency: 2, captureTimeout: .seconds(120))
            guard copied.failed.isEmpty else { throw ValidationError("migrate-data failed: \(copied.failed)") }
            if !quiet { Bench.note("cutover and retire-legacy of tenant \(restored) (restored in place later)…") }
            let cut = try await move.cutover(.tenants([restored]), maxPause: .seconds(5), retries: 5)
            guard cut.failed.isEmpty else { throw ValidationError("cutover failed: \(cut.failed)") }
            _ = try await move.retire([restored], archiveDirectory: "\(directory)/archive", dryRun: false)
            var names: [TenantID: String] = [:]
            for record in try await operations.catalog.tenants() { names[record.id] = record.databaseName }
            return names
        }
        var fleet = BackupFleet(bed: bed, tenants: ids, databases: names, restored: restored, directory: directory, serverPID: nil)
        fleet.serverPID = try await fleet.postmasterPID()
        return fleet
    }

    /// The tenant schema as the fleet's migration V1 (derived from HandyShop's schema in a scratch
    /// database, exactly as ``MoveBed`` provisioned with): a restore reads the fleet's migrations.
    static func writeMigration(_ bed: MoveBed, into migrations: String) async throws {
        let scratch = bed.admin.with(database: "bench_schema")
        try await MoveBed.execute("CREATE DATABASE bench_schema", on: bed.admin)
        let ddl = try await Database.withConnection(scratch, logger: Bench.logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: Bench.logger)
            let unified = try await SchemaIntrospector(logger: Bench.logger).read(connection)
            return try SchemaDDL.render(try TenantSchemaDeriver().derive(from: unified).schema)
        }
        try await MoveBed.execute("DROP DATABASE bench_schema", on: bed.admin)
        try ddl.write(toFile: "\(migrations)/V1__tenant_schema.sql", atomically: true, encoding: .utf8)
    }

    var configuration: TenantryConfiguration {
        var configuration = TenantryConfiguration()
        configuration.databaseURL = bed.unifiedURL
        configuration.keyring = bed.keyring
        configuration.naming = MoveBed.naming
        configuration.migrationsDirectory = "\(directory)/migrations"
        return configuration
    }

    func withOperations<T: Sendable>(_ body: @escaping @Sendable (Operations) async throws -> T) async throws -> T {
        try await Operations.with(
            configuration: configuration, databaseURL: bed.unifiedURL, actor: "bench", logger: Bench.logger, body)
    }

    func removeFiles() { try? FileManager.default.removeItem(atPath: directory) }

    func url(_ tenant: TenantID) -> PostgresURL { bed.admin.with(database: databases[tenant] ?? "") }

    /// The environment of the PostgreSQL client programs (password and TLS mode, nothing else of ours).
    var clientEnvironment: [String: String] {
        ProcessRunner.minimalEnvironment(["PGPASSWORD": bed.admin.password ?? "", "PGSSLMODE": "disable"])
    }

    func target(_ tenant: TenantID) -> PostgresDump.Target {
        .init(host: bed.admin.host, port: bed.admin.port, user: bed.admin.user, database: databases[tenant] ?? "")
    }

    /// The fleet's size: `fleet_bytes` (`pg_database_size` of every tenant database, catalogs
    /// included), `fleet_data_bytes` (tenant tables, indexes and TOAST), `fleet_rows`, `tenant_tables`.
    func size() async throws -> [String: any Sendable] {
        let names = tenants.compactMap { databases[$0] }
        let onDisk = try await Database.withConnection(bed.admin, logger: Bench.logger) { connection in
            try await connection.query(
                "SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint FROM pg_database WHERE datname = ANY(\(names))",
                logger: Bench.logger).decode(Int64.self).first { _ in true } ?? 0
        }
        var data: Int64 = 0
        var rows: Int64 = 0
        var tables = 0
        for tenant in tenants {
            let (bytes, counts) = try await Database.withConnection(url(tenant), logger: Bench.logger) { connection in
                let bytes = try await connection.query("""
                    SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'
                    """, logger: Bench.logger).decode(Int64.self).first { _ in true } ?? 0
                return (bytes, try await BackupProfile.rowCounts(on: connection))
            }
            data += bytes
            rows += counts.values.reduce(0, +)
            tables = max(tables, counts.count)
        }
        return ["fleet_bytes": onDisk, "fleet_data_bytes": data, "fleet_rows": rows, "tenant_tables": tables]
    }

    /// Three tenants dumped by each contestant and thrown away (program files and catalogs cached).
    func warmUp() async throws {
        let scratch = "\(directory)/warm"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        for tenant in tenants.prefix(3) {
            _ = try await PostgresDump.custom(target(tenant), to: "\(scratch)/\(tenant.rawValue).dump", environment: clientEnvironment)
            _ = try await Backups.backupDatabase(url(tenant), tenant: tenant, server: "default", into: scratch, logger: Bench.logger)
        }
    }

    /// One run of a contestant over the fleet.
    struct AllRun: Sendable {
        var milliseconds: Int
        var bytes: Int64
        /// Per tenant (manifest start to end), for backupAll.
        var tenantMedianMs = 0
        var tenantP95Ms = 0
        /// CPU time spent meanwhile (this process, its children, the server).
        var cpu = CPUTime()
        /// The machine's 1-minute load average at the end.
        var load = 0.0
    }

    /// The anchor: `pg_dump -Fc` of every tenant database, one after another, into a fresh directory
    /// (removed afterwards).
    func sequentialPgDump() async throws -> AllRun {
        let out = "\(directory)/anchor-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let environment = clientEnvironment
        let targets = tenants.map { target($0) }
        try await MoveBed.execute("CHECKPOINT", on: bed.admin)
        let cpu = CPUTime.now(server: serverPID)
        let seconds = try await Bench.time {
            for target in targets {
                let output = try await PostgresDump.custom(target, to: "\(out)/\(target.database).dump", environment: environment)
                guard output.succeeded else { throw ValidationError("pg_dump of \(target.database) failed: \(output.text.prefix(200))") }
            }
        }
        return AllRun(
            milliseconds: Int(seconds * 1000), bytes: try Self.bytes(under: out), cpu: CPUTime.now(server: serverPID) - cpu,
            load: Self.loadAverage())
    }

    /// `Backups.backupAll` at `concurrency` into a fresh store (kept for the default concurrency's
    /// first round: the restore reads it).
    func backupAll(_ operations: Operations, concurrency: Int, round: Int) async throws -> AllRun {
        let store = BackupStore(root: storePath(concurrency, round: round))
        let keep = concurrency == BackupBench.defaultConcurrency && round == 1
        try await MoveBed.execute("CHECKPOINT", on: bed.admin)
        let cpu = CPUTime.now(server: serverPID)
        var report: Backups.FleetReport?
        let seconds = try await Bench.time {
            report = try await operations.backups().backupAll(into: store, concurrency: concurrency)
        }
        let used = CPUTime.now(server: serverPID) - cpu
        guard let report, report.failed.isEmpty, report.written.count == tenants.count else {
            throw ValidationError("backupAll failed: \(report?.failed ?? [:]), \(report?.written.count ?? 0) written")
        }
        if !keep { try? FileManager.default.removeItem(atPath: store.root) }
        let perTenant = report.written.map { Int(($0.finishedAt.timeIntervalSince($0.startedAt) * 1000).rounded()) }
        return AllRun(
            milliseconds: Int(seconds * 1000), bytes: report.bytes,
            tenantMedianMs: BackupProfile.percentile(perTenant, 0.5), tenantP95Ms: BackupProfile.percentile(perTenant, 0.95),
            cpu: used, load: Self.loadAverage())
    }

    func storePath(_ concurrency: Int, round: Int) -> String { "\(directory)/backups-c\(concurrency)-r\(round)" }

    static func bytes(under directory: String) throws -> Int64 {
        var total: Int64 = 0
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) {
            let attributes = try FileManager.default.attributesOfItem(atPath: "\(directory)/\(file)")
            total += (attributes[.size] as? NSNumber)?.int64Value ?? 0
        }
        return total
    }
}
