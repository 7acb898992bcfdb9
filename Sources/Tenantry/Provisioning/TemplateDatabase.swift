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
        let admin = try servers.adminURL(server: server, database: "postgres")
        return try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query(
                "SELECT pg_advisory_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.templateMigration))", logger: logger)
            // Released when the connection closes.
            let rows = try await connection.query(
                "SELECT count(*)::int FROM pg_database WHERE datname = \(name)", logger: logger)
            if try await rows.decode(Int.self).first(where: { _ in true }) == 0 {
                try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
            }
            let target = FleetMigrator.Target(
                database: name, tenant: nil, url: try servers.adminURL(server: server, database: name))
            let outcome = await FleetMigrator(migrations: migrations, logger: logger).migrate(target)
            if let error = outcome.error {
                throw TenantryError(code: .database, message: "the template database \(name) could not be migrated: \(error)")
            }
            return outcome
        }
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
