import Foundation
import PostgresNIO
import TenantryCore

extension Catalog {
    /// Stores (or replaces) a tenant's sealed password.
    public func storeCredential(tenant: TenantID, username: String, passwordSealed: String) async throws {
        let keyID = Keyring.keyID(of: passwordSealed) ?? "unknown"
        try await client.query("""
            INSERT INTO tenantry.credentials (tenant_id, username, password_sealed, key_id)
            VALUES (\(tenant.rawValue), \(username), \(passwordSealed), \(keyID))
            ON CONFLICT (tenant_id) DO UPDATE SET
                username = excluded.username, password_sealed = excluded.password_sealed,
                key_id = excluded.key_id, rotated_at = now(), active = true
            """, logger: logger)
    }

    /// A tenant's stored credential, or `nil`.
    public func credential(_ tenant: TenantID) async throws -> CredentialRecord? {
        try await credentials(where: tenant).first
    }

    /// Every stored credential (for key rotation).
    public func credentials() async throws -> [CredentialRecord] {
        try await credentials(where: nil)
    }

    /// Marks a credential as just used (best effort, for the registry).
    public func touchCredential(_ tenant: TenantID) async throws {
        try await client.query(
            "UPDATE tenantry.credentials SET last_used_at = now() WHERE tenant_id = \(tenant.rawValue)", logger: logger)
    }

    /// The sealed password a rotation stored as pending and has not promoted yet, or `nil`.
    public func pendingPassword(_ tenant: TenantID, on connection: PostgresConnection) async throws -> String? {
        let rows = try await connection.query(
            "SELECT pending_password_sealed FROM tenantry.credentials WHERE tenant_id = \(tenant.rawValue)", logger: logger)
        for try await sealed in rows.decode(String?.self) { return sealed }
        return nil
    }

    /// Stores a rotation's new password (sealed) as pending, next to the active one.
    public func storePendingPassword(_ tenant: TenantID, sealed: String, on connection: PostgresConnection) async throws {
        try await connection.query("""
            UPDATE tenantry.credentials SET pending_password_sealed = \(sealed), pending_since = now()
            WHERE tenant_id = \(tenant.rawValue)
            """, logger: logger)
    }

    /// Makes the pending password `sealed` the active one (after `ALTER ROLE` set it).
    public func promotePendingPassword(_ tenant: TenantID, sealed: String, on connection: PostgresConnection) async throws {
        let keyID = Keyring.keyID(of: sealed) ?? "unknown"
        try await connection.query("""
            UPDATE tenantry.credentials SET password_sealed = pending_password_sealed, key_id = \(keyID), rotated_at = now(),
                active = true, pending_password_sealed = NULL, pending_since = NULL
            WHERE tenant_id = \(tenant.rawValue) AND pending_password_sealed = \(sealed)
            """, logger: logger)
    }

    /// Every pending password, sealed (for key rotation).
    public func pendingPasswords() async throws -> [(tenant: TenantID, sealed: String)] {
        let rows = try await client.query(
            "SELECT tenant_id, pending_password_sealed FROM tenantry.credentials WHERE pending_password_sealed IS NOT NULL",
            logger: logger)
        var result: [(tenant: TenantID, sealed: String)] = []
        for try await (id, sealed) in rows.decode((String, String).self) { result.append((try TenantID(id), sealed)) }
        return result
    }

    /// Removes a tenant's credential.
    public func deleteCredential(_ tenant: TenantID) async throws {
        try await client.query("DELETE FROM tenantry.credentials WHERE tenant_id = \(tenant.rawValue)", logger: logger)
    }

    private func credentials(where tenant: TenantID?) async throws -> [CredentialRecord] {
        let rows = try await client.query("""
            SELECT tenant_id, username, password_sealed, key_id, created_at, rotated_at, last_used_at, active
            FROM tenantry.credentials WHERE \(tenant?.rawValue)::text IS NULL OR tenant_id = \(tenant?.rawValue)
            ORDER BY tenant_id
            """, logger: logger)
        var result: [CredentialRecord] = []
        for try await (id, username, sealed, keyID, created, rotated, used, active) in rows.decode(
            (String, String, String, String, Date, Date?, Date?, Bool).self) {
            result.append(CredentialRecord(
                tenant: try TenantID(id), username: username, passwordSealed: sealed, keyID: keyID,
                createdAt: created, rotatedAt: rotated, lastUsedAt: used, active: active))
        }
        return result
    }
}

extension Catalog {
    /// Adds or replaces a server.
    public func upsertServer(_ server: ServerRecord) async throws {
        try await client.query("""
            INSERT INTO tenantry.servers (name, host, port, admin_user, admin_password_sealed, max_connections, is_default, max_bytes)
            VALUES (\(server.name), \(server.host), \(server.port), \(server.adminUser), \(server.adminPasswordSealed),
                    \(server.maxConnections), \(server.isDefault), \(server.maxBytes))
            ON CONFLICT (name) DO UPDATE SET host = excluded.host, port = excluded.port, admin_user = excluded.admin_user,
                admin_password_sealed = excluded.admin_password_sealed, max_connections = excluded.max_connections,
                is_default = excluded.is_default, max_bytes = excluded.max_bytes
            """, logger: logger)
    }

    /// All servers, by name.
    public func servers() async throws -> [ServerRecord] {
        let rows = try await client.query("""
            SELECT name, host, port, admin_user, admin_password_sealed, max_connections, is_default, max_bytes
            FROM tenantry.servers ORDER BY name
            """, logger: logger)
        var result: [ServerRecord] = []
        for try await (name, host, port, user, sealed, max, isDefault, maxBytes) in rows.decode(
            (String, String, Int, String, String?, Int, Bool, Int64?).self) {
            result.append(ServerRecord(
                name: name, host: host, port: port, adminUser: user, adminPasswordSealed: sealed,
                maxConnections: max, isDefault: isDefault, maxBytes: maxBytes))
        }
        return result
    }
}
