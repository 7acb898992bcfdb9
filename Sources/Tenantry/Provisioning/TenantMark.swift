import Logging
import PostgresNIO
import TenantryCore

/// How Tenantry recognises the databases and roles it created: a comment
/// `tenantry:tenant=<id>` on each (`COMMENT ON DATABASE/ROLE`, stored in `pg_shdescription`, read
/// with `shobj_description`). Provisioning and deprovisioning drop only what carries the tenant's
/// mark: a database or role of the same name made by someone else (a name template collision),
/// or an unmarked one, is never dropped.
enum TenantMark {
    /// What a database or role of a given name is, for one tenant.
    enum State: Equatable {
        /// There is none.
        case absent
        /// It exists and carries this tenant's mark.
        case marked
        /// It exists without this tenant's mark (its comment, if it has one).
        case foreign(String?)
    }

    /// The comment that marks `tenant`'s database and role.
    static func text(_ tenant: TenantID) -> String { "tenantry:tenant=\(tenant.rawValue)" }

    /// The prefix of every mark (used to tell tenant roles from other roles).
    static let prefix = "tenantry:tenant="

    /// `COMMENT ON DATABASE … IS 'tenantry:tenant=<id>'`.
    static func markDatabase(_ database: String, tenant: TenantID) throws -> String {
        "COMMENT ON DATABASE \(try SQLIdentifier.quoted(database)) IS \(SchemaDDL.literal(text(tenant)))"
    }

    /// `COMMENT ON ROLE … IS 'tenantry:tenant=<id>'`.
    static func markRole(_ role: String, tenant: TenantID) throws -> String {
        "COMMENT ON ROLE \(try SQLIdentifier.quoted(role)) IS \(SchemaDDL.literal(text(tenant)))"
    }

    /// The state of database `name` for `tenant`.
    static func database(_ name: String, tenant: TenantID, on connection: PostgresConnection, logger: Logger) async throws -> State {
        try await state(
            connection.query("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = \(name)", logger: logger),
            tenant: tenant)
    }

    /// The state of role `name` for `tenant`.
    static func role(_ name: String, tenant: TenantID, on connection: PostgresConnection, logger: Logger) async throws -> State {
        try await state(
            connection.query("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = \(name)", logger: logger),
            tenant: tenant)
    }

    private static func state(_ rows: PostgresRowSequence, tenant: TenantID) async throws -> State {
        guard let comment = try await rows.decode(String?.self).first(where: { _ in true }) else { return .absent }
        return comment == text(tenant) ? .marked : .foreign(comment)
    }
}

/// Role DDL that carries a password verifier (`CREATE ROLE … PASSWORD`, `ALTER ROLE … PASSWORD`):
/// run in a transaction of its own with statement logging off, so that the verifier (from which
/// an offline dictionary attack on the password can start) never reaches the server log, even
/// with `log_statement = all`, `log_min_duration_statement` or an error in the statement.
enum RoleDDL {
    /// Runs `statements` in one transaction on `connection` (an admin connection) with
    /// `log_statement`, `log_min_duration_statement` and `log_min_error_statement` turned off for
    /// that transaction (`SET LOCAL`). Turning them off needs a superuser (the admin login is
    /// one); for another login the statements run anyway and a warning is logged.
    static func run(_ statements: [String], on connection: PostgresConnection, logger: Logger) async throws {
        try await Database.withTransaction(connection, logger: logger) { connection in
            let superuser = try await connection.query(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user", logger: logger)
                .decode(Bool.self).first(where: { _ in true }) ?? false
            if superuser {
                try await connection.query("SET LOCAL log_statement = 'none'", logger: logger)
                try await connection.query("SET LOCAL log_min_duration_statement = -1", logger: logger)
                try await connection.query("SET LOCAL log_min_error_statement = 'panic'", logger: logger)
            } else {
                logger.warning("the admin login is not a superuser: role DDL may reach the server log (log_statement)")
            }
            for statement in statements {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
        }
    }
}
