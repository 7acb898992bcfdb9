import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// Where a Tenantry backup of one tenant spends its time, against a bare `pg_dump`.
enum BackupProfile {
    /// Rows per table, as `Backups.backupDatabase` counts them in its snapshot.
    static func rowCounts(on connection: PostgresConnection) async throws -> [String: Int64] {
        try await Backups.rowCounts(on: connection, logger: Bench.logger)
    }

    /// The `fraction` percentile (nearest rank) of `values`; 0 when empty.
    static func percentile<Value: Comparable & Numeric>(_ values: [Value], _ fraction: Double) -> Value {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, max(0, Int((fraction * Double(sorted.count)).rounded(.up)) - 1))]
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Double {
        (ContinuousClock.now - start).totalSeconds * 1000
    }

    /// The steps of `Backups.backupDatabase`, replayed one by one with the same calls.
    static let steps = ["connect", "snapshot_and_counts", "pg_dump_snapshot", "commit_close", "pg_restore_list", "fsync", "sha256",
                        "manifest"]
}

extension BackupFleet {
    /// One tenant at a time over `count` tenants spread over the fleet: a bare `pg_dump -Fc`,
    /// `Backups.backupDatabase` (what `--all` runs per tenant, minus the catalog), `Backups.backup`
    /// (with the catalog lookup and the audit row), and the steps of `backupDatabase` replayed.
    /// Medians, in milliseconds.
    func profile(_ operations: Operations, count: Int) async throws -> [String: any Sendable] {
        let sample = CopyBench.spread(tenants, count: count)
        let out = "\(directory)/profile"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let store = BackupStore(root: out)
        var bare: [Double] = [], database: [Double] = [], backup: [Double] = []
        var parts: [String: [Double]] = [:]
        for tenant in sample {
            var start = ContinuousClock.now
            let output = try await PostgresDump.custom(target(tenant), to: "\(out)/bare.dump", environment: clientEnvironment)
            guard output.succeeded else { throw BenchFailure("pg_dump of tenant \(tenant) failed") }
            bare.append(BackupProfile.milliseconds(since: start))
            start = ContinuousClock.now
            _ = try await Backups.backupDatabase(url(tenant), tenant: tenant, server: "default", into: out, logger: Bench.logger)
            database.append(BackupProfile.milliseconds(since: start))
            start = ContinuousClock.now
            _ = try await operations.backups().backup(tenant, into: store)
            backup.append(BackupProfile.milliseconds(since: start))
            for (step, ms) in try await replay(tenant, into: out) { parts[step, default: []].append(ms) }
        }
        let median = { (values: [Double]) in Bench.round(BackupProfile.percentile(values, 0.5), 1) }
        let bareMs = median(bare), databaseMs = median(database)
        var steps: [String: any Sendable] = [:]
        for step in BackupProfile.steps { steps[step] = median(parts[step] ?? []) }
        return [
            "tenants": sample.count,
            "pg_dump_ms": bareMs,
            "backup_database_ms": databaseMs,
            "backup_ms": median(backup),
            "overhead_ms": Bench.round(databaseMs - bareMs, 1),
            "overhead_ratio": Bench.round(databaseMs / max(bareMs, 0.001), 2),
            "steps_ms": steps,
        ]
    }

    /// `Backups.backupDatabase`'s steps for `tenant`, each timed (ms): connect; the snapshot, the
    /// schema version and the row counts; `pg_dump --snapshot`; COMMIT and close; `pg_restore
    /// --list`; chmod and fsync; SHA-256; rename and the manifest written (fsync'd, renamed).
    func replay(_ tenant: TenantID, into out: String) async throws -> [String: Double] {
        var parts: [String: Double] = [:]
        let file = "\(out)/replay.dump.partial"
        let environment = clientEnvironment
        let target = target(tenant)
        var start = ContinuousClock.now
        let timings = try await Database.withConnection(url(tenant), logger: Bench.logger) { connection in
            var timings: [String: Double] = ["connect": BackupProfile.milliseconds(since: start)]
            var lap = ContinuousClock.now
            try await connection.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", logger: Bench.logger)
            let snapshot = try await connection.query("SELECT pg_export_snapshot()", logger: Bench.logger).decode(String.self)
                .first { _ in true } ?? ""
            _ = try await connection.query(
                "SELECT current_setting('server_version'), to_regclass('public.tenantry_schema_migrations') IS NOT NULL",
                logger: Bench.logger).decode((String, Bool).self).first { _ in true }
            _ = try await connection.query("SELECT coalesce(max(version), 0)::int FROM tenantry_schema_migrations", logger: Bench.logger)
                .decode(Int.self).first { _ in true }
            _ = try await BackupProfile.rowCounts(on: connection)
            timings["snapshot_and_counts"] = BackupProfile.milliseconds(since: lap)
            lap = ContinuousClock.now
            let output = try await PostgresDump.custom(target, to: file, environment: environment, snapshot: snapshot)
            guard output.succeeded else { throw BenchFailure("pg_dump --snapshot of tenant \(tenant) failed") }
            timings["pg_dump_snapshot"] = BackupProfile.milliseconds(since: lap)
            try await connection.query("COMMIT", logger: Bench.logger)
            start = ContinuousClock.now
            return timings
        }
        parts = timings
        func lap(_ step: String) {
            parts[step, default: 0] += BackupProfile.milliseconds(since: start)
            start = ContinuousClock.now
        }
        lap("commit_close")
        let listed = try await PostgresDump.list(file, environment: environment)
        guard listed.succeeded else { throw BenchFailure("pg_restore --list of tenant \(tenant)'s dump failed") }
        lap("pg_restore_list")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        try Self.sync(file)
        lap("fsync")
        let (sha256, bytes) = try BackupStore.sha256(of: file)
        lap("sha256")
        let dump = "\(out)/replay.dump"
        _ = rename(file, dump)
        let manifest = try JSONSerialization.data(
            withJSONObject: ["tenant": tenant.rawValue, "sha256": sha256, "bytes": bytes] as [String: Any], options: [.prettyPrinted, .sortedKeys])
        let partialManifest = "\(out)/replay.json.partial"
        _ = FileManager.default.createFile(atPath: partialManifest, contents: manifest, attributes: [.posixPermissions: 0o600])
        try Self.sync(partialManifest)
        _ = rename(partialManifest, "\(out)/replay.json")
        lap("manifest")
        return parts
    }

    static func sync(_ path: String) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.synchronize()
    }
}

/// A benchmark step that failed, with a one-line reason.
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
