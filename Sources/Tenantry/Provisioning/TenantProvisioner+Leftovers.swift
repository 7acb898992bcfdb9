import Logging
import PostgresNIO
import TenantryCore

extension TenantProvisioner {
    /// Drops the database and role of these names when a crashed (or failed and not fully undone)
    /// run of this tenant left them: they carry the tenant's mark and the catalog's record of the
    /// earlier run (`previous`, in status provisioning, failed or deprovisioning) names them.
    /// Anything else of these names is left alone and the provision is refused: a database or role
    /// that someone else made (a name template collision), or one the catalog has no record of
    /// (a catalog restored from an older backup), may hold live data.
    /// The name a tenant database is created under before it is marked and renamed:
    /// ``stagingPrefix(database:)`` and a random part.
    static func stagingName(database: String) -> String {
        stagingPrefix(database: database) + String(UInt32.random(in: .min ... .max), radix: 16)
    }

    /// The prefix of `database`'s staging names: one no name template produces by accident, and a
    /// hash of the final name, so that catalogs sharing a server (each its own name template) never
    /// take each other's staging databases for leftovers.
    static func stagingPrefix(database: String) -> String {
        "tenantry-new-\(String(StableHash.fnv1a64(database), radix: 16))-"
    }

    /// Drops the staging databases of `database` (``stagingPrefix(database:)``) that a killed run
    /// left, on an admin connection to the server's `postgres` database. Only while holding the lock
    /// that serialises runs for the tenant.
    func dropStagingLeftovers(of database: String, on connection: PostgresConnection) async throws {
        let staging = try await connection.query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, \(Self.stagingPrefix(database: database)))", logger: logger)
            .decode(String.self).reduce(into: [String]()) { $0.append($1) }
        for name in staging {
            try await connection.query(
                PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(try SQLIdentifier.quoted(name)) WITH (FORCE)"), logger: logger)
        }
    }

    func removeLeftovers(
        tenant: TenantID, database: String, role: String, previous: TenantRecord?, on connection: PostgresConnection
    ) async throws {
        // Staging databases of this tenant are a killed run's (the tenant lock is held): drop them.
        try await dropStagingLeftovers(of: database, on: connection)
        let databaseState = try await TenantMark.database(database, tenant: tenant, on: connection, logger: logger)
        let roleState = try await TenantMark.role(role, tenant: tenant, on: connection, logger: logger)
        let leftByEarlierRun = previous.map {
            [.provisioning, .failed, .deprovisioning].contains($0.status)
        } ?? false
        for (kind, name, state, recorded) in [
            ("database", database, databaseState, previous?.databaseName == database),
            ("role", role, roleState, previous?.roleName == role),
        ] {
            switch state {
            case .absent:
                continue
            case .foreign:
                throw TenantryError(
                    code: .conflict,
                    message: "\(kind) \(name) exists and was not created by Tenantry for tenant \(tenant) (no 'tenantry:tenant=\(tenant)' "
                        + "comment): it is not dropped; rename or drop it by hand, or change the name template", tenant: tenant.rawValue)
            case .marked where !(leftByEarlierRun && recorded):
                throw TenantryError(
                    code: .conflict,
                    message: "\(kind) \(name) of tenant \(tenant) exists but the catalog records no unfinished provision of it "
                        + "(a restored catalog?): it is not dropped; drop it by hand if it is not needed", tenant: tenant.rawValue)
            case .marked:
                continue
            }
        }
        if databaseState == .marked {
            try await connection.query(
                PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(try SQLIdentifier.quoted(database)) WITH (FORCE)"), logger: logger)
        }
        if roleState == .marked {
            try await connection.query(
                PostgresQuery(unsafeSQL: "DROP ROLE IF EXISTS \(try SQLIdentifier.quoted(role))"), logger: logger)
        }
    }

    /// Drops what a crashed run recorded in `previous` on another server (or under other names) than
    /// this run uses, when it carries the tenant's mark. Best effort: a server that cannot be
    /// reached, or an object without the mark, is logged, not fatal.
    func removeLeftovers(of previous: TenantRecord?, unlessOn server: String, database: String) async throws {
        guard let previous, let oldDatabase = previous.databaseName,
              [.provisioning, .failed, .deprovisioning].contains(previous.status) else { return }
        let oldServer = previous.serverName ?? ServerDirectory.defaultServerName
        guard oldServer != server || oldDatabase != database else { return }
        do {
            let admin = try servers.adminURL(server: previous.serverName, database: "postgres")
            try await Database.withConnection(admin, logger: logger) { connection in
                try await removeLeftovers(
                    tenant: previous.id, database: oldDatabase, role: previous.roleName ?? naming.roleName(for: previous.id),
                    previous: previous, on: connection)
            }
        } catch {
            logger.warning("could not remove what an earlier provision left", metadata: [
                LogMetadataKey.tenant: "\(previous.id)", "server": "\(oldServer)", "database": "\(oldDatabase)",
                "error": "\(Database.message(of: error))"])
        }
    }
}
