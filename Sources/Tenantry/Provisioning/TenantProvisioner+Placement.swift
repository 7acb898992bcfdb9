import PostgresNIO
import TenantryCore

extension TenantProvisioner {
    /// Chooses the tenant's server and records it, with the database and role names and status
    /// `provisioning`, in one catalog transaction under the catalog-wide placement lock: provisions
    /// running at the same time (in this process or any other) place one after another, and each
    /// counts the tenants the others have just placed.
    ///
    /// The server is `requested` when given (`default` or a registered name); otherwise, when servers
    /// are registered, the registered one hosting the fewest `active` or `provisioning` tenants
    /// (ties go to the first name), else the default server.
    func place(_ tenant: TenantID, requested: String?, database: String, role: String) async throws -> TenantRecord {
        let registered = servers.servers.map(\.name).sorted()
        if let requested, requested != ServerDirectory.defaultServerName, !registered.contains(requested) {
            throw TenantryError(code: .invalidArgument, message: "server '\(requested)' is not registered (tenantry servers list)")
        }
        let logger = logger
        let defaultName = ServerDirectory.defaultServerName
        let chosen = try await catalog.client.withConnection { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.placement))", logger: logger)
                var server = requested ?? defaultName
                if requested == nil, !registered.isEmpty {
                    var load: [String: Int] = [:]
                    let rows = try await connection.query("""
                        SELECT coalesce(server_name, \(defaultName)), count(*)::int FROM tenantry.tenants
                        WHERE status IN ('active', 'provisioning') AND database_name IS NOT NULL AND id <> \(tenant.rawValue)
                        GROUP BY 1
                        """, logger: logger)
                    for try await (name, count) in rows.decode((String, Int).self) { load[name] = count }
                    server = Self.leastLoaded(registered, load: load)
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

    /// The name in `names` with the lowest load; ties go to the first name in order.
    static func leastLoaded(_ names: [String], load: [String: Int]) -> String {
        names.min { (load[$0] ?? 0, $0) < (load[$1] ?? 0, $1) } ?? ServerDirectory.defaultServerName
    }
}
