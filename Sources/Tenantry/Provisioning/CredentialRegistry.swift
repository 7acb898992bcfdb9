import Foundation
import PostgresNIO
import TenantryCore

/// Decrypted tenant credentials, cached for a while (the seed's ConnectionRegistry).
///
/// Reads sealed passwords from the catalog and opens them with the keyring; keeps the result for
/// `ttl` (default 1 hour) so the router does not decrypt on every connection. Invalidate a tenant
/// after rotating its password; the router does so on an authentication failure.
public actor CredentialRegistry {
    /// What the router needs to log in as a tenant.
    public struct Credentials: Sendable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// The role.
        public var username: String
        /// The password (never log it).
        public var password: String
        /// The tenant database.
        public var database: String
        /// The server (`nil`: the default server).
        public var server: String?
    }

    private struct Entry { var credentials: Credentials; var expires: ContinuousClock.Instant }

    private let catalog: Catalog
    private let keyring: Keyring
    private let ttl: Duration
    private var entries: [TenantID: Entry] = [:]
    /// Lookups answered from the cache.
    public private(set) var hits = 0
    /// Lookups that read the catalog.
    public private(set) var misses = 0

    /// Creates a registry over `catalog`.
    public init(catalog: Catalog, keyring: Keyring, ttl: Duration = .seconds(3600)) {
        self.catalog = catalog
        self.keyring = keyring
        self.ttl = ttl
    }

    /// The tenant's credentials, from the cache while fresh.
    public func credentials(for tenant: TenantID) async throws -> Credentials {
        if let entry = entries[tenant], entry.expires > .now {
            hits += 1
            return entry.credentials
        }
        misses += 1
        // The tenant's record and its credential, read and marked used in one statement, on the
        // catalog's lookup connections (a pool lease would leave timers allocated for a minute).
        let rows = try await catalog.lookup("""
            WITH found AS (
                SELECT t.status, t.database_name, t.server_name, c.username, c.password_sealed, coalesce(c.active, false) AS active
                FROM tenantry.tenants t LEFT JOIN tenantry.credentials c ON c.tenant_id = t.id
                WHERE t.id = \(tenant.rawValue)),
            touched AS (
                UPDATE tenantry.credentials SET last_used_at = now()
                WHERE tenant_id = \(tenant.rawValue)
                  AND EXISTS (SELECT FROM found WHERE status = 'active' AND database_name IS NOT NULL AND active))
            SELECT status, database_name, server_name, username, password_sealed, active FROM found
            """)
        var found: (status: String, database: String?, server: String?, username: String?, sealed: String?, active: Bool)?
        for row in try rows.map({ try $0.decode((String, String?, String?, String?, String?, Bool).self) }) {
            found = (row.0, row.1, row.2, row.3, row.4, row.5)
        }
        guard let found, let database = found.database, TenantRecord.Status(rawValue: found.status) == .active else {
            throw TenantryError(code: .tenantNotFound, message: "tenant \(tenant) has no provisioned database", tenant: tenant.rawValue)
        }
        guard found.active, let username = found.username, let sealed = found.sealed else {
            throw TenantryError(code: .tenantNotFound, message: "tenant \(tenant) has no stored credentials", tenant: tenant.rawValue)
        }
        let password = try keyring.open(sealed, tenant: tenant.rawValue, field: "password")
        let credentials = Credentials(tenant: tenant, username: username, password: password, database: database, server: found.server)
        entries[tenant] = Entry(credentials: credentials, expires: .now + ttl)
        return credentials
    }

    /// Forgets one tenant's cached credentials.
    public func invalidate(_ tenant: TenantID) {
        entries[tenant] = nil
    }

    /// Forgets every cached credential.
    public func invalidateAll() {
        entries.removeAll()
    }
}
