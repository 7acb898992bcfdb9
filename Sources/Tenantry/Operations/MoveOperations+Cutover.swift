import Foundation
import TenantryCore

extension MoveOperations {
    /// What ``cutover(_:maxPause:retries:retryDelay:progress:)`` did (`cutover --json`).
    public struct CutoverReport: Sendable, Codable, Equatable {
        /// Tenants cut over, in order.
        public var cutover: [Cutover.Report]
        /// Tenants that failed (nothing changed for them), with a one-line reason.
        public var failed: [String: String]
        /// Attempts that aborted cleanly and were tried again, over all tenants.
        public var retries: Int = 0
    }

    /// Switches synced tenants' writes to their databases, one tenant at a time (`all`: every
    /// syncing tenant). A tenant whose pause would pass `maxPause` is left as it was; under load it
    /// is tried again up to `retries` times, `retryDelay` apart (an abort changes nothing, so a
    /// retry is safe), then reported as failed.
    public func cutover(
        _ selection: TenantSelection, maxPause: Duration = .milliseconds(500), retries: Int = 0,
        retryDelay: Duration = .milliseconds(200), progress: ProgressHandler? = nil
    ) async throws -> CutoverReport {
        try await TenantryTracing.operation("tenantry.cutover", selection) { _ in
            try await cutoverTenants(selection, maxPause: maxPause, retries: retries, retryDelay: retryDelay, progress: progress)
        }
    }

    private func cutoverTenants(
        _ selection: TenantSelection, maxPause: Duration, retries: Int, retryDelay: Duration, progress: ProgressHandler?
    ) async throws -> CutoverReport {
        guard (0...100).contains(retries) else {
            throw TenantryError(code: .invalidArgument, message: "retries must be from 0 to 100 (got \(retries))")
        }
        try await requireCapture()
        let ids = try await select(selection, phases: Relay.syncingPhases)
        return try await withRelay { relay in
            let cutover = cutover(relay: relay)
            var report = CutoverReport(cutover: [], failed: [:])
            for (index, id) in ids.enumerated() {
                try Task.checkCancellation()
                do {
                    var attempt = 0
                    let done: Cutover.Report
                    while true {
                        do {
                            done = try await cutover.cutover(id, maxPause: maxPause)
                            break
                        } catch where attempt < retries && !(error is CancellationError) {
                            attempt += 1
                            report.retries += 1
                            progress?(OperationProgress(
                                done: index, total: ids.count, tenant: id,
                                message: "aborted cleanly (\(Database.oneLine(error))); retry \(attempt) of \(retries)"))
                            try await Task.sleep(for: retryDelay)
                        }
                    }
                    report.cutover.append(done)
                    progress?(OperationProgress(
                        done: index + 1, total: ids.count, tenant: id,
                        message: "dedicated (writes paused \(String(format: "%.1f", done.pauseMilliseconds)) ms, "
                            + "\(done.drained) change(s) drained)"))
                } catch {
                    report.failed[id.rawValue] = Database.oneLine(error)
                    progress?(OperationProgress(
                        done: index + 1, total: ids.count, tenant: id, failed: true, message: "FAILED: \(Database.oneLine(error))"))
                }
            }
            return report
        }
    }

    /// Moves tenants back to the unified database from any phase, losing nothing (after cutover, a
    /// cutover in the other direction). Stops at the first failure (an unknown tenant is one).
    public func rollback(
        _ ids: [TenantID], maxPause: Duration = .seconds(5), progress: ProgressHandler? = nil
    ) async throws -> [Cutover.Report] {
        try await TenantryTracing.operation("tenantry.rollback", .tenants(ids)) { _ in
            try await rollbackTenants(ids, maxPause: maxPause, progress: progress)
        }
    }

    private func rollbackTenants(_ ids: [TenantID], maxPause: Duration, progress: ProgressHandler?) async throws -> [Cutover.Report] {
        try await requireCapture()
        return try await withRelay { relay in
            let cutover = cutover(relay: relay)
            var reports: [Cutover.Report] = []
            for (index, id) in ids.enumerated() {
                _ = try await catalog.requireTenant(id)
                reports.append(try await cutover.rollback(id, maxPause: maxPause))
                progress?(OperationProgress(done: index + 1, total: ids.count, tenant: id, message: "shared again"))
            }
            return reports
        }
    }

    /// Deletes dedicated tenants' rows from the unified database (the seeds' retire-legacy):
    /// verified first and archived into `archiveDirectory` as the configuration says
    /// (`VERIFY_BEFORE_RETIREMENT`, `ARCHIVE_BEFORE_DELETE`); `ids` `nil` is every dedicated tenant.
    public func retire(_ ids: [TenantID]?, archiveDirectory: String, dryRun: Bool) async throws -> Retirement.Report {
        try await requireCapture()
        let settings = operations.configuration.retirement
        return try await withRelay { relay in
            let retirement = Retirement(
                catalog: catalog, servers: operations.servers, unifiedURL: unifiedURL, plan: plan,
                relay: relay, verifyFirst: settings.verifyFirst, actor: operations.actor, logger: logger)
            return try await retirement.retire(ids, archiveDirectory: settings.archiveFirst ? archiveDirectory : nil, dryRun: dryRun)
        }
    }

    /// Loads a retirement archive back into the unified database; its tenants are dedicated again.
    public func restore(archive: String) async throws -> Retirement.Report {
        try await requireCapture()
        return try await withRelay { relay in
            let retirement = Retirement(
                catalog: catalog, servers: operations.servers, unifiedURL: unifiedURL, plan: plan,
                relay: relay, actor: operations.actor, logger: logger)
            return try await retirement.restore(archive: archive)
        }
    }
}
