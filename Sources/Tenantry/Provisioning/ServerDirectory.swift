import TenantryCore

/// Admin logins to the servers that host tenant databases.
///
/// The default server is the one of `DATABASE_URL`, reached as `POSTGRES_SUPERUSER` /
/// `POSTGRES_SUPERUSER_PASSWORD` when they are set, else with `DATABASE_URL`'s own login.
/// Registered servers (`tenantry servers add`) keep their admin password sealed in the catalog.
public struct ServerDirectory: Sendable {
    /// The name the default server goes by.
    public static let defaultServerName = "default"

    /// The unified database's URL.
    public var databaseURL: PostgresURL
    /// `POSTGRES_SUPERUSER`.
    public var superuser: String?
    /// `POSTGRES_SUPERUSER_PASSWORD`.
    public var superuserPassword: String?
    /// Registered servers.
    public var servers: [ServerRecord]
    /// Opens sealed admin passwords.
    public var keyring: Keyring?

    /// Creates a directory.
    public init(databaseURL: PostgresURL, superuser: String?, superuserPassword: String?, servers: [ServerRecord], keyring: Keyring?) {
        self.databaseURL = databaseURL
        self.superuser = superuser
        self.superuserPassword = superuserPassword
        self.servers = servers
        self.keyring = keyring
    }

    /// The admin URL of `server` (nil or `default`: the unified database's server), for `database`.
    public func adminURL(server: String?, database: String) throws -> PostgresURL {
        guard let server, server != Self.defaultServerName else {
            var url = databaseURL.with(database: database)
            if let superuser { url = url.with(user: superuser, password: superuserPassword) }
            return url
        }
        guard let record = servers.first(where: { $0.name == server }) else {
            throw TenantryError(code: .invalidArgument, message: "server '\(server)' is not registered (tenantry servers list)")
        }
        var password: String?
        if let sealed = record.adminPasswordSealed {
            guard let keyring else {
                throw TenantryError(
                    code: .configuration,
                    message: "TENANT_ENCRYPTION_KEY must be set to open the admin password of server '\(server)'")
            }
            password = try keyring.open(sealed, tenant: "server:\(server)", field: "admin_password")
        }
        return PostgresURL(
            user: record.adminUser, password: password, host: record.host, port: record.port, database: database,
            tls: databaseURL.tls, rootCertificate: databaseURL.rootCertificate)
    }

    /// The admin URL of a provisioned tenant's database; a clear error when it has none.
    public func adminURL(of record: TenantRecord) throws -> PostgresURL {
        guard let database = record.databaseName, record.status == .active else {
            throw TenantryError(
                code: .conflict, message: "tenant \(record.id) has no database: run 'tenantry provision \(record.id)' first",
                tenant: record.id.rawValue)
        }
        return try adminURL(server: record.serverName, database: database)
    }
}
