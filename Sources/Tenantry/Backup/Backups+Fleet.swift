import Foundation
import TenantryCore

extension Backups {
    /// What ``backupAll(into:concurrency:progress:)`` did (`backup --all --json`).
    public struct FleetReport: Sendable, Codable, Equatable {
        /// The backups written now.
        public var written: [BackupManifest]
        /// Tenants already backed up by the interrupted run this one resumed.
        public var resumed: [TenantID]
        /// Tenants that failed, with a one-line reason.
        public var failed: [String: String]
        /// Bytes written now.
        public var bytes: Int64
        /// Wall time of this run.
        public var milliseconds: Int
    }

    /// The run file of a `--all` backup: a run that did not finish is resumed by the next one.
    struct RunState: Codable {
        var startedAt: Date
        var finishedAt: Date?
        var tenants: [TenantID]
    }

    static let runFile = ".tenantry-backup-run.json"

    /// Backs up every provisioned tenant, `concurrency` at a time, reporting each one. The run is
    /// recorded in the store: when the previous `--all` run did not finish (killed, or a tenant
    /// failed), the tenants it already backed up are skipped, so re-running completes it.
    public func backupAll(
        into store: BackupStore, concurrency: Int = 4, progress: ProgressHandler? = nil
    ) async throws -> FleetReport {
        let started = ContinuousClock.now
        let tenants = try await operations.provisionedTenants().sorted { $0.rawValue < $1.rawValue }
        try store.createRoot()
        let runPath = (store.root as NSString).appendingPathComponent(Self.runFile)
        var run = RunState(startedAt: Date(), finishedAt: nil, tenants: tenants)
        var resumed: [TenantID] = []
        if let data = FileManager.default.contents(atPath: runPath),
           let previous = try? Self.runDecoder.decode(RunState.self, from: data), previous.finishedAt == nil {
            run.startedAt = previous.startedAt
            let done = Set(try store.list().filter { $0.startedAt >= previous.startedAt }.map(\.tenant))
            resumed = tenants.filter { done.contains($0) }
        }
        try BackupStore.writeAtomically(try Self.runEncoder.encode(run), to: runPath)
        let remaining = tenants.filter { !resumed.contains($0) }
        if !resumed.isEmpty {
            progress?(OperationProgress(
                done: resumed.count, total: tenants.count,
                message: "resuming the run started \(BackupStore.timestamp(run.startedAt)): \(resumed.count) already backed up"))
        }
        var report = FleetReport(written: [], resumed: resumed, failed: [:], bytes: 0, milliseconds: 0)
        try await forEachConcurrently(remaining, concurrency: concurrency, { try await backup($0, into: store) }) { index, result, done in
            let tenant = remaining[index]
            switch result {
            case .success(let manifest):
                report.written.append(manifest)
                report.bytes += manifest.bytes
                progress?(OperationProgress(
                    done: resumed.count + done, total: tenants.count, tenant: tenant,
                    message: "\(ByteSize.format(manifest.bytes)) in \(manifest.dumpFile)"))
            case .failure(let error):
                report.failed[tenant.rawValue] = Database.oneLine(error)
                progress?(OperationProgress(
                    done: resumed.count + done, total: tenants.count, tenant: tenant, failed: true,
                    message: "FAILED: \(Database.oneLine(error))"))
            }
        }
        if report.failed.isEmpty {
            run.finishedAt = Date()
            try BackupStore.writeAtomically(try Self.runEncoder.encode(run), to: runPath)
        }
        report.written.sort { $0.tenant.rawValue < $1.tenant.rawValue }
        report.milliseconds = Int((ContinuousClock.now - started).wholeMilliseconds)
        return report
    }

    static var runEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        return encoder
    }

    static var runDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return decoder
    }

    /// What ``prune(_:keepDaily:keepWeekly:dryRun:)`` removed and kept.
    public struct PruneReport: Sendable, Codable, Equatable {
        /// Backups kept (manifest paths).
        public var kept: [String]
        /// Backups removed (or, with `dryRun`, that would be), and `.partial` files a killed
        /// backup left (older than an hour).
        public var removed: [String]
    }

    /// Retention per tenant: the newest backup of each of the last `keepDaily` days that have a
    /// backup, and of each of the last `keepWeekly` ISO weeks (UTC) are kept; so is each tenant's
    /// newest backup, whatever the counts. The others are removed (manifest first, then dump), and
    /// so are `.partial` files older than an hour (a killed backup's).
    public static func prune(
        _ store: BackupStore, keepDaily: Int, keepWeekly: Int, dryRun: Bool = false
    ) throws -> PruneReport {
        guard keepDaily >= 0, keepWeekly >= 0 else {
            throw TenantryError(code: .invalidArgument, message: "--keep-daily and --keep-weekly must be 0 or more")
        }
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var report = PruneReport(kept: [], removed: [])
        let byTenant = Dictionary(grouping: try store.list(), by: \.tenant)
        for tenant in byTenant.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
            let newestFirst = byTenant[tenant]!.sorted { $0.startedAt > $1.startedAt }
            var keep: Set<String> = [newestFirst[0].path ?? ""]
            for (count, key) in [(keepDaily, { (date: Date) in
                let parts = calendar.dateComponents([.year, .month, .day], from: date)
                return "\(parts.year!)-\(parts.month!)-\(parts.day!)"
            }), (keepWeekly, { (date: Date) in
                let parts = calendar.dateComponents([.yearForWeekOfYear, .weekOfYear], from: date)
                return "\(parts.yearForWeekOfYear!)-W\(parts.weekOfYear!)"
            })] {
                var periods: Set<String> = []
                for backup in newestFirst where periods.count < count {
                    if periods.insert(key(backup.startedAt)).inserted { keep.insert(backup.path ?? "") }
                }
            }
            for backup in newestFirst {
                guard let path = backup.path else { continue }
                if keep.contains(path) {
                    report.kept.append(path)
                } else {
                    if !dryRun { try BackupStore.remove(backup) }
                    report.removed.append(path)
                }
            }
        }
        if !dryRun { report.removed += store.removeStalePartials(olderThan: 3600) }
        return report
    }
}
