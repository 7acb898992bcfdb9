import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension WALArchive {
    /// One setting `enable` changed (or found already right).
    public struct SettingChange: Sendable, Codable, Equatable {
        /// The setting.
        public var name: String
        /// Its value in effect before.
        public var before: String
        /// The value configured.
        public var after: String
        /// Whether it takes effect only at the server's next restart.
        public var needsRestart: Bool

        enum CodingKeys: String, CodingKey {
            case name, before, after, needsRestart = "needs_restart"
        }
    }

    /// What `enable` did.
    public struct EnableReport: Sendable, Codable, Equatable {
        /// The server.
        public var server: String
        /// The archive directory.
        public var directory: String
        /// The settings configured (`ALTER SYSTEM`, then `pg_reload_conf()`).
        public var settings: [SettingChange]
        /// Whether the server must be restarted before WAL is archived (Tenantry never restarts a
        /// server itself).
        public var restartNeeded: Bool
        /// The base backup taken, when archiving was already active.
        public var baseBackup: BaseBackupManifest?
        /// What was done to the directory (owner, mode).
        public var directoryNote: String
        /// What to do next, in order.
        public var nextSteps: [String]

        enum CodingKeys: String, CodingKey {
            case server, directory, settings, restartNeeded = "restart_needed", baseBackup = "base_backup"
            case directoryNote = "directory_note", nextSteps = "next_steps"
        }
    }

    /// Configures continuous archiving of the server at `url` (an admin login, a superuser) into
    /// this directory: `archive_mode = on`, `wal_level` at least `replica`, ``archiveCommand``
    /// (all with `ALTER SYSTEM`), `pg_reload_conf()`; records the server in `archive.json`. When
    /// archiving is active at once (no restart needed) takes the first base backup; otherwise the
    /// report says that a restart is needed and what to run after it.
    public func enable(server: String, url: PostgresURL, logger: Logger) async throws -> EnableReport {
        let (facts, note) = try await Database.withConnection(url, logger: logger) { connection in
            let facts = try await Self.facts(on: connection, logger: logger)
            if let record = try record(), record.systemIdentifier != facts.systemIdentifier {
                throw TenantryError(
                    code: .conflict,
                    message: "\(directory) already holds the archive of server '\(record.server)' (another cluster, system "
                        + "identifier \(record.systemIdentifier)): use one directory per server")
            }
            if let other = facts.configuredArchiveDirectory, other != directory {
                logger.notice("server archived elsewhere before", metadata: ["archive.previous": "\(other)"])
            } else if facts.configuredArchiveDirectory == nil, !facts.configuredArchiveCommand.isEmpty {
                throw TenantryError(
                    code: .conflict,
                    message: "server '\(server)' already has an archive_command Tenantry did not write: "
                        + "reset it first (ALTER SYSTEM RESET archive_command) if Tenantry should archive instead")
            }
            let note = try await prepare(for: facts, url: url, on: connection, logger: logger)
            try write(Record(
                server: server, systemIdentifier: facts.systemIdentifier, postgresVersion: facts.postgresVersion,
                enabledAt: Date(), archiveCommand: archiveCommand))
            if !["on", "always"].contains(facts.archiveMode) {
                try await connection.query("ALTER SYSTEM SET archive_mode = 'on'", logger: logger)
            }
            if facts.walLevel == "minimal" {
                try await connection.query("ALTER SYSTEM SET wal_level = 'replica'", logger: logger)
            }
            try await connection.query(
                PostgresQuery(unsafeSQL: "ALTER SYSTEM SET archive_command = \(Self.literal(archiveCommand))"), logger: logger)
            try await connection.query("SELECT pg_reload_conf()", logger: logger)
            return (facts, note)
        }
        let after = try await reloaded(url: url, logger: logger)
        let modeOn = ["on", "always"].contains(after.archiveMode)
        let settings = [
            SettingChange(
                name: "archive_mode", before: facts.archiveMode, after: modeOn ? after.archiveMode : "on", needsRestart: !modeOn),
            SettingChange(
                name: "wal_level", before: facts.walLevel, after: facts.walLevel == "minimal" ? "replica" : facts.walLevel,
                needsRestart: after.walLevel == "minimal"),
            SettingChange(
                name: "archive_command", before: facts.configuredArchiveCommand, after: archiveCommand,
                needsRestart: after.archiveCommand != archiveCommand),
        ]
        var report = EnableReport(
            server: server, directory: directory, settings: settings, restartNeeded: settings.contains(where: \.needsRestart),
            baseBackup: nil, directoryNote: note, nextSteps: [])
        if report.restartNeeded {
            let waiting = settings.filter(\.needsRestart).map(\.name).joined(separator: " and ")
            report.nextSteps = [
                "restart PostgreSQL on server '\(server)' (\(waiting) take effect only then; Tenantry does not restart a server): "
                    + "e.g. 'systemctl restart postgresql' or 'pg_ctl restart -D \(facts.dataDirectory)'",
                "tenantry backup archive status --server \(server)   # archiving: on",
                "tenantry backup base --server \(server)   # the first base backup: point-in-time restores start from one",
            ]
        } else {
            report.baseBackup = try await takeBaseBackup(server: server, url: url, logger: logger)
            report.nextSteps = [
                "tenantry backup base --server \(server)   # further base backups, e.g. daily (restores replay less WAL)",
                "tenantry restore --tenant ID --to-time 'YYYY-MM-DD HH:MM:SS+00' --yes",
            ]
        }
        return report
    }

    /// The server's facts once a new session sees the reloaded configuration (the postmaster
    /// reloads asynchronously): the new `archive_command` in effect, or a restart pending for
    /// `archive_mode` or `wal_level`; at most 10 seconds.
    private func reloaded(url: PostgresURL, logger: Logger) async throws -> ServerFacts {
        func settled(_ facts: ServerFacts) -> Bool {
            facts.archiveCommand == archiveCommand || facts.pendingRestart.contains { ["archive_mode", "wal_level"].contains($0) }
        }
        var facts = try await Database.withConnection(url, logger: logger) { try await Self.facts(on: $0, logger: logger) }
        for _ in 0..<100 where !settled(facts) {
            try await Task.sleep(for: .milliseconds(100))
            facts = try await Database.withConnection(url, logger: logger) { try await Self.facts(on: $0, logger: logger) }
        }
        return facts
    }
}
