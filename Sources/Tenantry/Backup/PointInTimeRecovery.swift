import Foundation
import Logging
import PostgresNIO
import PostgresTools
import TenantryCore

/// A throwaway PostgreSQL server that a point-in-time recovery runs in. The library does not
/// start servers itself: the CLI gives it EmbeddedPostgres in a temporary directory
/// (`tenantry restore --to-time`), tests their own.
public protocol PointInTimeScratchServer: Sendable {
    /// Its data directory (PGDATA), not there yet or empty: the base backup is extracted into it.
    var dataDirectory: String { get }
    /// Its server log (read to explain a failed recovery).
    var logFile: String { get }
    /// Starts the server on the prepared data directory and returns a superuser URL over its unix
    /// socket (database `postgres`). It may return while recovery still runs.
    func start() async throws -> PostgresURL
    /// Whether the server process still runs.
    func isRunning() async -> Bool
    /// Stops the server and deletes everything of it. Never fails; always called.
    func remove() async
}

/// What a scratch server must be made with.
public struct PointInTimeScratchRequest: Sendable {
    /// The role to connect as: the source server's admin role, which the base backup carries.
    public var superuser: String
    /// Server settings (for `postgresql.conf`'s included `tenantry.conf`): recovery target,
    /// `restore_command`, `archive_mode = off`, `hot_standby = off`, socket permissions 0700.
    public var settings: [String: String]
}

/// Makes a scratch server.
public typealias PointInTimeScratchFactory = @Sendable (PointInTimeScratchRequest) async throws -> any PointInTimeScratchServer

/// Recovers one base backup of a ``WALArchive`` to a time in a scratch server: extract the base
/// backup, configure recovery (`restore_command` from the archive, `recovery_target_time`,
/// `recovery_target_action = promote`, `recovery.signal`, archive mode off, trust on a 0700 unix
/// socket only), wait until it is promoted, run the caller's work on it, remove it — on every path.
public struct PointInTimeRecovery: Sendable {
    /// The archive.
    public var archive: WALArchive
    /// The base backup to start from (ended before ``target``).
    public var base: BaseBackupManifest
    /// The target as PostgreSQL reads it (`recovery_target_time`), e.g. `2026-11-30 17:05:03.123456+00`.
    public var target: String
    /// The role to connect to the recovered server as (the source's admin role).
    public var superuser: String
    /// How long recovery may take.
    public var timeout: Duration = .seconds(3600)

    /// A recovery.
    public init(archive: WALArchive, base: BaseBackupManifest, target: String, superuser: String) {
        self.archive = archive
        self.base = base
        self.target = target
        self.superuser = superuser
    }

    /// How long each part took, in seconds.
    public struct Timings: Sendable, Codable, Equatable {
        /// Checking and extracting the base backup, writing the configuration.
        public var baseExtract: Double = 0
        /// Starting the server and replaying WAL up to the target, until promoted.
        public var recovery: Double = 0
        /// The caller's work on the recovered server.
        public var work: Double = 0
        /// Stopping the scratch server and deleting its directory (a copy of the whole cluster).
        public var cleanup: Double = 0

        enum CodingKeys: String, CodingKey {
            case baseExtract = "base_extract_seconds", recovery = "recovery_seconds", work = "work_seconds"
        }
    }

    /// The newest base backup that ended before `target` (on the server's clock); a clear error when
    /// there is none.
    public static func pick(_ backups: [BaseBackupManifest], before target: Date, server: String) throws -> BaseBackupManifest {
        guard let oldest = backups.first else {
            throw TenantryError(
                code: .conflict, message: "there is no base backup of server '\(server)': run 'tenantry backup base --server \(server)'")
        }
        guard let chosen = backups.last(where: { $0.finishedAt < target }) else {
            throw TenantryError(
                code: .invalidArgument,
                message: "\(PointInTimeFormat.string(target)) is before the oldest base backup of server '\(server)' "
                    + "(\(oldest.path.map { ($0 as NSString).lastPathComponent } ?? "?"), ended \(PointInTimeFormat.string(oldest.finishedAt)))")
        }
        return chosen
    }

    /// The settings of the scratch server.
    public var settings: [String: String] {
        [
            "restore_command": archive.restoreCommand,
            "recovery_target_time": target,
            "recovery_target_action": "promote",
            "archive_mode": "off",
            "hot_standby": "off",
            "unix_socket_permissions": "0700",
            "fsync": "off",
            "synchronous_commit": "off",
            "max_connections": "50",
            "max_prepared_transactions": "64",
        ]
    }

