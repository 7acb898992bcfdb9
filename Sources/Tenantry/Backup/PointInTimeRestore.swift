import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// What `tenantry restore --to-time` did (`--json`).
public struct PointInTimeReport: Sendable, Codable, Equatable {
    /// The tenant whose database was recovered.
    public var tenant: TenantID
    /// The tenant now served from the recovered database (`--as-tenant`, else ``tenant``).
    public var restoredAs: TenantID
    /// The tenant's server (whose archive was used).
    public var server: String
    /// The tenant database recovered (its name today, in the catalog).
    public var database: String
    /// The target, in UTC, as given to `recovery_target_time`.
    public var target: String
    /// The base backup recovery started from.
    public var baseBackup: String
    /// When that base backup ended.
    public var baseBackupFinishedAt: Date
    /// The archive held every commit up to this time when the restore began.
    public var archivedUntil: Date
    /// Seconds per part: `prepare` (time, tenant, archive, WAL switched and archived),
    /// `base_extract`, `recovery` (WAL replay until promoted), `dump`, `restore` (restore, verify, swap).
    public var seconds: [String: Double]
    /// The restore of the recovered dump (``Backups/restore(_:from:asTenant:dropPrevious:maxPause:progress:)``).
    public var restore: Backups.RestoreReport

    enum CodingKeys: String, CodingKey {
        case tenant, restoredAs = "restored_as", server, database, target, baseBackup = "base_backup"
        case baseBackupFinishedAt = "base_backup_finished_at", archivedUntil = "archived_until", seconds, restore
    }
}

extension Operations {
    /// Restores `tenant`'s database as it was at `time` (text PostgreSQL reads as a `timestamptz`):
    /// the newest base backup of the tenant's server that ended before it is recovered in a scratch
    /// server from `scratch` (WAL from the server's archive, up to the target, then promoted), the
    /// tenant's database is dumped from it (``Backups/backupDatabase(_:tenant:server:into:logger:)``,
    /// into a temporary directory), the scratch server is removed, and the dump is restored as
    /// ``Backups/restore(_:from:asTenant:dropPrevious:maxPause:progress:)`` does: in place under the
    /// tenant's fence, or as `asTenant`. A time before the oldest base backup or after the newest
    /// archived WAL, a server without an archive, a corrupt base backup or an unknown tenant is one
    /// clear error before anything changes.
    public func restoreToTime(
        _ tenant: TenantID, time: String, asTenant: TenantID? = nil, dropPrevious: Bool = false,
        maxPause: Duration = .seconds(5), scratch: PointInTimeScratchFactory, progress: (@Sendable (String) -> Void)? = nil
    ) async throws -> PointInTimeReport {
        do {
            return try await recoverAndRestore(
                tenant, time: time, asTenant: asTenant, dropPrevious: dropPrevious, maxPause: maxPause, scratch: scratch,
                progress: progress)
        } catch {
            try? await catalog.audit(
                actor: actor, action: "restore.point_in_time", tenant: asTenant ?? tenant, outcome: .failed,
                detail: ["source": tenant.rawValue, "time": String(time.prefix(80)), "error": Database.message(of: error)])
            throw error
        }
    }

