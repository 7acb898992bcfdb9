import Foundation
import TenantryCore

extension MoveOperations {
    /// What ``verify(_:chunkSize:progress:)`` found (`verify-sync --json`).
    public struct VerifyReport: Sendable, Codable, Equatable {
        /// Whether every table of every tenant is equal.
        public var equal: Bool
        /// Per tenant.
        public var tenants: [Verifier.Report]
    }

    /// Compares tenants' rows in the unified and tenant databases (the seeds' verify-sync): counts,
    /// chunk checksums, differing rows named. `all` is every tenant copied (syncing to dedicated).
    /// Differences are re-checked after the relay drains the tenant.
    public func verify(
        _ selection: TenantSelection, chunkSize: Int = 10_000, progress: ProgressHandler? = nil
    ) async throws -> VerifyReport {
        try await TenantryTracing.operation("tenantry.verify-sync", selection) { _ in
            try await verifyTenants(selection, chunkSize: chunkSize, progress: progress)
        }
    }

    private func verifyTenants(_ selection: TenantSelection, chunkSize: Int, progress: ProgressHandler?) async throws -> VerifyReport {
        let ids = try await select(selection, phases: [.syncing, .readsSwitched, .cutover, .dedicated])
        let verifier = Verifier(plan: plan, chunkSize: chunkSize, logger: logger)
        let reports = try await withRelay { relay in
            var reports: [Verifier.Report] = []
            for (index, id) in ids.enumerated() {
                let report = try await verifier.verify(
                    id, unifiedURL: unifiedURL, tenantURL: try await tenantURL(id),
                    settle: { _ = try await relay.catchUp([id], timeout: .seconds(60)) })
                reports.append(report)
                let rows = report.tables.reduce(0) { $0 + $1.unifiedRows }
                progress?(OperationProgress(
                    done: index + 1, total: ids.count, tenant: id, failed: !report.equal,
                    message: "\(report.equal ? "equal" : "DIFFERENT") (\(report.tables.count) tables, \(rows) rows, "
                        + "\(report.seconds.twoDecimals) s)"))
            }
            return reports
        }
        return VerifyReport(equal: reports.allSatisfy(\.equal), tenants: reports)
    }
}
