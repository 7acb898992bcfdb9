import Logging
import PostgresNIO
import TenantryCore

/// Keeps tenant roles out of the databases that are not theirs: the unified database (and the
/// catalog's, when it is another), and each server's `postgres` and `template1`. PostgreSQL lets
/// PUBLIC connect to every database by default; `tenantry guard install` grants `CONNECT` on those
/// databases to every login role that can connect now and is not a tenant role (plus the
/// application roles), then revokes `CONNECT` from PUBLIC. Superusers need no grant. Tenant
/// databases and the template are closed by provisioning itself (docs/provisioning.md).
///
/// Tenant roles are the roles the catalog names and every role marked `tenantry:tenant=…`.
/// A role created later needs `GRANT CONNECT ON DATABASE … TO role` to reach those databases.
public struct ConnectLockdown: Sendable {
    /// One database whose `CONNECT` changes (or would change).
    public struct Change: Sendable, Codable, Equatable {
        /// The server (`default` or a registered name).
        public var server: String
        /// The database.
        public var database: String
        /// Roles granted `CONNECT` explicitly, so they keep it.
        public var grantTo: [String]
        /// Tenant roles that lose access (they could connect through PUBLIC).
        public var tenantRolesShutOut: [String]
    }

    /// A tenant role that can still connect to a database other than its own.
    public struct Reach: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: String
        /// Its role.
        public var role: String
        /// The databases it can connect to besides its own.
        public var databases: [String]
    }

    /// The catalog (tenant roles, servers).
    public var catalog: Catalog
    /// Admin logins per server.
    public var servers: ServerDirectory
    /// The unified database's name (on the default server).
    public var unifiedDatabase: String
    /// Roles that must keep `CONNECT` to the unified database (the guard's application roles).
    public var appRoles: [String]
    /// Logger.
    public var logger: Logger

    /// Creates a lockdown handle.
    public init(catalog: Catalog, servers: ServerDirectory, unifiedDatabase: String, appRoles: [String], logger: Logger) {
        self.catalog = catalog
        self.servers = servers
        self.unifiedDatabase = unifiedDatabase
        self.appRoles = appRoles
        self.logger = logger
    }

    /// What ``apply()`` would change; changes nothing.
    public func plan() async throws -> [Change] {
        try await run(apply: false)
    }

    /// Grants `CONNECT` to the roles that use each database, then revokes it from PUBLIC (one
    /// transaction per server). Idempotent: a database PUBLIC can no longer connect to is left as it is.
    @discardableResult
    public func apply() async throws -> [Change] {
        try await run(apply: true)
    }

    /// Every tenant role that can connect to a database other than its own (any database on its
    /// server that accepts connections), as `tenantry doctor` reports it.
    public func reach() async throws -> [Reach] {
        var result: [Reach] = []
        let tenants = try await catalog.tenants().filter { $0.status == .active && $0.roleName != nil }
        for (server, members) in Dictionary(grouping: tenants, by: { $0.serverName ?? ServerDirectory.defaultServerName }) {
            let admin = try servers.adminURL(server: server, database: "postgres")
            result += try await Database.withConnection(admin, logger: logger) { connection in
                var found: [Reach] = []
                for tenant in members.sorted(by: { $0.id.rawValue < $1.id.rawValue }) {
                    guard let role = tenant.roleName else { continue }
                    let exists = try await connection.query(
                        "SELECT count(*)::int FROM pg_roles WHERE rolname = \(role)", logger: logger)
                        .decode(Int.self).first(where: { _ in true }) ?? 0
                    guard exists > 0 else { continue }
                    let rows = try await connection.query("""
                        SELECT d.datname::text FROM pg_database d
                        WHERE d.datallowconn AND d.datname IS DISTINCT FROM \(tenant.databaseName)
                          AND has_database_privilege(\(role), d.oid, 'CONNECT')
                        ORDER BY 1
                        """, logger: logger)
                    let databases = try await rows.decode(String.self).reduce(into: [String]()) { $0.append($1) }
                    if !databases.isEmpty { found.append(Reach(tenant: tenant.id.rawValue, role: role, databases: databases)) }
                }
                return found
            }
        }
        return result.sorted { $0.tenant < $1.tenant }
    }

    private func run(apply: Bool) async throws -> [Change] {
        let catalogRoles = Set(try await catalog.tenants().compactMap(\.roleName))
        var changes: [Change] = []
        var seen: Set<String> = []
        var targets: [(name: String, databases: [String])] = [(ServerDirectory.defaultServerName, [unifiedDatabase])]
        if let catalogURL = catalog.url, catalogURL.host == servers.databaseURL.host, catalogURL.port == servers.databaseURL.port,
           catalogURL.database != unifiedDatabase {
            targets[0].databases.append(catalogURL.database)
        }
        targets += servers.servers.map { ($0.name, []) }
        for target in targets {
            let admin = try servers.adminURL(server: target.name, database: "postgres")
            // Registered servers may be the default one under another name: each cluster once.
            guard seen.insert("\(admin.host):\(admin.port)").inserted else { continue }
            let databases = target.databases + ["postgres", "template1"]
            changes += try await Database.withConnection(admin, logger: logger) { connection in
                try await Database.withTransaction(connection, logger: logger) { connection in
                    var changes: [Change] = []
                    for database in databases {
                        guard let change = try await change(
                            server: target.name, database: database, catalogRoles: catalogRoles, on: connection)
                        else { continue }
                        if apply {
                            let quoted = try SQLIdentifier.quoted(database)
                            if !change.grantTo.isEmpty {
                                let roles = try change.grantTo.map { try SQLIdentifier.quoted($0) }.joined(separator: ", ")
                                try await connection.query(
                                    PostgresQuery(unsafeSQL: "GRANT CONNECT ON DATABASE \(quoted) TO \(roles)"), logger: logger)
                            }
                            try await connection.query(
                                PostgresQuery(unsafeSQL: "REVOKE CONNECT ON DATABASE \(quoted) FROM PUBLIC"), logger: logger)
                        }
                        changes.append(change)
                    }
                    return changes
                }
            }
        }
        return changes
    }

    /// The change `database` needs: `nil` when it does not exist or PUBLIC cannot connect to it.
    private func change(
        server: String, database: String, catalogRoles: Set<String>, on connection: PostgresConnection
    ) async throws -> Change? {
        let open = try await connection.query("""
            SELECT has_database_privilege('public', oid, 'CONNECT') FROM pg_database WHERE datname = \(database)
            """, logger: logger).decode(Bool.self).first(where: { _ in true })
        guard open == true else { return nil }
        let rows = try await connection.query("""
            SELECT r.rolname::text, coalesce(shobj_description(r.oid, 'pg_authid'), '') LIKE 'tenantry:tenant=%'
            FROM pg_roles r
            WHERE NOT r.rolsuper AND r.rolname NOT LIKE 'pg\\_%'
              AND (r.rolcanlogin OR r.rolname = ANY(\(appRoles)))
              AND has_database_privilege(r.oid, (SELECT oid FROM pg_database WHERE datname = \(database)), 'CONNECT')
            ORDER BY 1
            """, logger: logger)
        var change = Change(server: server, database: database, grantTo: [], tenantRolesShutOut: [])
        for try await (role, marked) in rows.decode((String, Bool).self) {
            if marked || catalogRoles.contains(role) {
                change.tenantRolesShutOut.append(role)
            } else {
                change.grantTo.append(role)
            }
        }
        return change
    }
}
