import Logging
import TenantryCore

extension Operations {
    /// Runs a ``FleetQuery`` through a router of its own, run for the call (pool limits from the
    /// configuration, so the per-server connection caps hold for the query's connections; to share
    /// an application router's caps, call ``FleetQuery/run(router:combineURL:logger:onBatch:)`` with
    /// it; needs `TENANT_ENCRYPTION_KEY` for the tenants' logins),
    /// with the configured discriminator (`TENANTRY_DISCRIMINATOR`), and returns its result.
    /// `onBatch` gets each tenant's rows as soon as the tenant has answered (not with a combine
    /// SQL). The combine SQL runs on the unified database, in a session of its own. The audit log
    /// records each run (`fleet.query`: tenants, answered, missing, combined; never the SQL text,
    /// which may hold personal data).
    public func fleetQuery(
        _ query: FleetQuery, onBatch: @escaping @Sendable (FleetQuery.Batch) throws -> Void = { _ in }
    ) async throws -> FleetQuery.Result {
        var configured = query
        configured.discriminator = configuration.naming.discriminator
        try configured.validate()
        let query = configured
        let keyring = try configuration.requireKeyring()
        // Metrics off: its pools must not overwrite the gauges of an application router in the
        // same process (same server labels), as for doctor and performance.
        let router = diagnosticRouter(keyring: keyring, monitor: nil)
        let (logger, unifiedURL) = (self.logger, databaseURL)
        do {
            let result = try await router.running {
                try await query.run(router: router, combineURL: unifiedURL, logger: logger, onBatch: onBatch)
            }
            try? await catalog.audit(actor: actor, action: "fleet.query", outcome: .ok, detail: [
                "tenants": "\(result.tenants)", "answered": "\(result.answered)", "missing": "\(result.missing.count)",
                "combined": "\(result.combined)"])
            return result
        } catch {
            try? await catalog.audit(actor: actor, action: "fleet.query", outcome: .failed, detail: [
                "error": (error as? TenantryError)?.code.description ?? "database"])
            throw error
        }
    }
}
