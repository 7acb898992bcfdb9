import Foundation
import Logging
import PostgresNIO
import PostgresTools
import TenantryCore

extension Backups {
    /// What a restore did (`restore --json`).
    public struct RestoreReport: Sendable, Codable, Equatable {
        /// The tenant now served from the restored database.
        public var tenant: TenantID
        /// The tenant the backup is of (differs with `--as-tenant`).
        public var source: TenantID
        /// The backup's manifest.
        public var backup: String
        /// The server.
        public var server: String
        /// The restored database, now the tenant's.
        public var database: String
        /// The database it replaced, kept under this name (nil when dropped or for a new tenant).
        public var previousDatabase: String?
        /// The schema version of the backup, and the version after migrating it (if it was older).
        public var schemaVersion: Int
        /// Rows restored (all tables), equal to the manifest's.
        public var rows: Int64
        /// How long writes waited at the swap.
        public var pauseMilliseconds: Double
        /// Time per part: `checksum`, `restore`, `verify`, `swap` (and, for a point in time, the
        /// caller's own parts).
        public var parts: [String: Int]
        /// Wall time.
        public var milliseconds: Int
    }

    /// Restores `tenant`'s backup at `path` (a manifest, a dump, or a backup directory: its newest
    /// backup of `tenant`) into a new database and verifies it (checksum first; schema version,
    /// every table's rows against the manifest), then swaps it in under the tenant's fence: writes
    /// pause, the catalog routes the tenant to the restored database, the old one's sessions end and
    /// it is kept as `…_before_restore_<time>` (no login for the tenant role) unless `dropPrevious`.
    /// With `asTenant` the backup becomes a new tenant (provisioned on the source tenant's server)
    /// for inspection, and `tenant` is not touched. Anything that fails before the swap changes nothing.
    public func restore(
        _ tenant: TenantID, from path: String, asTenant: TenantID? = nil, dropPrevious: Bool = false,
        maxPause: Duration = .seconds(5), progress: (@Sendable (String) -> Void)? = nil
    ) async throws -> RestoreReport {
        let started = ContinuousClock.now
        let target = asTenant ?? tenant
        do {
            let manifest = try BackupStore.resolve(path, tenant: tenant)
            guard manifest.tenant == tenant else {
                throw TenantryError(
                    code: .invalidArgument, message: "the backup \(manifest.path ?? path) is of tenant \(manifest.tenant), not \(tenant)",
                    tenant: tenant.rawValue)
            }
            // Refusals that need no reading of the dump come first.
            _ = try await restoreTarget(tenant, asTenant: asTenant, manifest: manifest, provisioning: false, progress: nil)
            var parts: [String: Int] = [:]
            var clock = ContinuousClock.now
            progress?("checking \(manifest.dumpFile) (\(ByteSize.format(manifest.bytes)))")
            try Self.checkIntegrity(manifest)
            let migrations = try fleetMigrations()
            let latest = migrations.map(\.version).max() ?? manifest.schemaVersion
            guard manifest.schemaVersion <= latest else {
                throw TenantryError(
                    code: .invalidArgument,
                    message: "the backup has schema version \(manifest.schemaVersion), newer than this fleet's \(latest): "
                        + "migrate the fleet first (tenantry schema migrate)", tenant: tenant.rawValue)
            }
            parts["checksum"] = Self.lap(&clock)
            let report = try await catalog.exclusively(target, "restore") {
                guard var record = try await restoreTarget(tenant, asTenant: asTenant, manifest: manifest, provisioning: true, progress: progress)
                else { throw TenantryError(code: .conflict, message: "tenant \(target) vanished", tenant: target.rawValue) }
                do {
                    let report = try await restoreLocked(
                        &record, manifest: manifest, migrations: migrations, dropPrevious: dropPrevious || asTenant != nil,
                        newTenant: asTenant != nil, maxPause: maxPause, parts: parts, progress: progress)
                    if asTenant != nil {
                        // Served from its own database from now on: it has no rows in unified.
                        record.placement = .dedicated
                        try await catalog.upsertTenant(record)
                    }
                    return report
                } catch {
                    if let asTenant { await discardNewTenant(asTenant) }
                    throw error
                }
            }
            var finished = report
            finished.milliseconds = Int((ContinuousClock.now - started).wholeMilliseconds)
            try? await catalog.audit(
                actor: operations.actor, action: "restore", tenant: target, outcome: .ok,
                detail: ["backup": manifest.dumpFile, "source": tenant.rawValue, "database": report.database,
                         "previous": report.previousDatabase ?? "", "rows": "\(report.rows)",
                         "pause_ms": String(format: "%.1f", report.pauseMilliseconds)])
            return finished
        } catch {
            try? await catalog.audit(
                actor: operations.actor, action: "restore", tenant: target, outcome: .failed, detail: ["error": Database.message(of: error)])
            throw error
        }
    }

