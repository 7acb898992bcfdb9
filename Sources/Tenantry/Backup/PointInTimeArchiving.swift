import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// Continuous WAL archiving of the fleet's servers, as `tenantry backup archive …` and
/// `tenantry backup base` run it. Which server archives where is recorded in the archive
/// directory (`archive.json`) and in the audit log (`backup.archive.enable`); the server's own
/// `archive_command` is what a restore reads to find its archive.
extension Operations {
    /// The admin URL (database `postgres`) of a server by name (`default`: the unified database's).
    public func archiveServerURL(_ server: String) throws -> PostgresURL {
        try servers.adminURL(server: server == ServerDirectory.defaultServerName ? nil : server, database: "postgres")
    }

    /// Configures WAL archiving of `server` into `directory` (``WALArchive/enable(server:url:logger:)``)
    /// and records it in the audit log.
    public func enableArchiving(server: String, directory: String) async throws -> WALArchive.EnableReport {
        let archive = try WALArchive(directory: directory)
        do {
            let report = try await archive.enable(server: server, url: try archiveServerURL(server), logger: logger)
            try await catalog.audit(
                actor: actor, action: "backup.archive.enable", outcome: .ok,
                detail: ["server": server, "directory": archive.directory, "restart_needed": "\(report.restartNeeded)"])
            return report
        } catch {
            try? await catalog.audit(
                actor: actor, action: "backup.archive.enable", outcome: .failed,
                detail: ["server": server, "directory": archive.directory, "error": Database.message(of: error)])
            throw error
        }
    }

    /// Takes a base backup of `server` into the archive its `archive_command` names.
    public func takeBaseBackup(server: String) async throws -> BaseBackupManifest {
        let url = try archiveServerURL(server)
        let (archive, _) = try await WALArchive.locate(server: server, url: url, logger: logger)
        let manifest = try await archive.takeBaseBackup(server: server, url: url, logger: logger)
        try await catalog.audit(
            actor: actor, action: "backup.base", outcome: .ok,
            detail: ["server": server, "path": manifest.path ?? "", "bytes": "\(manifest.bytes)"])
        return manifest
    }

    /// The archiving status of `server`, or of every server (the default one first; one that
    /// cannot be read is reported with its ``WALArchive/StatusReport/error``).
    public func archiveStatus(server: String?) async throws -> [WALArchive.StatusReport] {
        if let server { return [try await WALArchive.status(server: server, url: try archiveServerURL(server), logger: logger)] }
        var reports: [WALArchive.StatusReport] = []
        for name in [ServerDirectory.defaultServerName] + servers.servers.map(\.name) {
            do {
                reports.append(try await WALArchive.status(server: name, url: try archiveServerURL(name), logger: logger))
            } catch {
                reports.append(.unreadable(name, error))
            }
        }
        return reports
    }

    /// `text` read by PostgreSQL as a `timestamptz` (on the catalog's connection, in its session
    /// time zone): the time, and the same time as `recovery_target_time` text in UTC. A value
    /// PostgreSQL does not read, or an infinite one, is one clear error.
    public func pointInTime(_ text: String) async throws -> (date: Date, target: String) {
        do {
            let rows = try await catalog.client.query("""
                SELECT \(text)::timestamptz, isfinite(\(text)::timestamptz),
                       to_char(\(text)::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'
                """, logger: logger)
            for try await (date, finite, target) in rows.decode((Date?, Bool, String?).self) {
                guard finite, let date, let target else { break }
                return (date, target)
            }
        } catch let error as PSQLError {
            throw TenantryError(
                code: .invalidArgument,
                message: "'\(text.prefix(80))' is not a time PostgreSQL reads as timestamptz (\(Database.message(of: error)))")
        }
        throw TenantryError(code: .invalidArgument, message: "'\(text.prefix(80))' is not a finite time")
    }
}
