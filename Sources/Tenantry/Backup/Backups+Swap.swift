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
        // A restore killed during its swap, before the catalog changed, left the current database
        // closed to connections: it is reopened (nothing else had changed).
        try await reopenIfClosed(current, admin: admin)
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
            parts["verify"] = Self.lap(&clock)
        } catch {
            await Self.dropQuietly([names.staging], admin: admin, logger: logger)
            throw error
        }
        progress?("swapping \(names.restored) in for \(current)")
        let pause = try await swap(
            record, current: current, names: (names.staging, names.restored), role: role, version: version, maxPause: maxPause, admin: admin)
        record.databaseName = names.restored
        record.schemaVersion = version
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

    /// The swap. In the current database every table is locked against writes (`EXCLUSIVE`: reads go
    /// on; writes in flight get `maxPause` to finish, else nothing changed). Still under the locks,
    /// the current database stops taking connections and every other session on it is ended and
    /// waited for — the writes that waited on the locks never ran, and no session is left that could
    /// write there once the locks go. Then the staging database takes its final name and the
    /// tenant's grants, and the catalog names it (a compare-and-set on the current name); routers
    /// follow by NOTIFY, and run a transaction whose connection ended this way again on the new
    /// route. Anything that fails before the catalog changed reopens the current database and drops
    /// the new one: nothing changed. Returns the pause in milliseconds.
    private func swap(
        _ record: TenantRecord, current: String, names: (staging: String, restored: String), role: String, version: Int,
        maxPause: Duration, admin: PostgresURL
    ) async throws -> Double {
        let logger = logger
        let quotedCurrent = try SQLIdentifier.quoted(current)
        var (closed, renamed, flipped) = (false, false, false)
        do {
            return try await Database.withConnection(admin, logger: logger) { adminConnection in
                try await Database.withConnection(admin.with(database: current), logger: logger) { fence in
                    try await fence.query("BEGIN", logger: logger)
                    try await fence.query(
                        PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(Cutover.milliseconds(maxPause))ms'"), logger: logger)
                    let tables = try await Self.tables(on: fence, logger: logger).map {
                        "\(try SQLIdentifier.quoted($0.schema)).\(try SQLIdentifier.quoted($0.table))"
                    }
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
                    try await adminConnection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(quotedCurrent) ALLOW_CONNECTIONS false"), logger: logger)
                    closed = true
                    try await endSessions(on: current, except: pid, admin: adminConnection, tenant: record.id)
                    try await adminConnection.query(PostgresQuery(unsafeSQL: """
                        ALTER DATABASE \(try SQLIdentifier.quoted(names.staging)) RENAME TO \(try SQLIdentifier.quoted(names.restored))
                        """), logger: logger)
                    renamed = true
                    try await Database.execute(
                        script: try TenantProvisioner.databasePrivileges(database: names.restored, role: role), on: adminConnection, logger: logger)
                    guard try await catalog.replaceDatabase(record.id, expected: current, with: names.restored, schemaVersion: version) else {
                        throw TenantryError(
                            code: .conflict,
                            message: "restore of tenant \(record.id) aborted: the catalog no longer names \(current) (another command "
                                + "changed the tenant); nothing changed", tenant: record.id.rawValue)
                    }
                    flipped = true
                    _ = try? await fence.query("ROLLBACK", logger: logger)
                    return Double((ContinuousClock.now - started).wholeMicroseconds) / 1000
                }
            }
        } catch where !flipped {
            _ = try? await Database.withConnection(admin, logger: logger) { connection in
                if closed {
                    try await connection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(quotedCurrent) ALLOW_CONNECTIONS true"), logger: logger)
                }
            }
            await Self.dropQuietly(renamed ? [names.restored] : [names.staging], admin: admin, logger: logger)
            throw error
        }
    }

    /// Ends every session on `database` but `pid`, and waits until they are gone (at most ~10 s).
    private func endSessions(on database: String, except pid: Int32, admin: PostgresConnection, tenant: TenantID) async throws {
        for _ in 0..<20 {
            var left = 0
            for try await ended in try await admin.query("""
                SELECT pg_terminate_backend(pid, 500) FROM pg_stat_activity WHERE datname = \(database) AND pid <> \(pid)
                """, logger: logger).decode(Bool.self) where !ended { left += 1 }
            let remaining = try await admin.query(
                "SELECT count(*)::int FROM pg_stat_activity WHERE datname = \(database) AND pid <> \(pid)", logger: logger)
                .decode(Int.self).first { _ in true } ?? 0
            if left == 0 && remaining == 0 { return }
        }
        throw TenantryError(
            code: .timeout, message: "restore of tenant \(tenant) aborted: sessions on \(database) did not end; nothing changed, retry",
            tenant: tenant.rawValue)
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

    /// Lets `database` take connections again if it does not.
    private func reopenIfClosed(_ database: String, admin: PostgresURL) async throws {
        let logger = logger
        try await Database.withConnection(admin, logger: logger) { connection in
            let open = try await connection.query("SELECT datallowconn FROM pg_database WHERE datname = \(database)", logger: logger)
                .decode(Bool.self).first { _ in true }
            if open == false {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "ALTER DATABASE \(try SQLIdentifier.quoted(database)) ALLOW_CONNECTIONS true"), logger: logger)
            }
        }
    }

    /// Databases marked as `tenant`'s, named after its database, that take no connections and are
    /// not its current one: what a restore killed between its swap and the rename of the replaced
    /// database leaves. (The name keeps another installation's tenant with the same id, on the
    /// same server, out of it.)
    private func replacedLeftovers(_ tenant: TenantID, current: String, admin: PostgresURL) async throws -> [String] {
        let logger = logger
        return try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query("""
                SELECT datname::text FROM pg_database d
                WHERE NOT datallowconn AND datname <> \(current) AND NOT datistemplate
                  AND starts_with(datname, \(operations.configuration.naming.databaseName(for: tenant)))
                  AND shobj_description(d.oid, 'pg_database') = \(TenantMark.text(tenant))
                ORDER BY 1
                """, logger: logger).decode(String.self).reduce(into: [String]()) { $0.append($1) }
        }
    }

    static func dropQuietly(_ databases: [String], admin: PostgresURL, logger: Logger) async {
        _ = try? await Database.withConnection(admin, logger: logger) { connection in
            for database in databases {
                _ = try? await connection.query(
                    PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(try SQLIdentifier.quoted(database)) WITH (FORCE)"), logger: logger)
            }
        }
    }

    /// `yyyyMMddHHmmssSSS`, UTC (two restores of a tenant are serialised by its command lock, and
    /// each takes longer than a millisecond).
    static func stamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMddHHmmssSSS"
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
