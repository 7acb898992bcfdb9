import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension WALArchive {
    /// What a server says about itself and its archiving.
    public struct ServerFacts: Sendable, Codable, Equatable {
        /// `pg_control_system().system_identifier`.
        public var systemIdentifier: String
        /// `server_version`.
        public var postgresVersion: String
        /// `data_directory` (to find the OS user that runs the server, when it is local).
        public var dataDirectory: String
        /// `archive_mode` in effect.
        public var archiveMode: String
        /// `wal_level` in effect.
        public var walLevel: String
        /// `archive_command` in effect.
        public var archiveCommand: String
        /// Settings changed in the configuration that wait for a restart (`pg_settings.pending_restart`).
        public var pendingRestart: [String]
        /// The `archive_command` in the configuration files (`pg_file_settings`, the last one wins):
        /// PostgreSQL shows `(disabled)` as the one in effect while `archive_mode` is off.
        public var configuredArchiveCommand: String

        /// Whether WAL archiving runs now (mode on, a replica-or-better WAL level).
        public var archiving: Bool { ["on", "always"].contains(archiveMode) && walLevel != "minimal" }

        /// The archive directory of a Tenantry `archive_command` in effect, if that is what it is.
        public var archiveDirectory: String? { WALArchive.directory(ofArchiveCommand: archiveCommand) }
        /// The archive directory of the Tenantry `archive_command` configured, in effect or not yet.
        public var configuredArchiveDirectory: String? { WALArchive.directory(ofArchiveCommand: configuredArchiveCommand) }

        enum CodingKeys: String, CodingKey {
            case systemIdentifier = "system_identifier", postgresVersion = "postgres_version", dataDirectory = "data_directory"
            case archiveMode = "archive_mode", walLevel = "wal_level", archiveCommand = "archive_command"
            case pendingRestart = "pending_restart", configuredArchiveCommand = "configured_archive_command"
        }
    }

    /// Reads ``ServerFacts`` on `connection` (an admin login).
    public static func facts(on connection: PostgresConnection, logger: Logger) async throws -> ServerFacts {
        let rows = try await connection.query("""
            SELECT (SELECT system_identifier::text FROM pg_control_system()), current_setting('server_version'),
                   current_setting('data_directory'), current_setting('archive_mode'), current_setting('wal_level'),
                   current_setting('archive_command'),
                   coalesce((SELECT string_agg(name, ',' ORDER BY name) FROM pg_settings WHERE pending_restart), ''),
                   coalesce((SELECT setting FROM pg_file_settings WHERE name = 'archive_command' AND error IS NULL
                             ORDER BY seqno DESC LIMIT 1), '')
            """, logger: logger)
        for try await (system, version, data, mode, level, command, pending, configured) in rows.decode(
            (String, String, String, String, String, String, String, String).self) {
            return ServerFacts(
                systemIdentifier: system, postgresVersion: version, dataDirectory: data, archiveMode: mode, walLevel: level,
                archiveCommand: command, pendingRestart: pending.split(separator: ",").map(String.init),
                configuredArchiveCommand: configured)
        }
        throw TenantryError(code: .database, message: "the server returned no settings")
    }

    /// The archive of the server at `url`, as its `archive_command` in effect names it, checked
    /// against the directory's `archive.json`; a clear error when there is none or it is not
    /// active yet. Returns the archive and the server's facts.
    public static func locate(
        server: String, url: PostgresURL, logger: Logger
    ) async throws -> (archive: WALArchive, facts: ServerFacts) {
        let facts = try await Database.withConnection(url, logger: logger) { try await Self.facts(on: $0, logger: logger) }
        guard let directory = facts.archiveDirectory ?? facts.configuredArchiveDirectory else {
            throw TenantryError(
                code: .conflict,
                message: "no WAL archive is configured for server '\(server)': run 'tenantry backup archive enable --server \(server) --dir DIR'")
        }
        let archive = try WALArchive(directory: directory)
        guard facts.archiving, facts.archiveDirectory == directory else {
            throw TenantryError(
                code: .conflict,
                message: "WAL archiving of server '\(server)' into \(directory) is configured but not active "
                    + "(archive_mode \(facts.archiveMode), wal_level \(facts.walLevel)): restart the server")
        }
        guard let record = try archive.record() else {
            throw TenantryError(
                code: .conflict,
                message: "server '\(server)' archives into \(directory), but \(archive.recordPath) is missing here: "
                    + "is the directory mounted on this machine?")
        }
        guard record.systemIdentifier == facts.systemIdentifier else {
            throw TenantryError(
                code: .conflict,
                message: "\(directory) holds the archive of another cluster (system identifier \(record.systemIdentifier), "
                    + "server '\(record.server)'), not of server '\(server)' (\(facts.systemIdentifier))")
        }
        return (archive, facts)
    }

    /// Whether `url` reaches a server on this machine (a unix socket or a loopback address).
    static func isLocal(_ url: PostgresURL) -> Bool {
        url.isUnixSocket || ["localhost", "127.0.0.1", "::1", "[::1]"].contains(url.host.lowercased())
    }

    /// Creates the archive's directories (0700). When this process is root and the server is
    /// local, `directory` and `wal/` are given to the OS user that owns the server's data
    /// directory, which runs the archive command. Then checks, through the server itself
    /// (`COPY … TO` a probe file), that the server can write into `wal/` and that it is the same
    /// directory here: one clear error otherwise. Returns a note on what was done.
    func prepare(for facts: ServerFacts, url: PostgresURL, on connection: PostgresConnection, logger: Logger) async throws -> String {
        let fileManager = FileManager.default
        for path in [directory, walDirectory, baseDirectory] where !fileManager.fileExists(atPath: path) {
            try fileManager.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        var note = "\(walDirectory): "
        var owner = stat()
        if geteuid() == 0, Self.isLocal(url), stat(facts.dataDirectory, &owner) == 0, owner.st_uid != 0 {
            for path in [directory, walDirectory] where chown(path, owner.st_uid, owner.st_gid) != 0 {
                throw TenantryError(code: .conflict, message: "could not give \(path) to the server's OS user (uid \(owner.st_uid))")
            }
            chmod(directory, 0o700)
            chmod(walDirectory, 0o700)
            let name = getpwuid(owner.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(owner.st_uid)"
            note += "owned by \(name) (who runs the server), mode 0700"
        } else {
            note += "checked writable by the server"
        }
        let probe = "\(walDirectory)/.tenantry-probe-\(UUID().uuidString.prefix(8).lowercased())"
        do {
            try await connection.query(
                PostgresQuery(unsafeSQL: "COPY (SELECT 'tenantry archive probe') TO \(Self.literal(probe))"), logger: logger)
        } catch {
            throw TenantryError(
                code: .conflict,
                message: "the server cannot write into \(walDirectory) (\(Database.message(of: error))): make it writable by "
                    + "the OS user that runs PostgreSQL (e.g. chown postgres \(walDirectory)) and log in as a superuser")
        }
        guard fileManager.fileExists(atPath: probe) else {
            throw TenantryError(
                code: .conflict,
                message: "the server wrote into its \(walDirectory), but this machine does not see the file there: "
                    + "the archive must be one directory both see (a shared mount), or restores would not find the WAL")
        }
        try? fileManager.removeItem(atPath: probe)
        return note
    }

    /// `value` as a SQL string literal (for statements that take no parameters: ALTER SYSTEM, COPY).
    static func literal(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
