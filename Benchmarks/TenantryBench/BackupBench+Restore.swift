import Foundation
import Tenantry
import TenantryCore

extension BackupFleet {
    /// `count` × `Backups.restore` of `tenant` in place from the default `backupAll` run's store
    /// (its newest backup of `tenant`), the previous database kept each time (the CLI's default).
    /// No writes run meanwhile (the pause is the fence's own cost; the test `BackupRestoreLoadTests`
    /// writes through the swap). Medians, ms, and every sample.
    func restores(
        _ operations: Operations, tenant: TenantID, from store: String, count: Int, gap: Duration
    ) async throws -> [String: any Sendable] {
        var samples: [Backups.RestoreReport] = []
        var wall: [Double] = []
        for index in 0..<count {
            if index > 0 { try await Task.sleep(for: gap) }
            let start = ContinuousClock.now
            do {
                samples.append(try await operations.backups().restore(tenant, from: store, dropPrevious: false, maxPause: .seconds(5)))
            } catch {
                throw BenchFailure("restore \(index + 1) of tenant \(tenant) failed: \(Database.oneLine(error)); "
                    + (try await databaseCheck(operations, tenant: tenant)))
            }
            wall.append(BackupProfile.milliseconds(since: start))
            let check = try await databaseCheck(operations, tenant: tenant)
            guard check.hasPrefix("ok") else { throw BenchFailure("after restore \(index + 1): \(check)") }
        }
        let manifest = try BackupStore(root: store).list(tenant: tenant).last
        let median = { (values: [Double]) in Bench.round(BackupProfile.percentile(values, 0.5), 1) }
        var fields: [String: any Sendable] = [
            "tenant": tenant.rawValue,
            "restores": count,
            "rows": samples.last?.rows ?? 0,
            "dump_bytes": manifest?.bytes ?? 0,
            "total": median(wall),
            "pause": Bench.round(BackupProfile.percentile(samples.map(\.pauseMilliseconds), 0.5), 2),
            "samples": samples.map { sample -> [String: any Sendable] in
                var row: [String: any Sendable] = ["total": sample.milliseconds, "pause": Bench.round(sample.pauseMilliseconds, 2)]
                for (part, ms) in sample.parts { row[part] = ms }
                return row
            },
        ]
        for part in ["checksum", "restore", "verify", "swap"] {
            fields[part] = median(samples.compactMap { $0.parts[part].map(Double.init) })
        }
        return fields
    }

    /// Whether the database the catalog routes `tenant` to exists, and its rows.
    func databaseCheck(_ operations: Operations, tenant: TenantID) async throws -> String {
        guard let database = try await operations.catalog.requireTenant(tenant).databaseName else { return "the catalog names no database" }
        let exists = try await Database.withConnection(bed.admin, logger: Bench.logger) { connection in
            try await connection.query("SELECT count(*)::int FROM pg_database WHERE datname = \(database)", logger: Bench.logger)
                .decode(Int.self).first { _ in true } ?? 0
        }
        guard exists == 1 else { return "the tenant's database \(database) (in the catalog) no longer exists" }
        let rows = try await Database.withConnection(bed.admin.with(database: database), logger: Bench.logger) { connection in
            try await BackupProfile.rowCounts(on: connection).values.reduce(0, +)
        }
        return "ok: the tenant's database \(database) exists, \(rows) rows"
    }
}
