import Logging
import PostgresNIO
import TenantryCore

extension TenantProvisioner {
    /// On the server's `postgres` database: nobody but the tenant's role may connect to its
    /// database (PUBLIC's `CONNECT` and `TEMPORARY` revoked).
    static func databasePrivileges(database: String, role: String) throws -> String {
        let quotedDatabase = try SQLIdentifier.quoted(database)
        return """
            REVOKE ALL ON DATABASE \(quotedDatabase) FROM PUBLIC;
            GRANT CONNECT, TEMPORARY ON DATABASE \(quotedDatabase) TO \(try SQLIdentifier.quoted(role));
            """
    }

    /// In the tenant database: DML only (`SELECT, INSERT, UPDATE, DELETE`) on the tables, and the
    /// sequences; no `TRUNCATE` (capture does not see it), `TRIGGER` (a tenant's trigger would fire
    /// inside Tenantry's superuser apply sessions) or `REFERENCES`. Revoking makes it safe to
    /// re-run on a database provisioned with the older, wider grants.
    static func tablePrivileges(role: String) throws -> String {
        let quotedRole = try SQLIdentifier.quoted(role)
        return """
            REVOKE ALL ON SCHEMA public FROM PUBLIC;
            GRANT USAGE ON SCHEMA public TO \(quotedRole);
            REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM \(quotedRole);
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \(quotedRole);
            GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO \(quotedRole);
            REVOKE ALL ON tenantry_schema_migrations FROM \(quotedRole);
            GRANT SELECT ON tenantry_schema_migrations TO \(quotedRole);
            ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE TRUNCATE, REFERENCES, TRIGGER ON TABLES FROM \(quotedRole);
            ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \(quotedRole);
            ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO \(quotedRole);
            """
    }

    /// Brings an already provisioned tenant (its own login just worked) up to what a new
    /// provision makes: its database and role get the tenant's mark when they have no comment at
    /// all (provisioned before marks), PUBLIC's access to the database is revoked and the role
    /// has DML only. Idempotent.
    func bringUpToDate(_ record: TenantRecord, role: String) async throws {
        guard let database = record.databaseName else { return }
        let admin = try servers.adminURL(server: record.serverName, database: "postgres")
        let logger = logger
        try await Database.withConnection(admin, logger: logger) { connection in
            if try await TenantMark.database(database, tenant: record.id, on: connection, logger: logger) == .foreign(nil) {
                try await connection.query(
                    PostgresQuery(unsafeSQL: try TenantMark.markDatabase(database, tenant: record.id)), logger: logger)
            }
            if try await TenantMark.role(role, tenant: record.id, on: connection, logger: logger) == .foreign(nil) {
                try await connection.query(PostgresQuery(unsafeSQL: try TenantMark.markRole(role, tenant: record.id)), logger: logger)
            }
            try await Database.execute(script: try Self.databasePrivileges(database: database, role: role), on: connection, logger: logger)
        }
        try await Database.withConnection(admin.with(database: database), logger: logger) { connection in
            try await Database.execute(script: try Self.tablePrivileges(role: role), on: connection, logger: logger)
        }
    }
}
