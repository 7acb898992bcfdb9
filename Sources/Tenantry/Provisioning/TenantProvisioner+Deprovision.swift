import Foundation
import Logging
import PostgresNIO
import PostgresTools
import TenantryCore

extension TenantProvisioner {
    /// What a deprovision did.
    public struct DeprovisionOutcome: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: String
        /// The database that was dropped.
        public var database: String
        /// The archive (pg_dump custom format), readable by `pg_restore`.
        public var archive: String
        /// Its size in bytes.
        public var archiveBytes: Int
    }

    /// Archives the tenant database with `pg_dump -Fc` into `archiveDirectory`, then drops the
    /// database and the role and removes the credentials. Refused while the tenant's data lives only
    /// in its database (placement `dedicated`, or a move at `cutover` or later), and when the
    /// database or role does not carry the tenant's mark (``TenantMark``). Nothing is dropped when
    /// the archive fails.
    ///
    /// A tenant whose move is under way before cutover (`copying`, `syncing`, `reads_switched`:
    /// capture on, its changes queued in the unified database) is moved back first, as
    /// `tenantry rollback` does, by `abandonMove` (``MoveOperations/rollback(_:maxPause:progress:)``):
    /// capture off, its queued changes, dead letters and capture state cleared, reads back on the
    /// unified database, phase `shared`. Nothing is lost: its data is still in the unified database.
    /// Without `abandonMove` such a tenant is refused.
    public func deprovision(
        _ tenant: TenantID, archiveDirectory: String, abandonMove: (@Sendable (TenantID) async throws -> Void)? = nil
    ) async throws -> DeprovisionOutcome {
        try await withTenantLock(tenant) {
            let record = try await catalog.requireTenant(tenant)
            guard let database = record.databaseName, record.status != .deprovisioned else {
                throw TenantryError(code: .conflict, message: "tenant \(tenant) has no database to deprovision", tenant: tenant.rawValue)
            }
            let phase = try await catalog.move(tenant)?.phase ?? .shared
            guard record.placement == .shared, ![.cutover, .dedicated, .retired].contains(phase) else {
                throw TenantryError(
                    code: .conflict,
                    message: "tenant \(tenant)'s data is served from its database (placement dedicated, phase \(phase.rawValue)): "
                        + "roll the move back first (tenantry rollback --tenant \(tenant))", tenant: tenant.rawValue)
            }
            let moving = [.copying, .syncing, .readsSwitched].contains(phase)
            if moving, abandonMove == nil {
                throw TenantryError(
                    code: .conflict,
                    message: "tenant \(tenant) is \(phase.rawValue) (capture on): roll the move back first (tenantry rollback --tenant \(tenant))",
                    tenant: tenant.rawValue)
            }
            let admin = try servers.adminURL(server: record.serverName, database: database)
            let postgres = admin.with(database: "postgres")
            let logger = logger
            let dropRole = try await Database.withConnection(postgres, logger: logger) { connection in
                try await checkMarks(tenant, database: database, role: record.roleName, on: connection)
            }
            let archive = try await Self.archive(admin, into: archiveDirectory, name: database, logger: logger)
            let size = (try? FileManager.default.attributesOfItem(atPath: archive)[.size] as? Int) ?? 0
            if moving, let abandonMove { try await abandonMove(tenant) }

            var updated = record
            updated.status = .deprovisioning
            try await catalog.upsertTenant(updated)
            try await Self.execute(
                "DROP DATABASE IF EXISTS \(try SQLIdentifier.quoted(database)) WITH (FORCE)", on: postgres, logger: logger)
            if let role = record.roleName, dropRole {
                try await Self.execute("DROP ROLE IF EXISTS \(try SQLIdentifier.quoted(role))", on: postgres, logger: logger)
            }
            try await catalog.deleteCredential(tenant)
            updated.status = .deprovisioned
            updated.databaseName = nil
            updated.roleName = nil
            updated.serverName = nil
            updated.schemaVersion = nil
            try await catalog.upsertTenant(updated)
            if try await catalog.move(tenant) != nil { try await catalog.setPhase(tenant, to: .shared) }
            var detail = ["database": database, "archive": archive, "archive_bytes": "\(size)"]
            if moving { detail["move_rolled_back_from"] = phase.rawValue }
            try await catalog.audit(actor: actor, action: "deprovision", tenant: tenant, outcome: .ok, detail: detail)
            return DeprovisionOutcome(tenant: tenant.rawValue, database: database, archive: archive, archiveBytes: size)
        }
    }

    /// Refuses (before anything is archived or dropped) unless the database carries the tenant's
    /// mark and the role, if it exists, does too; returns whether there is a role to drop.
    private func checkMarks(_ tenant: TenantID, database: String, role: String?, on connection: PostgresConnection) async throws -> Bool {
        let hint = "(provisioned before Tenantry marked what it creates? 'tenantry provision \(tenant)' marks it)"
        switch try await TenantMark.database(database, tenant: tenant, on: connection, logger: logger) {
        case .marked: break
        case .absent:
            throw TenantryError(code: .conflict, message: "database \(database) of tenant \(tenant) does not exist", tenant: tenant.rawValue)
        case .foreign:
            throw TenantryError(
                code: .conflict,
                message: "database \(database) does not carry the mark 'tenantry:tenant=\(tenant)': it is not dropped \(hint)",
                tenant: tenant.rawValue)
        }
        guard let role else { return false }
        switch try await TenantMark.role(role, tenant: tenant, on: connection, logger: logger) {
        case .marked: return true
        case .absent: return false
        case .foreign:
            throw TenantryError(
                code: .conflict, message: "role \(role) does not carry the mark 'tenantry:tenant=\(tenant)': it is not dropped \(hint)",
                tenant: tenant.rawValue)
        }
    }

    /// The environment of a `pg_dump` (or `psql`, `pg_restore`) of `url`: PATH, HOME, locale, and
    /// the login's password and TLS mode; nothing else of this process's environment (which holds
    /// `TENANT_ENCRYPTION_KEY` and the admin token).
    static func clientEnvironment(for url: PostgresURL, from base: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        var variables = ["PGPASSWORD": url.password ?? "", "PGSSLMODE": url.tls.rawValue]
        if let rootCertificate = url.rootCertificate { variables["PGSSLROOTCERT"] = rootCertificate }
        return ProcessRunner.minimalEnvironment(variables, from: base)
    }

    /// `pg_dump -Fc` of `url`'s database into `<directory>/<name>-<time>.dump` (the directory made
    /// absolute — pg_dump runs in another working directory — and created; the file 0600).
    /// Returns the file's path.
    static func archive(_ url: PostgresURL, into directory: String, name: String, logger: Logger) async throws -> String {
        let directory = directory.hasPrefix("/")
            ? directory : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let path = "\(directory)/\(name)-\(stamp).dump"
        try await dump(url, to: path, logger: logger)
        try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        return path
    }

    /// `pg_dump -Fc` of `url`'s database into `file`; the password goes through the environment.
    static func dump(_ url: PostgresURL, to file: String, logger: Logger) async throws {
        let output = try await PostgresDump.custom(
            .init(host: url.host, port: url.port, user: url.user, database: url.database), to: file,
            environment: clientEnvironment(for: url))
        guard output.succeeded else {
            throw TenantryError(
                code: .database,
                message: "pg_dump of \(url.database) failed: \(output.text.split(separator: "\n").first.map(String.init) ?? "exit \(output.status)")")
        }
    }
}
