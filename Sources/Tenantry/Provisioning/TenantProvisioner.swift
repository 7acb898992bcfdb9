import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// Creates and removes tenant databases (the seed's TenantProvisioningService), as a saga:
/// every step is undone, in reverse, when a later one fails; the tenant's state is in the catalog;
/// an advisory lock per tenant makes retried and concurrent calls end with exactly one database.
public struct TenantProvisioner: Sendable {
    /// The saga's steps, in order.
    public enum Step: String, Sendable, CaseIterable, Codable {
        case createRole, createDatabase, grantPrivileges, storeCredentials, verify
    }

    /// What a provision did.
    public struct Outcome: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: String
        /// `created`, or `existing` when the tenant was already provisioned and healthy.
        public var result: String
        /// The server.
        public var server: String
        /// The database.
        public var database: String
        /// The role.
        public var role: String
        /// The schema version of the new database.
        public var schemaVersion: Int
        /// How long it took.
        public var milliseconds: Int
    }

    /// The catalog.
    public var catalog: Catalog
    /// Admin logins per server.
    public var servers: ServerDirectory
    /// Seals passwords.
    public var keyring: Keyring
    /// Database and role name templates.
    public var naming: TenantryConfiguration.Naming
    /// Fleet migration files (the template is migrated to the latest first).
    public var migrations: [MigrationFile]
    /// Most connections the tenant role may open (the router's per-tenant cap plus headroom).
    public var connectionLimit: Int
    /// Audit actor.
    public var actor: String
    /// Logger.
    public var logger: Logger
    /// Test hook: called after each step; throwing simulates a failure at that point.
    public var faultInjection: (@Sendable (Step) throws -> Void)?

    /// Creates a provisioner.
    public init(catalog: Catalog, servers: ServerDirectory, keyring: Keyring, naming: TenantryConfiguration.Naming,
                migrations: [MigrationFile], connectionLimit: Int = 25, actor: String, logger: Logger) {
        self.catalog = catalog
        self.servers = servers
        self.keyring = keyring
        self.naming = naming
        self.migrations = migrations
        self.connectionLimit = connectionLimit
        self.actor = actor
        self.logger = logger
    }

    var template: TemplateDatabase {
        TemplateDatabase(name: naming.templateDatabase, servers: servers, migrations: migrations, logger: logger)
    }

    /// Provisions `tenant` on `server` (default: the server with the fewest tenants).
    public func provision(_ tenant: TenantID, server requested: String? = nil) async throws -> Outcome {
        let database = naming.databaseName(for: tenant)
        let role = naming.roleName(for: tenant)
        try SQLIdentifier.validateName(database, what: "database name")
        try SQLIdentifier.validateName(role, what: "role name")
        guard !migrations.isEmpty else {
            throw TenantryError(
                code: .invalidArgument,
                message: "there are no fleet migrations: run 'tenantry schema derive' to write the tenant schema first")
        }
        let started = ContinuousClock.now
        return try await withTenantLock(tenant) {
            if let existing = try await catalog.tenant(tenant), existing.status == .active, existing.databaseName != nil {
                return try await checkExisting(existing, started: started)
            }
            let server = try await chooseServer(requested)
            try await template.prepare(server: server == ServerDirectory.defaultServerName ? nil : server)
            try await removeLeftovers(database: database, role: role, server: server)
            var record = try await catalog.tenant(tenant) ?? TenantRecord(id: tenant)
            record.status = .provisioning
            record.serverName = server == ServerDirectory.defaultServerName ? nil : server
            record.databaseName = database
            record.roleName = role
            record.lastError = nil
            try await catalog.upsertTenant(record)

            var undo: [(String, @Sendable () async throws -> Void)] = []
            do {
                let version = try await runSaga(
                    tenant: tenant, database: database, role: role, server: record.serverName, undo: &undo)
                record.status = .active
                record.schemaVersion = version
                try await catalog.upsertTenant(record)
                if (try await catalog.move(tenant))?.phase ?? .shared == .shared {
                    try await catalog.setPhase(tenant, to: .provisioned)
                }
                try await catalog.audit(
                    actor: actor, action: "provision", tenant: tenant, outcome: .ok,
                    detail: ["server": server, "database": database, "role": role, "schema_version": "\(version)"])
                return Outcome(
                    tenant: tenant.rawValue, result: "created", server: server, database: database, role: role,
                    schemaVersion: version, milliseconds: FleetMigrator.milliseconds(since: started))
            } catch {
                for (name, step) in undo.reversed() {
                    do { try await step() } catch {
                        logger.error("provisioning undo failed", metadata: [
                            "tenant.id": "\(tenant)", "provision.undo": "\(name)", "error": "\(Database.message(of: error))"])
                    }
                }
                let message = Database.message(of: error)
                record.status = .failed
                record.lastError = message
                try? await catalog.upsertTenant(record)
                try? await catalog.audit(
                    actor: actor, action: "provision", tenant: tenant, outcome: .failed, detail: ["error": message])
                throw TenantryError(
                    code: (error as? TenantryError)?.code ?? .database,
                    message: "provisioning tenant \(tenant) failed (undone): \(message)", tenant: tenant.rawValue, underlying: error)
            }
        }
    }

    private func runSaga(
        tenant: TenantID, database: String, role: String, server: String?,
        undo: inout [(String, @Sendable () async throws -> Void)]
    ) async throws -> Int {
        let admin = try servers.adminURL(server: server, database: "postgres")
        let password = SCRAMVerifier.generatePassword()
        let verifier = try SCRAMVerifier.make(password: password)
        let logger = logger
        let quotedRole = try SQLIdentifier.quoted(role)
        let quotedDatabase = try SQLIdentifier.quoted(database)

        try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: """
                CREATE ROLE \(quotedRole) LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
                CONNECTION LIMIT \(connectionLimit) PASSWORD \(SchemaDDL.literal(verifier))
                """), logger: logger)
        }
        undo.append(("drop role", { try await Self.execute("DROP ROLE IF EXISTS \(quotedRole)", on: admin, logger: logger) }))
        try faultInjection?(.createRole)

        try await template.withSharedLock(server: server) { connection in
            try await Self.retryingObjectInUse {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "CREATE DATABASE \(quotedDatabase) TEMPLATE \(try SQLIdentifier.quoted(naming.templateDatabase))"), logger: logger)
            }
        }
        undo.append(("drop database", {
            try await Self.execute("DROP DATABASE IF EXISTS \(quotedDatabase) WITH (FORCE)", on: admin, logger: logger)
        }))
        try faultInjection?(.createDatabase)

        try await Database.withConnection(admin, logger: logger) { connection in
            try await Database.execute(script: """
                REVOKE ALL ON DATABASE \(quotedDatabase) FROM PUBLIC;
                GRANT CONNECT, TEMPORARY ON DATABASE \(quotedDatabase) TO \(quotedRole);
                """, on: connection, logger: logger)
        }
        try await Database.withConnection(admin.with(database: database), logger: logger) { connection in
            try await Database.execute(script: """
                REVOKE ALL ON SCHEMA public FROM PUBLIC;
                GRANT USAGE ON SCHEMA public TO \(quotedRole);
                GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public TO \(quotedRole);
                GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO \(quotedRole);
                REVOKE ALL ON tenantry_schema_migrations FROM \(quotedRole);
                GRANT SELECT ON tenantry_schema_migrations TO \(quotedRole);
                ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLES TO \(quotedRole);
                ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO \(quotedRole);
                """, on: connection, logger: logger)
        }
        // Privileges live in the database and go with it: nothing of their own to undo.
        try faultInjection?(.grantPrivileges)

        let sealed = try keyring.seal(password, tenant: tenant.rawValue, field: "password")
        try await catalog.storeCredential(tenant: tenant, username: role, passwordSealed: sealed)
        let catalog = catalog
        undo.append(("delete credentials", { try await catalog.deleteCredential(tenant) }))
        try faultInjection?(.storeCredentials)

        let version = try await verifyLogin(
            url: admin.with(database: database).with(user: role, password: password), tenant: tenant)
        let expected = migrations.last?.version ?? 0
        guard version == expected else {
            throw TenantryError(
                code: .database, message: "the new database is at schema V\(version), expected V\(expected)", tenant: tenant.rawValue)
        }
        try faultInjection?(.verify)
        return version
    }

    /// Connects as the tenant role and reads the schema version.
    func verifyLogin(url: PostgresURL, tenant: TenantID) async throws -> Int {
        do {
            return try await Database.withConnection(url, logger: logger) { connection in
                let rows = try await connection.query(
                    "SELECT coalesce(max(version), 0) FROM tenantry_schema_migrations", logger: logger)
                return try await rows.decode(Int.self).first(where: { _ in true }) ?? 0
            }
        } catch {
            throw Database.wrap(error, "the tenant role cannot use its database", tenant: tenant.rawValue)
        }
    }

    private func checkExisting(_ record: TenantRecord, started: ContinuousClock.Instant) async throws -> Outcome {
        guard let database = record.databaseName, let credential = try await catalog.credential(record.id) else {
            throw TenantryError(code: .conflict, message: "tenant \(record.id) is active but has no credentials", tenant: record.id.rawValue)
        }
        let password = try keyring.open(credential.passwordSealed, tenant: record.id.rawValue, field: "password")
        let url = try servers.adminURL(server: record.serverName, database: database).with(user: credential.username, password: password)
        let version = try await verifyLogin(url: url, tenant: record.id)
        return Outcome(
            tenant: record.id.rawValue, result: "existing", server: record.serverName ?? ServerDirectory.defaultServerName,
            database: database, role: credential.username, schemaVersion: version,
            milliseconds: FleetMigrator.milliseconds(since: started))
    }

    /// Drops a database or role of this tenant left by a crashed run (the tenant is not active).
    private func removeLeftovers(database: String, role: String, server: String) async throws {
        let admin = try servers.adminURL(server: server == ServerDirectory.defaultServerName ? nil : server, database: "postgres")
        try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(try SQLIdentifier.quoted(database)) WITH (FORCE)"), logger: logger)
            try await connection.query(
                PostgresQuery(unsafeSQL: "DROP ROLE IF EXISTS \(try SQLIdentifier.quoted(role))"), logger: logger)
        }
    }

    /// The requested server, or the one hosting the fewest tenants.
    func chooseServer(_ requested: String?) async throws -> String {
        let registered = servers.servers.map(\.name)
        if let requested {
            guard requested == ServerDirectory.defaultServerName || registered.contains(requested) else {
                throw TenantryError(code: .invalidArgument, message: "server '\(requested)' is not registered (tenantry servers list)")
            }
            return requested
        }
        guard !registered.isEmpty else { return ServerDirectory.defaultServerName }
        let tenants = try await catalog.tenants().filter { $0.databaseName != nil && $0.status != .deprovisioned }
        let load = Dictionary(grouping: tenants) { $0.serverName ?? ServerDirectory.defaultServerName }.mapValues(\.count)
        return registered.min { (load[$0] ?? 0, $0) < (load[$1] ?? 0, $1) } ?? registered[0]
    }

    /// Holds the tenant's advisory lock (in the catalog database) around `body`.
    func withTenantLock<Result: Sendable>(_ tenant: TenantID, _ body: () async throws -> Result) async throws -> Result {
        try await catalog.withDedicatedConnection { connection in
            try await connection.query(
                "SELECT pg_advisory_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.tenant(tenant)))", logger: logger)
            do {
                let result = try await body()
                try await connection.query(
                    "SELECT pg_advisory_unlock(\(AdvisoryLock.namespace), \(AdvisoryLock.tenant(tenant)))", logger: logger)
                return result
            } catch {
                _ = try? await connection.query(
                    "SELECT pg_advisory_unlock(\(AdvisoryLock.namespace), \(AdvisoryLock.tenant(tenant)))", logger: logger)
                throw error
            }
        }
    }

    /// Runs one statement on a new admin connection.
    static func execute(_ sql: String, on url: PostgresURL, logger: Logger) async throws {
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
    }

    /// `CREATE DATABASE … TEMPLATE` fails while someone is connected to the template: retry a few times.
    static func retryingObjectInUse(_ body: () async throws -> Void) async throws {
        var delay = Duration.milliseconds(50)
        for attempt in 0..<8 {
            do { return try await body() } catch where Database.sqlState(of: error) == "55006" && attempt < 7 {
                try await Task.sleep(for: delay)
                delay *= 2
            }
        }
    }
}
