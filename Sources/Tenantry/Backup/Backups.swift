import Foundation
import Logging
import PostgresNIO
import PostgresTools
import TenantryCore

/// Per-tenant logical backups and restores (`tenantry backup`, `tenantry restore`): a `pg_dump`
/// (custom format) of each tenant database with a ``BackupManifest``, in a ``BackupStore``.
///
/// ```swift
/// let backups = operations.backups()
/// let manifest = try await backups.backup(TenantID("42"), into: BackupStore(root: "/var/backups/tenantry"))
/// let report = try await backups.restore(TenantID("42"), from: manifest.path!, asTenant: nil, dropPrevious: false)
/// ```
public struct Backups: Sendable {
    /// The operations (catalog, servers, configuration, actor).
    public var operations: Operations
    var logger: Logger { operations.logger }
    var catalog: Catalog { operations.catalog }

    /// Backups over `operations`.
    public init(operations: Operations) {
        self.operations = operations
    }

    /// Backs up `tenant`'s database into `store`: dump and manifest written atomically, 0600.
    /// The tenant must be served from its database (active, placement dedicated).
    @discardableResult
    public func backup(_ tenant: TenantID, into store: BackupStore) async throws -> BackupManifest {
        let record = try await catalog.requireTenant(tenant)
        guard record.status == .active, let database = record.databaseName else {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) has no database to back up (status \(record.status.rawValue))",
                tenant: tenant.rawValue)
        }
        // A tenant still served from unified has a database that is a copy in the making (or none
        // of its rows yet): backing it up would label a partial copy as the tenant's backup.
        guard record.placement == .dedicated else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) is served from the unified database: its own database is not authoritative yet "
                    + "(back up the unified database instead)", tenant: tenant.rawValue)
        }
        let url = try operations.servers.adminURL(server: record.serverName, database: database)
        do {
            let manifest = try await Self.backupDatabase(
                url, tenant: tenant, server: record.serverName ?? ServerDirectory.defaultServerName, into: store.root, logger: logger)
            try? await catalog.audit(
                actor: operations.actor, action: "backup", tenant: tenant, outcome: .ok,
                detail: ["file": manifest.dumpFile, "bytes": "\(manifest.bytes)", "sha256": manifest.sha256])
            return manifest
        } catch {
            try? await catalog.audit(
                actor: operations.actor, action: "backup", tenant: tenant, outcome: .failed, detail: ["error": Database.message(of: error)])
            throw error
        }
    }

    /// A backup of the database at `url` (an admin login) as `tenant`'s, from `server`, into
    /// `<directory>/<tenant>/`: in one `REPEATABLE READ` transaction the snapshot is exported, the
    /// schema version and every table's rows are read in it, and `pg_dump --snapshot` dumps exactly
    /// that state; the archive is then checked with `pg_restore --list`, hashed, flushed and renamed,
    /// and the manifest written last. Nothing is left under a final name on failure.
    public static func backupDatabase(
        _ url: PostgresURL, tenant: TenantID, server: String, into directory: String, logger: Logger
    ) async throws -> BackupManifest {
        let store = BackupStore(root: directory)
        let folder = try store.directory(for: tenant)
        let started = Date()
        let name = BackupStore.baseName(tenant, at: started)
        let dumpPath = (folder as NSString).appendingPathComponent(name + ".dump")
        let partial = dumpPath + ".partial"
        defer { try? FileManager.default.removeItem(atPath: partial) }
        let environment = TenantProvisioner.clientEnvironment(for: url)
        var manifest = try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", logger: logger)
            let snapshot = try await connection.query("SELECT pg_export_snapshot()", logger: logger).decode(String.self)
                .first { _ in true } ?? ""
            let version = try await connection.query(
                "SELECT current_setting('server_version'), to_regclass('public.tenantry_schema_migrations') IS NOT NULL", logger: logger)
                .decode((String, Bool).self).first { _ in true } ?? ("", false)
            var schemaVersion = 0
            if version.1 {
                schemaVersion = try await connection.query(
                    "SELECT coalesce(max(version), 0)::int FROM tenantry_schema_migrations", logger: logger)
                    .decode(Int.self).first { _ in true } ?? 0
            }
            let tables = try await rowCounts(on: connection, logger: logger)
            let output = try await PostgresDump.custom(
                .init(host: url.host, port: url.port, user: url.user, database: url.database), to: partial,
                environment: environment, snapshot: snapshot)
            try await connection.query("COMMIT", logger: logger)
            guard output.succeeded else {
                throw TenantryError(
                    code: .database, message: "pg_dump of \(url.database) failed: \(firstLine(output))", tenant: tenant.rawValue)
            }
            return BackupManifest(
                format: 1, tenant: tenant, server: server, database: url.database, schemaVersion: schemaVersion, bytes: 0,
                sha256: "", startedAt: started, finishedAt: started, postgresVersion: version.0, tables: tables,
                dumpFile: name + ".dump")
        }
        let listed = try await PostgresDump.list(partial, environment: environment)
        guard listed.succeeded else {
            throw TenantryError(code: .database, message: "the dump of \(url.database) is unreadable: \(firstLine(listed))", tenant: tenant.rawValue)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: partial)
        try BackupStore.sync(partial)
        (manifest.sha256, manifest.bytes) = try BackupStore.sha256(of: partial)
        try BackupStore.rename(partial, to: dumpPath)
        manifest.finishedAt = Date()
        let manifestPath = (folder as NSString).appendingPathComponent(name + ".json")
        try BackupStore.write(manifest, to: manifestPath)
        manifest.path = manifestPath
        logger.info("backed up", metadata: [
            LogMetadataKey.tenant: "\(tenant)", "backup.file": "\(dumpPath)", "backup.bytes": "\(manifest.bytes)"])
        return manifest
    }

    /// Rows of every ordinary table outside the system schemas (``tables(on:logger:)``), as
    /// `schema.table`, in one statement.
    public static func rowCounts(on connection: PostgresConnection, logger: Logger) async throws -> [String: Int64] {
        let tables = try await Self.tables(on: connection, logger: logger)
        guard !tables.isEmpty else { return [:] }
        let sql = try tables.map { schema, table in
            "SELECT \(SchemaDDL.literal("\(schema).\(table)")), count(*) FROM \(try SQLIdentifier.quoted(schema)).\(try SQLIdentifier.quoted(table))"
        }.joined(separator: " UNION ALL ")
        var counts: [String: Int64] = [:]
        for try await (name, count) in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode((String, Int64).self) {
            counts[name] = count
        }
        return counts
    }

    /// Every ordinary (or partitioned) table outside the system schemas, as (schema, table), sorted:
    /// what a backup counts and a restore's swap locks.
    static func tables(on connection: PostgresConnection, logger: Logger) async throws -> [(schema: String, table: String)] {
        var tables: [(schema: String, table: String)] = []
        for try await (schema, table) in try await connection.query("""
            SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
            ORDER BY 1, 2
            """, logger: logger).decode((String, String).self) { tables.append((schema, table)) }
        return tables
    }

    static func firstLine(_ output: ProcessRunner.Output) -> String {
        output.text.split(separator: "\n").first.map(String.init) ?? "exit \(output.status)"
    }
}

extension Operations {
    /// Per-tenant backups and restores over these operations.
    public func backups() -> Backups { Backups(operations: self) }
}
