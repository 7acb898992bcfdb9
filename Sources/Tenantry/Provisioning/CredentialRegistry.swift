import Foundation
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
        guard let record = try await catalog.tenant(tenant), let database = record.databaseName,
              record.status == .active else {
            throw TenantryError(code: .tenantNotFound, message: "tenant \(tenant) has no provisioned database", tenant: tenant.rawValue)
        }
        guard let stored = try await catalog.credential(tenant), stored.active else {
            throw TenantryError(code: .tenantNotFound, message: "tenant \(tenant) has no stored credentials", tenant: tenant.rawValue)
        }
        let password = try keyring.open(stored.passwordSealed, tenant: tenant.rawValue, field: "password")
        let credentials = Credentials(
            tenant: tenant, username: stored.username, password: password, database: database, server: record.serverName)
        entries[tenant] = Entry(credentials: credentials, expires: .now + ttl)
        try? await catalog.touchCredential(tenant)
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