    /// The checksum and size of the dump against its manifest.
    static func checkIntegrity(_ manifest: BackupManifest) throws {
        guard let dump = manifest.dumpPath, FileManager.default.fileExists(atPath: dump) else {
            throw TenantryError(code: .invalidArgument, message: "the dump \(manifest.dumpFile) of backup \(manifest.path ?? "") is missing")
        }
        let (sha256, bytes) = try BackupStore.sha256(of: dump)
        guard sha256 == manifest.sha256, bytes == manifest.bytes else {
            throw TenantryError(
                code: .invalidArgument,
                message: "the backup \(dump) is corrupt: its SHA-256 or size differs from the manifest's (\(bytes) bytes, "
                    + "manifest \(manifest.bytes)); nothing was restored", tenant: manifest.tenant.rawValue)
        }
    }

    /// The fleet's migration files, when the migrations directory exists.
    func fleetMigrations() throws -> [MigrationFile] {
        let directory = operations.configuration.migrationsDirectory
        guard FileManager.default.fileExists(atPath: directory) else { return [] }
        return try MigrationFile.load(directory: directory)
    }

    /// The record of the tenant the backup goes to: `tenant` itself (dedicated, not syncing back to
    /// unified, not moving between servers), or `asTenant`, provisioned now (when `provisioning`;
    /// otherwise only checked, and the result is nil).
    private func restoreTarget(
        _ tenant: TenantID, asTenant: TenantID?, manifest: BackupManifest, provisioning: Bool, progress: (@Sendable (String) -> Void)?
    ) async throws -> TenantRecord? {
        if let asTenant {
            guard asTenant != tenant else {
                throw TenantryError(code: .invalidArgument, message: "--as-tenant must name another tenant than \(tenant)")
            }
            guard try await catalog.tenant(asTenant) == nil else {
                throw TenantryError(
                    code: .conflict, message: "tenant \(asTenant) already exists: --as-tenant needs a new tenant id", tenant: asTenant.rawValue)
            }
            // Not registered yet is not enough: a shop still in unified that was never registered
            // would be routed to the copy.
            if (try? await operations.unifiedTenants())?.contains(asTenant) == true {
                throw TenantryError(
                    code: .conflict, message: "tenant \(asTenant) has rows in the unified database: --as-tenant needs a new tenant id",
                    tenant: asTenant.rawValue)
            }
            guard provisioning else { return nil }
            let source = try await catalog.tenant(tenant)
            let server = source?.serverName
                ?? (operations.servers.servers.contains { $0.name == manifest.server } ? manifest.server : nil)
            progress?("provisioning tenant \(asTenant)")
            try await catalog.registerTenants([asTenant])
            do {
                _ = try await operations.provisioner().provision(asTenant, server: server)
            } catch {
                await discardNewTenant(asTenant)
                throw error
            }
            return try await catalog.requireTenant(asTenant)
        }
        let record = try await catalog.requireTenant(tenant)
        guard record.status == .active, record.placement == .dedicated, record.databaseName != nil else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) is not served from its own database (placement \(record.placement.rawValue)): "
                    + "restore it with --as-tenant NEW", tenant: tenant.rawValue)
        }
        if try await catalog.activeServerMove(tenant) != nil {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) is moving between servers: finish or cancel the move first", tenant: tenant.rawValue)
        }
        if let phase = try await catalog.move(tenant)?.phase, ![.shared, .provisioned, .retired].contains(phase) {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) is \(phase) and its writes still sync back to the unified database: a restore would make "
                    + "the two differ; retire the legacy rows first (tenantry retire-legacy) or restore with --as-tenant NEW",
                tenant: tenant.rawValue)
        }
        return record
    }

    /// Undoes the provisioning of a `--as-tenant` tenant whose restore failed: its database and
    /// role are dropped and it leaves the catalog, so the command can simply be run again.
    private func discardNewTenant(_ tenant: TenantID) async {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-discard-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        if let provisioner = try? operations.provisioner(needsMigrations: false),
           (try? await catalog.tenant(tenant))??.databaseName != nil {
            _ = try? await provisioner.deprovision(tenant, archiveDirectory: scratch)
        }
        try? await catalog.deleteTenant(tenant)
    }

    static func lap(_ clock: inout ContinuousClock.Instant) -> Int {
        let now = ContinuousClock.now
        defer { clock = now }
        return Int((now - clock).wholeMilliseconds)
    }
}
