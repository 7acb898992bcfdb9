import Foundation
import TenantryCore

extension MoveOperations {
    /// What ``migrateData(_:concurrency:captureTimeout:pauseSync:rows:progress:)`` did (`migrate-data --json`).
    public struct MigrateDataReport: Sendable, Codable, Equatable {
        /// Tenants copied now or already (``Copier/Report/skipped``), by tenant id.
        public var copied: [Copier.Report]
        /// Tenants that failed, with a one-line reason.
        public var failed: [String: String]
    }

    /// Copies tenants' rows into their databases online (the seeds' migrate-data): capture on, one
    /// snapshot, COPY; the tenant goes to `syncing`. `all` is every provisioned tenant. Resumable:
    /// a tenant already copied is skipped. With `pauseSync` (`ENABLE_DUAL_WRITE=false`), a newly
    /// copied tenant's sync starts paused. `rows` receives per-table row progress; `progress` an event
    /// without a tenant when the copy starts (`copying 3 tenant(s), 2 at a time`), then one per tenant.
    public func migrateData(
        _ selection: TenantSelection, concurrency: Int = 2, captureTimeout: Duration = .seconds(30), pauseSync: Bool = false,
        rows: (@Sendable (Copier.Progress) -> Void)? = nil, progress: ProgressHandler? = nil
    ) async throws -> MigrateDataReport {
        try await TenantryTracing.operation("tenantry.migrate-data", selection) { _ in
            try await migrateTenants(
                selection, concurrency: concurrency, captureTimeout: captureTimeout, pauseSync: pauseSync, rows: rows, progress: progress)
        }
    }

    private func migrateTenants(
        _ selection: TenantSelection, concurrency: Int, captureTimeout: Duration, pauseSync: Bool,
        rows: (@Sendable (Copier.Progress) -> Void)?, progress: ProgressHandler?
    ) async throws -> MigrateDataReport {
        try await requireCapture()
        let ids = try await select(selection)
        let copier = copier(captureTimeout: captureTimeout)
        let capture = capture()
        // The tenants are listed in the capture triggers a window ahead of their copies, so most
        // copies turn capture on without re-creating any trigger.
        let ahead = copier.listAhead(ids)
        var report = MigrateDataReport(copied: [], failed: [:])
        progress?(OperationProgress(done: 0, total: ids.count, message: "copying \(ids.count) tenant(s), \(concurrency) at a time"))
        try await forEachTenant(ids, concurrency: concurrency, { id in
            try await ahead.prepare(id)
            let copied = try await copier.copy(id) { rows?($0) }
            if pauseSync, !copied.skipped {
                try await capture.setSyncPaused(id, true, reason: "dual-write disabled (ENABLE_DUAL_WRITE=false)")
            }
            return copied
        }) { id, result, done in
            switch result {
            case .success(let copied):
                report.copied.append(copied)
                let line = copied.skipped ? "already copied"
                    : "\(copied.rows) rows in \(copied.seconds.twoDecimals) s (\(Int(Double(copied.rows) / max(copied.seconds, 0.001))) rows/s)"
                progress?(OperationProgress(done: done, total: ids.count, tenant: id, message: line))
            case .failure(let error):
                report.failed[id.rawValue] = Database.oneLine(error)
                progress?(OperationProgress(
                    done: done, total: ids.count, tenant: id, failed: true, message: "FAILED: \(Database.oneLine(error))"))
            }
        }
        report.copied.sort { $0.tenant < $1.tenant }
        return report
    }

    /// Turns the secondary writes on (capture on for tenants not copied yet, sync resumed) or off
    /// (sync paused; capture keeps the backlog) for tenants being moved (`all`: phases provisioned
    /// to reads_switched). Returns the tenants changed; each change is audited.
    public func setDualWrite(_ selection: TenantSelection, enabled: Bool) async throws -> [TenantID] {
        try await requireCapture()
        let ids = try await select(selection, phases: [.provisioned, .copying, .syncing, .readsSwitched])
        let capture = capture()
        for id in ids {
            _ = try await catalog.requireTenant(id)
            if enabled {
                try await capture.enable(id)
                try await capture.setSyncPaused(id, false)
            } else {
                try await capture.setSyncPaused(id, true, reason: "dual-write disabled")
            }
            try? await catalog.audit(
                actor: operations.actor, action: enabled ? "dual-write-enable" : "dual-write-disable", tenant: id, outcome: .ok)
        }
        return ids
    }
}
