import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// The bench's server runs with `archive_mode = on` from its start (a restart-only setting) and
/// `archive_command = '/bin/true'` set by `ALTER SYSTEM` during the setup (the provisioning's WAL is
/// thrown away, not archived later); before the point-in-time part that command is reset, so
/// `tenantry backup archive enable` finds no foreign `archive_command`, needs no restart and takes the
/// first base backup of the whole server (every tenant database in it).
enum BackupPointInTime {
    static let serverSettings = ["archive_mode": "on", "wal_level": "replica"]

    /// Archiving discarded (`/bin/true`) until ``BackupFleet/pointInTime(_:tenant:)``.
    static func discardWAL(_ admin: PostgresURL) async throws {
        try await MoveBed.execute("ALTER SYSTEM SET archive_command = '/bin/true'", on: admin)
        try await MoveBed.execute("SELECT pg_reload_conf()", on: admin)
    }

    /// A scratch server for the recovery, as the CLI makes it: EmbeddedPostgres in a new temporary
    /// directory adopting the extracted base backup, over its unix socket; removed afterwards.
    struct Scratch: PointInTimeScratchServer {
        let server: EmbeddedPostgres
        let clock: ScratchClock
        var dataDirectory: String { "\(server.configuration.directory)/data" }
        var logFile: String { server.logFilePath }

        /// Scratch servers whose stop and directory removal are timed into `clock` (the library
        /// reports no part for them: they run after its `dump` part ends).
        static func factory(_ clock: ScratchClock) -> PointInTimeScratchFactory {
            { request in
                let directory = FileManager.default.temporaryDirectory
                    .appendingPathComponent("tenantry-bench-pitr-\(UUID().uuidString.prefix(8).lowercased())").path
                var configuration = EmbeddedPostgres.Configuration(directory: directory)
                configuration.superuser = request.superuser
                configuration.settings = request.settings
                configuration.adoptsDataDirectory = true
                configuration.stopWhenProcessExits = true
                return Scratch(server: EmbeddedPostgres(configuration: configuration, logger: Bench.logger), clock: clock)
            }
        }

        func start() async throws -> PostgresURL {
            try await server.start()
            return PostgresURL(
                user: server.superuser, password: nil, host: try server.socketDirectory, port: try server.port, database: "postgres",
                tls: .disable)
        }

        func isRunning() async -> Bool { (try? await server.isRunning()) ?? false }

        func remove() async {
            var start = ContinuousClock.now
            try? await server.stop()
            clock.add("scratch_stop", BackupProfile.milliseconds(since: start))
            start = ContinuousClock.now
            try? FileManager.default.removeItem(atPath: server.configuration.directory)
            clock.add("scratch_remove_directory", BackupProfile.milliseconds(since: start))
        }
    }
}

/// Milliseconds per named part, added from the scratch server's callbacks.
final class ScratchClock: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String: Double] = [:]

    func add(_ part: String, _ milliseconds: Double) {
        lock.lock()
        values[part, default: 0] += milliseconds
        lock.unlock()
    }

    var all: [String: Double] {
        lock.lock()
        defer { lock.unlock() }
        return values
    }
}

extension BackupFleet {
    /// Point-in-time restore of `tenant`, in place: archiving enabled on the server (the first base
    /// backup, timed apart), `before` rows written to a probe table, T read from the server, rows
    /// changed after T, then `restoreToTime(T)`; the probe must hold exactly the rows of T. Parts
    /// in ms as the library reports them (prepare, base_extract, recovery = WAL replay, dump,
    /// restore with its own parts).
    func pointInTime(_ operations: Operations, tenant: TenantID) async throws -> [String: any Sendable] {
        try await MoveBed.execute("ALTER SYSTEM RESET archive_command", on: bed.admin)
        try await MoveBed.execute("SELECT pg_reload_conf()", on: bed.admin)
        var enable: WALArchive.EnableReport?
        let enableSeconds = try await Bench.time {
            enable = try await operations.enableArchiving(server: ServerDirectory.defaultServerName, directory: "\(directory)/wal")
        }
        guard let enable, !enable.restartNeeded, let base = enable.baseBackup else {
            throw BenchFailure("archive enable needed a restart or took no base backup: \(String(describing: enable?.nextSteps))")
        }
        let database = try await operations.catalog.requireTenant(tenant).databaseName ?? ""
        let url = bed.admin.with(database: database)
        let before = 100
        let target = try await Database.withConnection(url, logger: Bench.logger) { connection in
            try await connection.query("CREATE TABLE pitr_probe (id int PRIMARY KEY, note text)", logger: Bench.logger)
            try await connection.query(
                "INSERT INTO pitr_probe SELECT g, 'before' FROM generate_series(1, \(before)) g", logger: Bench.logger)
            let time = try await connection.query("SELECT clock_timestamp()::text", logger: Bench.logger)
                .decode(String.self).first { _ in true } ?? ""
            try await Task.sleep(for: .milliseconds(200))
            try await connection.query("DELETE FROM pitr_probe WHERE id <= 40", logger: Bench.logger)
            try await connection.query(
                "INSERT INTO pitr_probe SELECT g, 'after' FROM generate_series(1001, 1050) g", logger: Bench.logger)
            return time
        }
        try await Task.sleep(for: .milliseconds(1_100))  // restores name their databases by the second (see README)
        let clock = ScratchClock()
        let start = ContinuousClock.now
        let report = try await operations.restoreToTime(
            tenant, time: target, dropPrevious: false, maxPause: .seconds(5), scratch: BackupPointInTime.Scratch.factory(clock))
        let total = BackupProfile.milliseconds(since: start)
        let (rows, afterRows) = try await Database.withConnection(
            bed.admin.with(database: report.restore.database), logger: Bench.logger
        ) { connection in
            try await connection.query(
                "SELECT count(*)::int, count(*) FILTER (WHERE note = 'after')::int FROM pitr_probe", logger: Bench.logger)
                .decode((Int, Int).self).first { _ in true } ?? (-1, -1)
        }
        guard rows == before, afterRows == 0 else {
            throw BenchFailure("the point-in-time restore holds \(rows) probe rows (\(afterRows) written after T), expected \(before)")
        }
        var fields: [String: any Sendable] = [
            "tenant": tenant.rawValue, "target": report.target, "total": Bench.round(total, 1),
            "base_backup_bytes": base.bytes, "archive_enable_and_base_backup": Bench.round(enableSeconds * 1000, 1),
            "restore_parts": report.restore.parts, "pause": Bench.round(report.restore.pauseMilliseconds, 2),
            "rows_as_of_target": rows,
        ]
        for (part, seconds) in report.seconds { fields[part] = Bench.round(seconds * 1000, 1) }
        for (part, ms) in clock.all { fields[part] = Bench.round(ms, 1) }
        return fields
    }
}
