import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension WALArchive {
    /// `pg_stat_archiver`: how the server's archiving goes.
    public struct ArchiverStatus: Sendable, Codable, Equatable {
        /// Segments archived since the statistics were reset.
        public var archivedCount: Int64
        /// The last file archived.
        public var lastArchivedWAL: String?
        /// When it was archived.
        public var lastArchivedTime: Date?
        /// Failed attempts.
        public var failedCount: Int64
        /// The last file that failed.
        public var lastFailedWAL: String?
        /// When it failed.
        public var lastFailedTime: Date?

        enum CodingKeys: String, CodingKey {
            case archivedCount = "archived_count", lastArchivedWAL = "last_archived_wal", lastArchivedTime = "last_archived_time"
            case failedCount = "failed_count", lastFailedWAL = "last_failed_wal", lastFailedTime = "last_failed_time"
        }
    }

    /// `tenantry backup archive status` of one server.
    public struct StatusReport: Sendable, Codable, Equatable {
        /// The server.
        public var server: String
        /// Whether WAL is archived now (into ``directory``).
        public var archiving: Bool
        /// The Tenantry archive configured (in effect, or waiting for a restart), if any.
        public var directory: String?
        /// Whether the configuration waits for a restart (`archive_mode`, `wal_level`).
        public var restartNeeded: Bool
        /// `pg_stat_archiver`.
        public var archiver: ArchiverStatus
        /// The base backups in the archive, oldest first.
        public var baseBackups: [BaseBackupManifest]
        /// WAL segments in the archive.
        public var walFiles: Int
        /// Why the server's status could not be read (a status of every server goes on past it).
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case server, archiving, directory, restartNeeded = "restart_needed", archiver, baseBackups = "base_backups"
            case walFiles = "wal_files", error
        }

        /// The status of a server that could not be read.
        static func unreadable(_ server: String, _ error: any Error) -> StatusReport {
            StatusReport(
                server: server, archiving: false, directory: nil, restartNeeded: false,
                archiver: ArchiverStatus(archivedCount: 0, failedCount: 0), baseBackups: [], walFiles: 0,
                error: Database.message(of: error))
        }
    }

    /// The archiving status of the server at `url`.
    public static func status(server: String, url: PostgresURL, logger: Logger) async throws -> StatusReport {
        let (facts, archiver) = try await Database.withConnection(url, logger: logger) { connection in
            (try await Self.facts(on: connection, logger: logger), try await Self.archiver(on: connection, logger: logger))
        }
        let directory = facts.configuredArchiveDirectory ?? facts.archiveDirectory
        let archive = try directory.map { try WALArchive(directory: $0) }
        let segments = (try? FileManager.default.contentsOfDirectory(atPath: archive?.walDirectory ?? "/nonexistent")) ?? []
        return StatusReport(
            server: server, archiving: facts.archiving && facts.archiveDirectory != nil, directory: directory,
            restartNeeded: facts.pendingRestart.contains { ["archive_mode", "wal_level"].contains($0) },
            archiver: archiver, baseBackups: try archive?.baseBackups() ?? [],
            walFiles: segments.filter(Self.isSegmentName).count)
    }

    /// Whether `name` is a WAL segment's file name (24 hexadecimal digits).
    static func isSegmentName(_ name: String) -> Bool {
        name.utf8.count == 24 && name.allSatisfy(\.isHexDigit)
    }

    /// Reads `pg_stat_archiver`.
    static func archiver(on connection: PostgresConnection, logger: Logger) async throws -> ArchiverStatus {
        let rows = try await connection.query("""
            SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal, last_failed_time
            FROM pg_stat_archiver
            """, logger: logger)
        for try await (archived, lastWAL, lastTime, failed, failedWAL, failedTime) in rows.decode(
            (Int64, String?, Date?, Int64, String?, Date?).self) {
            return ArchiverStatus(
                archivedCount: archived, lastArchivedWAL: lastWAL, lastArchivedTime: lastTime, failedCount: failed,
                lastFailedWAL: failedWAL, lastFailedTime: failedTime)
        }
        throw TenantryError(code: .database, message: "pg_stat_archiver returned nothing")
    }

    /// Brings the archive up to now: a marker transaction commits (so a recovery to any earlier
    /// time finds a commit after it and stops there), `pg_switch_wal()` closes its segment, and
    /// this waits until the segment is in `wal/`. Returns the server's clock just before the
    /// marker: the archive holds every commit up to that time. Archiving that does not keep up
    /// within `timeout` is one clear error.
    public func archiveNow(server: String, url: PostgresURL, timeout: Duration = .seconds(60), logger: Logger) async throws -> Date {
        let (until, segment) = try await Database.withConnection(url, logger: logger) { connection in
            var until = Date()
            for try await (now, _) in try await connection.query("SELECT clock_timestamp(), txid_current()", logger: logger)
                .decode((Date, Int64).self) { until = now }
            var segment = ""
            for try await name in try await connection.query("SELECT pg_walfile_name(pg_switch_wal())", logger: logger)
                .decode(String.self) { segment = name }
            return (until, segment)
        }
        let deadline = ContinuousClock.now + timeout
        while !FileManager.default.fileExists(atPath: "\(walDirectory)/\(segment)") {
            guard ContinuousClock.now < deadline else {
                let archiver = try await Database.withConnection(url, logger: logger) { try await Self.archiver(on: $0, logger: logger) }
                throw TenantryError(
                    code: .timeout,
                    message: "WAL segment \(segment) of server '\(server)' did not reach \(walDirectory) within \(timeout) "
                        + "(pg_stat_archiver: \(archiver.failedCount) failures, last failed \(archiver.lastFailedWAL ?? "none")): "
                        + "archiving is failing or behind, so the archive ends before now; see the server's log")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return until
    }
}
