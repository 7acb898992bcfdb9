import PostgresNIO
import TenantryCore

extension TenantProvisioner {
    /// Chooses the tenant's server and records it, with the database and role names and status
    /// `provisioning`, in one catalog transaction under the catalog-wide placement lock: provisions
    /// running at the same time (in this process or any other) place one after another, and each
    /// counts the tenants the others have just placed.
    ///
    /// The server is `requested` when given (`default` or a registered name); otherwise, when servers
    /// are registered, the least loaded registered server *with room* (``PlacementCandidate/least(_:)``),
    /// else the default server. Loads are measured (``FleetMeasure``, sizes and connections) before
    /// the lock; under it, every tenant the catalog places that was not measured (placed since, or
    /// still provisioning) counts as the average measured tenant database.
    func place(_ tenant: TenantID, requested: String?, database: String, role: String) async throws -> TenantRecord {
        let registered = servers.servers.map(\.name).sorted()
        if let requested, requested != ServerDirectory.defaultServerName, !registered.contains(requested) {
            throw TenantryError(code: .invalidArgument, message: "server '\(requested)' is not registered (tenantry servers list)")
        }
        let logger = logger
        let defaultName = ServerDirectory.defaultServerName
        let measure: FleetMeasure? = requested == nil && !registered.isEmpty
            ? try await FleetMeasure.measure(
                catalog: catalog, directory: servers, defaultMaxConnections: Int.max, sample: .zero, skipUnreachable: true,
                logger: logger)
            : nil
        let chosen = try await catalog.client.withConnection { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.placement))", logger: logger)
                var server = requested ?? defaultName
                if let measure {
                    var placed: [(server: String, tenant: String)] = []
                    let rows = try await connection.query("""
                        SELECT coalesce(server_name, \(defaultName)), id FROM tenantry.tenants
                        WHERE status IN ('active', 'provisioning') AND database_name IS NOT NULL AND id <> \(tenant.rawValue)
                        """, logger: logger)
                    for try await (name, id) in rows.decode((String, String).self) { placed.append((name, id)) }
                    server = try Self.leastLoaded(PlacementCandidate.make(measure, placed: placed), tenant: tenant)
                }
                let serverName: String? = server == defaultName ? nil : server
                try await connection.query("""
                    INSERT INTO tenantry.tenants (id, status, server_name, database_name, role_name)
                    VALUES (\(tenant.rawValue), 'provisioning', \(serverName), \(database), \(role))
                    ON CONFLICT (id) DO UPDATE SET
                        status = 'provisioning', server_name = excluded.server_name, database_name = excluded.database_name,
                        role_name = excluded.role_name, last_error = NULL, updated_at = now()
                    """, logger: logger)
                return server
            }
        }
        guard let record = try await catalog.tenant(tenant), record.serverName ?? defaultName == chosen else {
            throw TenantryError(
                code: .conflict, message: "the catalog row of tenant \(tenant) changed while it was being placed", tenant: tenant.rawValue)
        }
        return record
    }

    /// The least loaded candidate with room for one more tenant database (see
    /// ``PlacementCandidate/least(_:)``); one clear error naming each server's limit when none has room.
    static func leastLoaded(_ candidates: [PlacementCandidate], tenant: TenantID) throws -> String {
        if let chosen = PlacementCandidate.least(candidates) { return chosen.name }
        guard !candidates.isEmpty else {
            throw TenantryError(
                code: .connectionFailed, message: "no registered server can be reached to place tenant \(tenant)", tenant: tenant.rawValue)
        }
        throw TenantryError(
            code: .conflict,
            message: "no registered server has room for tenant \(tenant): " + candidates.map(\.fullness).joined(separator: "; ")
                + " (raise a budget with 'tenantry servers set' or add a server)",
            tenant: tenant.rawValue)
    }
}
