import Logging
import PostgresNIO
import TenantryCore

/// The template database (`tenantry_template`) of each server: kept at the latest fleet schema
/// version so that provisioning is one `CREATE DATABASE … TEMPLATE`.
///
/// `CREATE DATABASE … TEMPLATE` fails while any session is connected to the template, so access is
/// coordinated with an advisory lock in the server's `postgres` database: migrating the template
/// takes it exclusively, cloning takes it shared.
public struct TemplateDatabase: Sendable {
    /// The default template name.
    public static let defaultName = "tenantry_template"

    /// The template database's name on every server.
    public var name: String

    /// Admin logins.
    public var servers: ServerDirectory
    /// The fleet migration files.
    public var migrations: [MigrationFile]
    /// Logger.
    public var logger: Logger

    /// Creates a handle.
    public init(name: String = TemplateDatabase.defaultName, servers: ServerDirectory, migrations: [MigrationFile], logger: Logger) {
        self.name = name
        self.servers = servers
        self.migrations = migrations
        self.logger = logger
    }

    /// Creates the template on `server` when missing and migrates it to the latest version.
    @discardableResult
    public func prepare(server: String?) async throws -> FleetMigrator.Outcome {
        try await withConnectionsAllowed(server: server, create: true) { url in
            let target = FleetMigrator.Target(database: name, tenant: nil, url: url)
            let outcome = await FleetMigrator(migrations: migrations, logger: logger).migrate(target)
            if let error = outcome.error {
                throw TenantryError(code: .database, message: "the template database \(name) could not be migrated: \(error)")
            }
            return outcome
        }
    }

    /// The template's schema version on `server` (`tenantry schema status`), read while
    /// connections to it are allowed for a moment.
    public func status(server: String?) async throws -> FleetMigrator.Status {
        try await withConnectionsAllowed(server: server, create: false) { url in
            await FleetMigrator(migrations: migrations, logger: logger).status(.init(database: name, tenant: nil, url: url))
        }
    }

    /// Runs `body` with the admin URL of the template on `server` while the template accepts
    /// connections, under the template lock (exclusive): creates the template first when `create`
    /// is true and it is missing.
    ///
    /// At rest the template accepts no connection at all (`ALLOW_CONNECTIONS false`, PUBLIC's
    /// privileges revoked): a session left open on it (a tenant role's, even the admin's) would
    /// make every `CREATE DATABASE … TEMPLATE` fail and stop all provisioning. Connections are
    /// allowed only for `body`, and turned off again afterwards whatever it did.
    public func withConnectionsAllowed<Result: Sendable>(
        server: String?, create: Bool = false, _ body: (PostgresURL) async throws -> Result
    ) async throws -> Result {
        let admin = try servers.adminURL(server: server, database: "postgres")
        let quoted = try SQLIdentifier.quoted(name)
        return try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query(
                "SELECT pg_advisory_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.templateMigration))", logger: logger)
            // Released when the connection closes.
            let rows = try await connection.query(
                "SELECT count(*)::int FROM pg_database WHERE datname = \(name)", logger: logger)
            let exists = try await rows.decode(Int.self).first(where: { _ in true }) != 0
            if !exists, create {
                try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(quoted)"), logger: logger)
            }
            guard exists || create else { return try await body(try servers.adminURL(server: server, database: name)) }
            try await connection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(quoted) ALLOW_CONNECTIONS true"), logger: logger)
            let result: Result
            do {
                result = try await body(try servers.adminURL(server: server, database: name))
            } catch {
                try? await Self.close(quoted, on: connection, logger: logger)
                throw error
            }
            try await Self.close(quoted, on: connection, logger: logger)
            return result
        }
    }

    /// No connections to the template, and no privileges on it for PUBLIC.
    private static func close(_ quoted: String, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(quoted) ALLOW_CONNECTIONS false"), logger: logger)
        try await connection.query(PostgresQuery(unsafeSQL: "REVOKE ALL ON DATABASE \(quoted) FROM PUBLIC"), logger: logger)
    }

    /// Runs `body` on an admin connection to `server`'s `postgres` database while holding the
    /// template lock shared (no migration of the template can run meanwhile).
    public func withSharedLock<Result: Sendable>(
        server: String?, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let admin = try servers.adminURL(server: server, database: "postgres")
        return try await Database.withConnection(admin, logger: logger) { connection in
            try await withSharedLock(on: connection) { try await body(connection) }
        }
    }

    /// Runs `body` while `connection` (an admin connection to the server's `postgres` database)
    /// holds the template lock shared, and releases it afterwards, so the connection can be reused.
    /// When releasing fails, the error is thrown: close the connection then, which releases it too.
    public func withSharedLock<Result: Sendable>(
        on connection: PostgresConnection, _ body: () async throws -> Result
    ) async throws -> Result {
        try await connection.query(
            "SELECT pg_advisory_lock_shared(\(AdvisoryLock.namespace), \(AdvisoryLock.templateMigration))", logger: logger)
        let result: Result
        do {
            result = try await body()
        } catch {
            _ = try? await connection.query(
                "SELECT pg_advisory_unlock_shared(\(AdvisoryLock.namespace), \(AdvisoryLock.templateMigration))", logger: logger)
            throw error
        }
        try await connection.query(
            "SELECT pg_advisory_unlock_shared(\(AdvisoryLock.namespace), \(AdvisoryLock.templateMigration))", logger: logger)
        return result
    }
}
