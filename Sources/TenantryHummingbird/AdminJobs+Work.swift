import Foundation
import Tenantry
import TenantryCore

/// The work of the long phase jobs, shared by the admin API's endpoints and the console's
/// actions: the same operation, progress and outcome whichever way it was submitted.
extension AdminJobs {
    /// `migrate-data`: capture, copy, sync; per-table progress notes.
    static func migrateData(
        _ move: MoveOperations, _ selection: TenantSelection, concurrency: Int, captureTimeout: Duration, pauseSync: Bool
    ) -> Work {
        { reporter in
            let report = try await move.migrateData(
                selection, concurrency: concurrency, captureTimeout: captureTimeout, pauseSync: pauseSync,
                rows: { reporter.note("tenant \($0.tenant): table \($0.tablesDone + 1)/\($0.tablesTotal) \($0.table), \($0.rows) rows") },
                progress: reporter.update)
            return Outcome(result: try JSONValue(encoding: report), failure: AdminAPI.partialFailure(report.failed))
        }
    }

    /// `verify-sync`: fails (`not_equal`) naming the tenants that differ.
    static func verify(_ move: MoveOperations, _ selection: TenantSelection, chunkSize: Int) -> Work {
        { reporter in
            let report = try await move.verify(selection, chunkSize: chunkSize, progress: reporter.update)
            let differing = report.tenants.filter { !$0.equal }.map(\.tenant.rawValue)
            let failure = report.equal ? nil : AdminError(
                .conflict, code: "not_equal", "\(differing.count) tenant(s) differ: \(differing.prefix(20).joined(separator: ", "))")
            return Outcome(result: try JSONValue(encoding: report), failure: failure)
        }
    }

    /// `cutover`.
    static func cutover(_ move: MoveOperations, _ selection: TenantSelection, maxPause: Duration) -> Work {
        { reporter in
            let report = try await move.cutover(selection, maxPause: maxPause, progress: reporter.update)
            return Outcome(result: try JSONValue(encoding: report), failure: AdminAPI.partialFailure(report.failed))
        }
    }

    /// `rollback`.
    static func rollback(_ move: MoveOperations, _ tenants: [TenantID], maxPause: Duration) -> Work {
        { reporter in
            let reports = try await move.rollback(tenants, maxPause: maxPause, progress: reporter.update)
            return Outcome(result: try JSONValue(encoding: ["rolledBack": reports]))
        }
    }

    /// `retire-legacy`, or its dry run.
    static func retire(_ move: MoveOperations, _ tenants: [TenantID]?, archiveDirectory: String, dryRun: Bool) -> Work {
        { reporter in
            reporter.note(dryRun ? "verifying and counting" : "verifying, archiving, deleting")
            let report = try await move.retire(tenants, archiveDirectory: archiveDirectory, dryRun: dryRun)
            reporter.update(done: report.tenants.count, total: report.tenants.count, message: "\(report.tables.reduce(0) { $0 + $1.rows }) row(s)")
            return Outcome(result: try JSONValue(encoding: report))
        }
    }
}