    /// Runs the recovery: verifies the base backup, starts a scratch server from `scratch`, waits
    /// until it is promoted at the target, runs `body` with its superuser URL, and removes the
    /// scratch server whatever happens. Returns `body`'s result and the timings.
    public func run<Result: Sendable>(
        scratch: PointInTimeScratchFactory, logger: Logger, _ body: (PostgresURL) async throws -> Result
    ) async throws -> (Result, Timings) {
        var timings = Timings()
        let clock = ContinuousClock()
        var started = clock.now
        try WALArchive.verify(base)
        let server = try await scratch(PointInTimeScratchRequest(superuser: superuser, settings: settings))
        do {
            try await prepare(server.dataDirectory)
            timings.baseExtract = (clock.now - started).totalSeconds
            started = clock.now
            let url = try await recover(server, logger: logger)
            timings.recovery = (clock.now - started).totalSeconds
            started = clock.now
            let result = try await body(url)
            timings.work = (clock.now - started).totalSeconds
            started = clock.now
            await server.remove()
            timings.cleanup = (clock.now - started).totalSeconds
            return (result, timings)
        } catch {
            await server.remove()
            throw error
        }
    }

    /// Extracts the base backup into `dataDirectory` and writes the recovery configuration.
    func prepare(_ dataDirectory: String) async throws {
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let output = try await ProcessRunner().run(
            ProcessRunner.which("tar") ?? "/bin/tar", ["-xzf", "\(base.path ?? ".")/\(base.file)", "-C", dataDirectory])
        guard output.succeeded, fileManager.fileExists(atPath: "\(dataDirectory)/PG_VERSION") else {
            throw TenantryError(
                code: .conflict,
                message: "base backup \(base.path ?? "?") is corrupt: it does not extract ("
                    + (output.text.split(separator: "\n").first.map(String.init) ?? "no PG_VERSION") + ")")
        }
        // The source's configuration stays out (its archive_command would write into the archive,
        // its pg_hba would not let us in): PostgreSQL's defaults plus the scratch settings.
        let files = [
            "postgresql.conf": "include_if_exists = 'tenantry.conf'\n",
            "postgresql.auto.conf": "# emptied for a point-in-time recovery by Tenantry\n",
            "pg_hba.conf": "local all all trust\nhost all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n",
            "pg_ident.conf": "",
            "recovery.signal": "",
        ]
        for (name, text) in files {
            guard fileManager.createFile(
                atPath: "\(dataDirectory)/\(name)", contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw TenantryError(code: .conflict, message: "could not write \(dataDirectory)/\(name)")
            }
        }
        for name in ["standby.signal", "postmaster.pid", "postmaster.opts"] {
            try? fileManager.removeItem(atPath: "\(dataDirectory)/\(name)")
        }
    }

    /// Starts the scratch server and waits until recovery has ended and it is promoted.
    func recover(_ server: any PointInTimeScratchServer, logger: Logger) async throws -> PostgresURL {
        let url: PostgresURL
        do {
            url = try await server.start()
        } catch {
            throw explain(server, error)
        }
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                let recovering = try await Database.withConnection(url, logger: logger) { connection in
                    var recovering = true
                    for try await value in try await connection.query("SELECT pg_is_in_recovery()", logger: logger).decode(Bool.self) {
                        recovering = value
                    }
                    return recovering
                }
                if !recovering { return url }
            } catch {
                // Not accepting connections while it replays WAL (hot_standby is off).
                guard await server.isRunning() else { throw explain(server, error) }
            }
            guard ContinuousClock.now < deadline else {
                throw TenantryError(code: .timeout, message: "the point-in-time recovery did not finish within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// The scratch server's log, turned into one clear error.
    func explain(_ server: any PointInTimeScratchServer, _ error: any Error) -> TenantryError {
        let log = (try? String(contentsOfFile: server.logFile, encoding: .utf8)) ?? ""
        if log.contains("recovery ended before configured recovery target was reached") {
            return TenantryError(
                code: .invalidArgument,
                message: "\(target) is after the newest archived WAL of server '\(base.server)': recovery ended before reaching it")
        }
        if log.contains("before consistent recovery point") {
            return TenantryError(
                code: .invalidArgument,
                message: "\(target) is before base backup \(base.path ?? "?") was consistent: choose a later time")
        }
        let fatal = log.split(separator: "\n").lazy.compactMap { line in
            (line.range(of: "FATAL:") ?? line.range(of: "PANIC:")).map { line[$0.upperBound...].trimmingCharacters(in: .whitespaces) }
        }.first
        return TenantryError(
            code: .database, message: "the point-in-time recovery failed: \(fatal ?? Database.message(of: error))")
    }
}
