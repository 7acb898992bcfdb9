import Foundation
import Tenantry
import TenantryCore

extension BackupFleet {
    /// `count` × `Backups.restore` of `tenant` in place from the default `backupAll` run's store
    /// (its newest backup of `tenant`), the previous database kept each time (the CLI's default).
    /// No writes run meanwhile (the pause is the fence's own cost; the test `BackupRestoreLoadTests`
    /// writes through the swap). Medians, ms, and every sample.
    func restores(_ operations: Operations, tenant: TenantID, from store: String, count: Int) async throws -> [String: any Sendable] {
        var samples: [Backups.RestoreReport] = []
        var wall: [Double] = []
        for _ in 0..<count {
            let start = ContinuousClock.now
            samples.append(try await operations.backups().restore(tenant, from: store, dropPrevious: false, maxPause: .seconds(5)))
            wall.append(BackupProfile.milliseconds(since: start))
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
}
