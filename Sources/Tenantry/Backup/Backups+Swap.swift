import Foundation
import Logging
import PostgresNIO
import PostgresTools
import TenantryCore

extension Backups {
    /// Under the tenant's command lock: restore into a staging database, verify, migrate if older,
    /// rename, grant, swap.
    func restoreLocked(
        _ record: inout TenantRecord, manifest: BackupManifest, migrations: [MigrationFile], dropPrevious: Bool, newTenant: Bool,
        maxPause: Duration, parts: [String: Int], progress: (@Sendable (String) -> Void)?
    ) async throws -> RestoreReport {
        guard let current = record.databaseName, let role = record.roleName else {
            throw TenantryError(code: .conflict, message: "tenant \(record.id) has no database", tenant: record.id.rawValue)
        }
        var parts = parts
        var clock = ContinuousClock.now
        let stamp = Self.stamp(Date())
        let names = (
            staging: TenantProvisioner.stagingPrefix(database: current) + "r\(stamp)",
            restored: Self.fit(operations.configuration.naming.databaseName(for: record.id), suffix: "_r\(stamp)"),
            previous: Self.fit(current, suffix: "_before_restore_\(stamp)"))
        let admin = try operations.servers.adminURL(server: record.serverName, database: "postgres")
        let provisioner = try operations.provisioner(needsMigrations: false)
        let logger = logger
        // A restore killed after its swap left the replaced database under its name, closed to
        // connections: it is kept the way the swap would have kept it.
        for leftover in try await replacedLeftovers(record.id, current: current, admin: admin) {
            _ = try await retirePrevious(
                leftover, as: Self.fit(leftover, suffix: "_before_restore_\(stamp)"), drop: false, role: role, admin: admin, tenant: record.id)
        }
        // 1. A staging database (dropped if anything fails before the swap).
        try await Database.withConnection(admin, logger: logger) { connection in
            try await provisioner.dropStagingLeftovers(of: current, on: connection)
            try await connection.query(
                PostgresQuery(unsafeSQL: "CREATE DATABASE \(try SQLIdentifier.quoted(names.staging)) TEMPLATE template0"), logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: try TenantMark.markDatabase(names.staging, tenant: record.id)), logger: logger)
        }
        var rows: Int64 = 0
        var version = manifest.schemaVersion
        do {
            progress?("restoring \(manifest.dumpFile) into a new database")
            let stagingURL = admin.with(database: names.staging)
            let output = try await PostgresDump.restore(
                manifest.dumpPath ?? "", into: .init(host: admin.host, port: admin.port, user: admin.user, database: names.staging),
                environment: TenantProvisioner.clientEnvironment(for: admin), privileges: !newTenant)
            guard output.succeeded else {
                throw TenantryError(
                    code: .database, message: "pg_restore of \(manifest.dumpFile) failed: \(Self.firstLine(output)); nothing changed",
                    tenant: record.id.rawValue)
            }
            parts["restore"] = Self.lap(&clock)
            progress?("verifying rows against the manifest")
            rows = try await verify(stagingURL, manifest: manifest, newTenant: newTenant, tenant: record.id)
            if version < (migrations.map(\.version).max() ?? 0) {
                progress?("migrating from schema version \(version)")
                let outcome = await FleetMigrator(migrations: migrations, logger: logger)
                    .migrate(.init(database: names.staging, tenant: record.id, url: stagingURL))
                if let error = outcome.error {
                    throw TenantryError(code: .database, message: "migrating the restored database failed: \(error); nothing changed",
                                        tenant: record.id.rawValue)
                }
                version = outcome.version
            }
            try await Database.withConnection(stagingURL, logger: logger) { connection in
                try await Database.execute(script: try TenantProvisioner.tablePrivileges(role: role), on: connection, logger: logger)
            }
            try await Database.withConnection(admin, logger: logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: """
                    ALTER DATABASE \(try SQLIdentifier.quoted(names.staging)) RENAME TO \(try SQLIdentifier.quoted(names.restored))
                    """), logger: logger)
                try await Database.execute(
                    script: try TenantProvisioner.databasePrivileges(database: names.restored, role: role), on: connection, logger: logger)
            }
            parts["verify"] = Self.lap(&clock)
        } catch {
            await Self.dropQuietly([names.staging, names.restored], admin: admin, logger: logger)
            throw error
        }
        progress?("swapping \(names.restored) in for \(current)")
        let pause = try await swap(&record, current: current, restored: names.restored, version: version, maxPause: maxPause, admin: admin)
        let previous = try await retirePrevious(
            current, as: names.previous, drop: dropPrevious, role: role, admin: admin, tenant: record.id)
        parts["swap"] = Self.lap(&clock)
        return RestoreReport(
            tenant: record.id, source: manifest.tenant, backup: manifest.path ?? "", server: record.serverName ?? ServerDirectory.defaultServerName,
            database: names.restored, previousDatabase: previous, schemaVersion: version, rows: rows, pauseMilliseconds: pause,
            parts: parts, milliseconds: 0)
    }

    /// Every table's rows in the restored database equal the manifest's (a new tenant's copy loses
    /// Tenantry's capture schema first: it belongs to the source tenant's moves).
    private func verify(_ url: PostgresURL, manifest: BackupManifest, newTenant: Bool, tenant: TenantID) async throws -> Int64 {
        let logger = logger
        return try await Database.withConnection(url, logger: logger) { connection in
            var expected = manifest.tables
            if newTenant {
                try await connection.query("DROP SCHEMA IF EXISTS tenantry CASCADE", logger: logger)
                expected = expected.filter { !$0.key.hasPrefix("tenantry.") }
            }
            let counts = try await Self.rowCounts(on: connection, logger: logger)
            let differing = Set(expected.keys).union(counts.keys).filter { expected[$0] != counts[$0] }.sorted()
            guard differing.isEmpty else {
                let shown = differing.prefix(5).map { "\($0): \(counts[$0].map(String.init) ?? "missing") rows, manifest \(expected[$0].map(String.init) ?? "none")" }
                throw TenantryError(
                    code: .database,
                    message: "the restored database differs from the backup's manifest (\(shown.joined(separator: "; "))"
                        + "\(differing.count > 5 ? "; \(differing.count - 5) more" : "")); nothing changed", tenant: tenant.rawValue)
            }
            return counts.values.reduce(0, +)
        }
    }

    /// The swap. In the current database, every table is locked against writes (`EXCLUSIVE`: reads
    /// go on; waits at most `maxPause` for writes in flight, else nothing changed); the catalog then
    /// routes the tenant to `restored` (routers follow by NOTIFY), the current database stops
    /// accepting connections and its sessions end — the writes that waited on the locks never ran,
    /// and the router runs a transaction whose connection ended again on the new route. Returns the
    /// pause in milliseconds.
    private func swap(
        _ record: inout TenantRecord, current: String, restored: String, version: Int, maxPause: Duration, admin: PostgresURL
    ) async throws -> Double {
        let logger = logger
        let quotedCurrent = try SQLIdentifier.quoted(current)
        var flipped = false
        do {
            return try await Database.withConnection(admin, logger: logger) { adminConnection in
                try await Database.withConnection(admin.with(database: current), logger: logger) { fence in
                    try await fence.query("BEGIN", logger: logger)
                    try await fence.query(
                        PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(Cutover.milliseconds(maxPause))ms'"), logger: logger)
                    let tables = try await Self.userTables(on: fence, logger: logger)
                    let started = ContinuousClock.now
                    if !tables.isEmpty {
                        do {
                            try await fence.query(PostgresQuery(unsafeSQL: "LOCK TABLE \(tables.joined(separator: ", ")) IN EXCLUSIVE MODE"), logger: logger)
                        } catch where Database.sqlState(of: error) == "55P03" {
                            throw TenantryError(
                                code: .timeout,
                                message: "restore of tenant \(record.id) aborted: writes in flight did not finish within \(maxPause); "
                                    + "nothing changed, retry", tenant: record.id.rawValue)
                        }
                    }
                    let pid = try await fence.query("SELECT pg_backend_pid()", logger: logger).decode(Int32.self).first { _ in true } ?? 0
                    record.databaseName = restored
                    record.schemaVersion = version
                    try await catalog.upsertTenant(record)
                    flipped = true
                    try await adminConnection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(quotedCurrent) ALLOW_CONNECTIONS false"), logger: logger)
                    try await adminConnection.query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(current) AND pid <> \(pid)", logger: logger)
                    _ = try? await fence.query("ROLLBACK", logger: logger)
                    return Double((ContinuousClock.now - started).wholeMicroseconds) / 1000
                }
            }
        } catch where !flipped {
            await Self.dropQuietly([restored], admin: admin, logger: logger)
            throw error
        }
    }

    /// The replaced database: renamed to `previous` (the tenant role may no longer connect) or dropped.
    private func retirePrevious(
        _ current: String, as previous: String, drop: Bool, role: String, admin: PostgresURL, tenant: TenantID
    ) async throws -> String? {
        let logger = logger
        do {
            return try await Database.withConnection(admin, logger: logger) { connection in
                let quotedCurrent = try SQLIdentifier.quoted(current)
                if drop {
                    try await connection.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(quotedCurrent) WITH (FORCE)"), logger: logger)
                    return nil
                }
                let quotedPrevious = try SQLIdentifier.quoted(previous)
                for attempt in 0..<100 {
                    try await connection.query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(current) AND pid <> pg_backend_pid()",
                        logger: logger)
                    do {
                        try await connection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(quotedCurrent) RENAME TO \(quotedPrevious)"), logger: logger)
                        break
                    } catch where Database.sqlState(of: error) == "55006" && attempt < 99 {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                try await connection.query(PostgresQuery(unsafeSQL: """
                    REVOKE CONNECT, TEMPORARY ON DATABASE \(quotedPrevious) FROM \(try SQLIdentifier.quoted(role));
                    """), logger: logger)
                try await connection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(quotedPrevious) ALLOW_CONNECTIONS true"), logger: logger)
                return previous
            }
        } catch {
            throw TenantryError(
                code: .database,
                message: "tenant \(tenant) now runs on its restored database, but its previous database \(current) could not be "
                    + "\(drop ? "dropped" : "renamed to \(previous)") (\(Database.message(of: error))): do it by hand",
                tenant: tenant.rawValue, underlying: error)
        }
    }

    /// Databases marked as `tenant`'s that take no connections and are not its current one: what
    /// a restore killed between its swap and the rename of the replaced database leaves.
    private func replacedLeftovers(_ tenant: TenantID, current: String, admin: PostgresURL) async throws -> [String] {
        let logger = logger
        return try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query("""
                SELECT datname::text FROM pg_database d
                WHERE NOT datallowconn AND datname <> \(current) AND NOT datistemplate
                  AND shobj_description(d.oid, 'pg_database') = \(TenantMark.text(tenant))
                ORDER BY 1
                """, logger: logger).decode(String.self).reduce(into: [String]()) { $0.append($1) }
        }
    }

    /// Every ordinary table outside the system schemas, quoted `schema.table`.
    static func userTables(on connection: PostgresConnection, logger: Logger) async throws -> [String] {
        var tables: [String] = []
        for try await (schema, table) in try await connection.query("""
            SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
            ORDER BY 1, 2
            """, logger: logger).decode((String, String).self) {
            tables.append("\(try SQLIdentifier.quoted(schema)).\(try SQLIdentifier.quoted(table))")
        }
        return tables
    }

    static func dropQuietly(_ databases: [String], admin: PostgresURL, logger: Logger) async {
        _ = try? await Database.withConnection(admin, logger: logger) { connection in
            for database in databases {
                _ = try? await connection.query(
                    PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(try SQLIdentifier.quoted(database)) WITH (FORCE)"), logger: logger)
            }
        }
    }

    /// `yyyyMMddHHmmss`, UTC.
    static func stamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMddHHmmss"
        return formatter.string(from: date)
    }

    /// `base + suffix` within PostgreSQL's 63 bytes: a long base is cut and given a short hash.
    static func fit(_ base: String, suffix: String) -> String {
        let name = base + suffix
        guard name.utf8.count > 63 else { return name }
        let hash = String(StableHash.fnv1a64(base), radix: 16).prefix(8)
        var cut = base
        while (cut + "_" + hash + suffix).utf8.count > 63 { cut.removeLast() }
        return cut + "_" + hash + suffix
    }
}
