import Logging
import PostgresNIO
import TenantryCore

extension Relay {
    /// Keeps a dedicated tenant's id blocks ahead of its writes (``SequenceSync/extendBlocks(tenantDatabase:unified:)``)
    /// and records the headroom left in the unified database's capture state (`tenantry status`).
    /// Runs on the reverse stream's connection after a batch, at most every
    /// ``Configuration/idBlockCheckInterval``; a failure is logged and tried again at the next check
    /// (an exhausted block fails the tenant's inserts loudly, never silently).
    func maintainIdBlocks(
        _ tenant: TenantID, unified endpoint: MoveEndpoint, tenantDatabase: PostgresConnection, inUse: ConnectionsInUse
    ) async {
        guard takeBlockCheck(tenant) else { return }
        do {
            try await connections.withConnection(endpoint, tenant: tenant, tracking: inUse) { unified in
                let headroom = try await SequenceSync(plan: plan, logger: logger)
                    .extendBlocks(tenantDatabase: tenantDatabase, unified: unified)
                try await unified.query("""
                    UPDATE tenantry.capture_state SET id_headroom = \(headroom) WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
            }
        } catch {
            logger.warning("relay: could not check id blocks", metadata: [
                LogMetadataKey.tenant: "\(tenant)", "error": "\(Database.message(of: error))"])
        }
    }
}
