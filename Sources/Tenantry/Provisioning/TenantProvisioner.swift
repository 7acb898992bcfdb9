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
    /// Set inside ``withSession(_:)``: connections and template checks shared by its provisions.
    var session: ProvisioningSession?

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
        guard let session else {
            return try await withSession { try await $0.provision(tenant, server: requested) }
        }
        let started = ContinuousClock.now
        return try await withTenantLock(tenant) {
            let previous = try await catalog.tenant(tenant)
            if let previous, previous.status == .active, previous.databaseName != nil {
                return try await checkExisting(previous, started: started)
            }
            if let previous, previous.placement == .dedicated, previous.databaseName != nil {
                throw TenantryError(
                    code: .conflict,
                    message: "tenant \(tenant) is \(previous.status.rawValue) but its data is served from \(previous.databaseName ?? "its database") "
                        + "(placement dedicated): it is not dropped and provisioned again", tenant: tenant.rawValue)
            }
            var record = try await place(tenant, requested: requested, database: database, role: role)
            let server = record.serverName ?? ServerDirectory.defaultServerName
            var ownsNames = true
            do {
                let admin = try servers.adminURL(server: record.serverName, database: "postgres")
                let templateKey = templateKey(admin)
                return try await session.withConnection(admin) { connection in
                    var undo: [Undo] = []
                    do {
                        if !session.isTemplateChecked(templateKey) {
                            try await template.prepare(server: record.serverName)
                            session.setTemplateChecked(templateKey, true)
                        }
                        do {
                            try await removeLeftovers(
                                tenant: tenant, database: database, role: role, previous: previous, on: connection)
                        } catch {
                            // Nothing of this run's to remove next time: what is there is not ours.
                            ownsNames = false
                            throw error
                        }
                        try await removeLeftovers(of: previous, unlessOn: server, database: database)
                        let version = try await runSaga(
                            tenant: tenant, database: database, role: role, admin: admin, connection: connection, undo: &undo)
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
                        // Whatever failed, the next provision on this server checks the template again.
                        session.setTemplateChecked(templateKey, false)
                        await runUndo(undo, connection: connection, admin: admin, tenant: tenant)
                        throw error
                    }
                }
            } catch {
                let message = Database.message(of: error)
                record.status = .failed
                record.lastError = message
                if !ownsNames {
                    // A later provision must not take the database or role of these names for a
                    // crashed run's leftovers: the catalog no longer names them.
                    record.databaseName = nil
                    record.roleName = nil
                }
                try? await catalog.upsertTenant(record)
                try? await catalog.audit(
                    actor: actor, action: "provision", tenant: tenant, outcome: .failed, detail: ["error": message])
                throw TenantryError(
                    code: (error as? TenantryError)?.code ?? .database,
                    message: "provisioning tenant \(tenant) failed (undone): \(message)", tenant: tenant.rawValue, underlying: error)
            }
        }
    }

    /// An undo step of the saga: its name, and what it runs on an admin connection to `postgres`.
    typealias Undo = (name: String, run: @Sendable (PostgresConnection) async throws -> Void)

    /// The saga proper, on `connection` (an admin connection to the server's `postgres` database).
    private func runSaga(
        tenant: TenantID, database: String, role: String, admin: PostgresURL, connection: PostgresConnection,
        undo: inout [Undo]
    ) async throws -> Int {
        let password = SCRAMVerifier.generatePassword()
        let verifier = try SCRAMVerifier.make(password: password)
        let logger = logger
        let quotedRole = try SQLIdentifier.quoted(role)
        let quotedDatabase = try SQLIdentifier.quoted(database)

        try await createRole(role, verifier: verifier, tenant: tenant, on: connection)
        undo.append(("drop role", { try await $0.query(PostgresQuery(unsafeSQL: "DROP ROLE IF EXISTS \(quotedRole)"), logger: logger) }))
        try faultInjection?(.createRole)

        let staging = Self.stagingName(database: database)
        let quotedStaging = try SQLIdentifier.quoted(staging)
        // Registered first: dropping names that do not exist (yet) is harmless.
        undo.append(("drop database", {
            try await $0.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(quotedStaging) WITH (FORCE)"), logger: logger)
            try await $0.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(quotedDatabase) WITH (FORCE)"), logger: logger)
        }))
        try await createMarkedDatabase(database, staging: staging, tenant: tenant, on: connection)
        try faultInjection?(.createDatabase)

        try await Database.execute(script: try Self.databasePrivileges(database: database, role: role), on: connection, logger: logger)
        try await Database.withConnection(admin.with(database: database), logger: logger) { connection in
            try await Database.execute(script: try Self.tablePrivileges(role: role), on: connection, logger: logger)
        }
        // Privileges live in the database and go with it: nothing of their own to undo.
        try faultInjection?(.grantPrivileges)

        let sealed = try keyring.seal(password, tenant: tenant.rawValue, field: "password")
        try await catalog.storeCredential(tenant: tenant, username: role, passwordSealed: sealed)
        let catalog = catalog
        undo.append(("delete credentials", { _ in try await catalog.deleteCredential(tenant) }))
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

    /// Runs the undo steps in reverse on `connection`; a step that fails there is tried once more on
    /// a new connection (the shared one may be what broke), then logged, and the others still run.
    private func runUndo(_ undo: [Undo], connection: PostgresConnection, admin: PostgresURL, tenant: TenantID) async {
        for step in undo.reversed() {
            do {
                do { try await step.run(connection) } catch {
                    try await Database.withConnection(admin, logger: logger) { try await step.run($0) }
                }
            } catch {
                logger.error("provisioning undo failed", metadata: [
                    LogMetadataKey.tenant: "\(tenant)", "provision.undo": "\(step.name)", "error": "\(Database.message(of: error))"])
            }
        }
    }

    /// Creates `tenant`'s login role with the SCRAM `verifier` and marks it. The verifier stays out
    /// of the server log (RoleDDL); the mark says Tenantry made the role.
    func createRole(_ role: String, verifier: String, tenant: TenantID, on connection: PostgresConnection) async throws {
        try await RoleDDL.run([
            """
            CREATE ROLE \(try SQLIdentifier.quoted(role)) LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
            CONNECTION LIMIT \(connectionLimit) PASSWORD \(SchemaDDL.literal(verifier))
            """,
            try TenantMark.markRole(role, tenant: tenant),
        ], on: connection, logger: logger)
    }

    /// Creates `database` from the server's template under the name `staging`, marks it, then
    /// renames it: the database never exists under its final name without the mark, so a run
    /// killed anywhere here leaves either nothing under that name or a marked database (a staging
    /// leftover is dropped by the next run). `connection`: an admin connection to `postgres`.
    func createMarkedDatabase(_ database: String, staging: String, tenant: TenantID, on connection: PostgresConnection) async throws {
        let quotedStaging = try SQLIdentifier.quoted(staging)
        let quotedTemplate = try SQLIdentifier.quoted(naming.templateDatabase)
        try await template.withSharedLock(on: connection) {
            try await Self.retryingObjectInUse {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "CREATE DATABASE \(quotedStaging) TEMPLATE \(quotedTemplate)"), logger: logger)
            }
        }
        try await connection.query(PostgresQuery(unsafeSQL: try TenantMark.markDatabase(staging, tenant: tenant)), logger: logger)
        try await connection.query(
            PostgresQuery(unsafeSQL: "ALTER DATABASE \(quotedStaging) RENAME TO \(try SQLIdentifier.quoted(database))"), logger: logger)
    }

    /// Connects as the tenant role and reads the schema version.
    func verifyLogin(url: PostgresURL, tenant: TenantID) async throws -> Int {
        do {
            return try await Self.schemaVersion(url, logger: logger)
        } catch {
            throw Database.wrap(error, "the tenant role cannot use its database", tenant: tenant.rawValue)
        }
    }

    /// The schema version recorded in the tenant database at `url`.
    static func schemaVersion(_ url: PostgresURL, logger: Logger) async throws -> Int {
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query("SELECT coalesce(max(version), 0) FROM tenantry_schema_migrations", logger: logger)
                .decode(Int.self).first(where: { _ in true }) ?? 0
        }
    }

    private func checkExisting(_ record: TenantRecord, started: ContinuousClock.Instant) async throws -> Outcome {
        guard let database = record.databaseName, let credential = try await catalog.credential(record.id) else {
            throw TenantryError(code: .conflict, message: "tenant \(record.id) is active but has no credentials", tenant: record.id.rawValue)
        }
        let password = try keyring.open(credential.passwordSealed, tenant: record.id.rawValue, field: "password")
        let url = try servers.adminURL(server: record.serverName, database: database).with(user: credential.username, password: password)
        let version = try await verifyLogin(url: url, tenant: record.id)
        try await bringUpToDate(record, role: credential.username)
        return Outcome(
            tenant: record.id.rawValue, result: "existing", server: record.serverName ?? ServerDirectory.defaultServerName,
            database: database, role: credential.username, schemaVersion: version,
            milliseconds: FleetMigrator.milliseconds(since: started))
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