    private func recoverAndRestore(
        _ tenant: TenantID, time: String, asTenant: TenantID?, dropPrevious: Bool, maxPause: Duration,
        scratch: PointInTimeScratchFactory, progress: (@Sendable (String) -> Void)?
    ) async throws -> PointInTimeReport {
        let clock = ContinuousClock()
        var lap = clock.now
        var seconds: [String: Double] = [:]
        func finish(_ part: String) {
            seconds[part] = (clock.now - lap).totalSeconds
            lap = clock.now
        }
        let (targetDate, target) = try await pointInTime(time)
        let record = try await catalog.requireTenant(tenant)
        guard record.status == .active, let database = record.databaseName else {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) has no database to restore (status \(record.status.rawValue))",
                tenant: tenant.rawValue)
        }
        try await precheck(record, asTenant: asTenant)
        // Before a cutover or a switch between servers, the database the catalog names today was a
        // copy in the making (or followed another one): not the tenant's data at T.
        if let moved = try await catalog.auditLog(tenant: tenant, limit: 1000).first(where: {
            $0.outcome == .ok && $0.at > targetDate && ["cutover", "move-switch", "move-reverse"].contains($0.action)
        }) {
            throw TenantryError(
                code: .invalidArgument,
                message: "tenant \(tenant)'s writes moved at \(PointInTimeFormat.string(moved.at)) (\(moved.action)), after \(target): "
                    + "its database was not yet where they went at \(target); choose a later time", tenant: tenant.rawValue)
        }
        let server = record.serverName ?? ServerDirectory.defaultServerName
        let url = try archiveServerURL(server)
        let (archive, facts) = try await WALArchive.locate(server: server, url: url, logger: logger)
        let base = try PointInTimeRecovery.pick(
            try archive.baseBackups().filter { $0.systemIdentifier == facts.systemIdentifier }, before: targetDate, server: server)
        progress?("archiving the current WAL of server '\(server)'")
        let archivedUntil = try await archive.archiveNow(server: server, url: url, logger: logger)
        guard targetDate < archivedUntil else {
            throw TenantryError(
                code: .invalidArgument,
                message: "\(target) is after the newest archived WAL of server '\(server)' (it holds commits up to "
                    + "\(PointInTimeFormat.string(archivedUntil))): choose an earlier time")
        }
        finish("prepare")

        let dumps = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-pitr-dump-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dumps, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: dumps) }
        progress?("recovering base backup \((base.path.map { ($0 as NSString).lastPathComponent }) ?? "?") to \(target)")
        let recovery = PointInTimeRecovery(archive: archive, base: base, target: target, superuser: url.user)
        let (manifest, timings) = try await recovery.run(scratch: scratch, logger: logger) { scratchURL in
            progress?("dumping \(database) from the recovered server")
            return try await dumpRecovered(
                scratchURL, database: database, tenant: tenant, server: server, target: target, into: dumps)
        }
        seconds["base_extract"] = timings.baseExtract
        seconds["recovery"] = timings.recovery
        seconds["dump"] = timings.work
        seconds["cleanup"] = timings.cleanup
        lap = clock.now
        var recovered = manifest
        recovered.recoveredTo = targetDate
        if let path = manifest.path { try BackupStore.write(recovered, to: path) }

        let restored = try await backups().restore(
            tenant, from: manifest.path ?? dumps, asTenant: asTenant, dropPrevious: dropPrevious, maxPause: maxPause,
            progress: progress)
        finish("restore")
        try? await catalog.audit(
            actor: actor, action: "restore.point_in_time", tenant: asTenant ?? tenant, outcome: .ok,
            detail: ["source": tenant.rawValue, "target": target, "base_backup": base.path ?? "", "database": restored.database])
        return PointInTimeReport(
            tenant: tenant, restoredAs: asTenant ?? tenant, server: server, database: database, target: target,
            baseBackup: base.path ?? "", baseBackupFinishedAt: base.finishedAt, archivedUntil: archivedUntil, seconds: seconds,
            restore: restored)
    }

    /// Refusals the restore itself would make, made before the recovery's work (the restore checks
    /// again, with the rest of its conditions, under the tenant's lock).
    private func precheck(_ record: TenantRecord, asTenant: TenantID?) async throws {
        if let asTenant {
            guard asTenant != record.id else {
                throw TenantryError(code: .invalidArgument, message: "--as-tenant must name another tenant than \(record.id)")
            }
            guard try await catalog.tenant(asTenant) == nil else {
                throw TenantryError(
                    code: .conflict, message: "tenant \(asTenant) already exists: --as-tenant needs a new tenant id", tenant: asTenant.rawValue)
            }
        } else if record.placement != .dedicated {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(record.id) is not served from its own database (placement \(record.placement.rawValue)): "
                    + "restore it with --as-tenant NEW", tenant: record.id.rawValue)
        }
    }

    /// Dumps `database` from the recovered server as its bootstrap superuser (the role of oid 10:
    /// trust on the scratch server's private socket); a clear error when the database did not exist
    /// at the target time.
    private func dumpRecovered(
        _ scratchURL: PostgresURL, database: String, tenant: TenantID, server: String, target: String, into directory: String
    ) async throws -> BackupManifest {
        let (exists, superuser) = try await Database.withConnection(scratchURL, logger: logger) { connection in
            let rows = try await connection.query("""
                SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = \(database)), (SELECT rolname FROM pg_roles WHERE oid = 10)
                """, logger: logger)
            for try await row in rows.decode((Bool, String).self) { return row }
            return (false, scratchURL.user)
        }
        guard exists else {
            throw TenantryError(
                code: .conflict,
                message: "database \(database) of tenant \(tenant) did not exist on server '\(server)' at \(target): a tenant "
                    + "moved to this server or restored after that time cannot be restored to it from this server's archive",
                tenant: tenant.rawValue)
        }
        let url = scratchURL.with(user: superuser, password: nil).with(database: database)
        return try await Backups.backupDatabase(url, tenant: tenant, server: server, into: directory, logger: logger)
    }
}
