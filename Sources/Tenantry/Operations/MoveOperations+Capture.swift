import TenantryCore

extension MoveOperations {
    /// What ``installCapture()`` did.
    public struct CaptureInstallReport: Sendable, Codable, Equatable {
        /// Tenant tables of the unified database that now have the capture trigger.
        public var tables: [String]
        /// Dedicated tenants whose databases' reverse capture was refreshed too.
        public var tenantDatabases: [String]
    }

    /// Installs (or refreshes, after a schema change or an upgrade) capture in the unified
    /// database, then refreshes reverse capture in every dedicated tenant's database, so that both
    /// sides run the same trigger and tables (the moved-tenant hint, `pause_kind`). Idempotent.
    public func installCapture() async throws -> CaptureInstallReport {
        let report = try await capture().install()
        let dedicated = try await catalog.tenants(inPhases: Relay.reversePhases + [.retired])
        var refreshed: [String] = []
        for tenant in dedicated {
            try await Database.withConnection(try await tenantURL(tenant), logger: logger) { connection in
                try await Cutover.installReverseCapture(tenant, plan: plan, on: connection, logger: logger)
            }
            refreshed.append(tenant.rawValue)
        }
        return CaptureInstallReport(tables: report.tables, tenantDatabases: refreshed)
    }
}
