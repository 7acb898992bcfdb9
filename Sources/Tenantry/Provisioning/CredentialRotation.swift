import Logging
import PostgresNIO
import TenantryCore

/// Key rotation (re-seal every stored secret under the current key) and tenant password rotation.
public struct CredentialRotation: Sendable {
    /// The catalog.
    public var catalog: Catalog
    /// The keyring (current key, plus previous keys to open old values).
    public var keyring: Keyring
    /// Audit actor.
    public var actor: String
    /// Logger.
    public var logger: Logger

    /// Creates a rotation helper.
    public init(catalog: Catalog, keyring: Keyring, actor: String, logger: Logger) {
        self.catalog = catalog
        self.keyring = keyring
        self.actor = actor
        self.logger = logger
    }

    /// What `rotateKeys()` did.
    public struct KeyRotationReport: Sendable, Codable, Equatable {
        /// Credentials re-sealed.
        public var credentials: Int
        /// Server admin passwords re-sealed.
        public var servers: Int
        /// Values already under the current key.
        public var alreadyCurrent: Int
        /// The current key id.
        public var keyID: String
    }

    /// Re-seals every tenant credential and server admin password under the current key, in one
    /// transaction. Afterwards the previous keys can be dropped from the environment.
    public func rotateKeys() async throws -> KeyRotationReport {
        var report = KeyRotationReport(credentials: 0, servers: 0, alreadyCurrent: 0, keyID: keyring.current.id)
        let credentials = try await catalog.credentials()
        let servers = try await catalog.servers()
        var credentialUpdates: [(TenantID, String)] = []
        for credential in credentials {
            if let resealed = try keyring.reseal(credential.passwordSealed, tenant: credential.tenant.rawValue, field: "password") {
                credentialUpdates.append((credential.tenant, resealed))
            } else { report.alreadyCurrent += 1 }
        }
        var pendingUpdates: [(TenantID, String)] = []
        for (tenant, sealed) in try await catalog.pendingPasswords() {
            if let resealed = try keyring.reseal(sealed, tenant: tenant.rawValue, field: "password") {
                pendingUpdates.append((tenant, resealed))
            }
        }
        var serverUpdates: [(String, String)] = []
        for server in servers {
            guard let sealed = server.adminPasswordSealed else { continue }
            if let resealed = try keyring.reseal(sealed, tenant: "server:\(server.name)", field: "admin_password") {
                serverUpdates.append((server.name, resealed))
            } else { report.alreadyCurrent += 1 }
        }
        let keyID = keyring.current.id
        let logger = logger
        let credentialUpdatesFinal = credentialUpdates
        let serverUpdatesFinal = serverUpdates
        let pendingUpdatesFinal = pendingUpdates
        try await catalog.client.withConnection { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                for (tenant, sealed) in credentialUpdatesFinal {
                    try await connection.query("""
                        UPDATE tenantry.credentials SET password_sealed = \(sealed), key_id = \(keyID), rotated_at = now()
                        WHERE tenant_id = \(tenant.rawValue)
                        """, logger: logger)
                }
                for (tenant, sealed) in pendingUpdatesFinal {
                    try await connection.query("""
                        UPDATE tenantry.credentials SET pending_password_sealed = \(sealed) WHERE tenant_id = \(tenant.rawValue)
                        """, logger: logger)
                }
                for (name, sealed) in serverUpdatesFinal {
                    try await connection.query(
                        "UPDATE tenantry.servers SET admin_password_sealed = \(sealed) WHERE name = \(name)", logger: logger)
                }
            }
        }
        report.credentials = credentialUpdates.count
        report.servers = serverUpdates.count
        try await catalog.audit(
            actor: actor, action: "keys.rotate", outcome: .ok,
            detail: ["key_id": keyID, "credentials": "\(report.credentials)", "servers": "\(report.servers)"])
        return report
    }

    /// Gives a tenant role a new password (a SCRAM verifier via `ALTER ROLE`), stores it sealed and
    /// drops the registry's cached copy. Open sessions keep working; new ones use the new password.
    ///
    /// Under the tenant's lock: the new password is stored as pending first, then the role gets
    /// it, then it is promoted to the active one. If the promotion fails, the role gets its old
    /// password back (the stored one keeps working). A rotation that finds a pending password (a
    /// crash or failure between the steps) completes that one instead of making another.
    public func rotatePassword(of tenant: TenantID, servers: ServerDirectory, registry: CredentialRegistry? = nil) async throws {
        let record = try await catalog.requireTenant(tenant)
        guard let role = record.roleName, try await catalog.credential(tenant) != nil else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant) has no provisioned role", tenant: tenant.rawValue)
        }
        // The role exists on both servers of a move, with one password: rotated after the move.
        try await catalog.requireNoServerMove([tenant], before: "a password rotation")
        let admin = try servers.adminURL(server: record.serverName, database: "postgres")
        do {
            try await catalog.withDedicatedConnection { connection in
                try await Database.holdingTenantLock(tenant, on: connection, logger: logger) {
                    try await rotate(tenant, role: role, admin: admin, catalogConnection: connection)
                }
            }
        } catch {
            try? await catalog.audit(actor: actor, action: "credentials.rotate", tenant: tenant, outcome: .failed,
                                     detail: ["error": Database.message(of: error)])
            throw error
        }
        await registry?.invalidate(tenant)
        try await catalog.audit(actor: actor, action: "credentials.rotate", tenant: tenant, outcome: .ok, detail: ["role": role])
    }

    /// The three steps, with the tenant lock held on `catalogConnection`.
    private func rotate(_ tenant: TenantID, role: String, admin: PostgresURL, catalogConnection: PostgresConnection) async throws {
        guard let current = try await catalog.credential(tenant) else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant) has no provisioned role", tenant: tenant.rawValue)
        }
        let sealed: String
        let password: String
        if let pending = try await catalog.pendingPassword(tenant, on: catalogConnection) {
            sealed = pending
            password = try keyring.open(pending, tenant: tenant.rawValue, field: "password")
        } else {
            password = SCRAMVerifier.generatePassword()
            sealed = try keyring.seal(password, tenant: tenant.rawValue, field: "password")
            try await catalog.storePendingPassword(tenant, sealed: sealed, on: catalogConnection)
        }
        try await setPassword(password, of: role, admin: admin)
        do {
            try await catalog.promotePendingPassword(tenant, sealed: sealed, on: catalogConnection)
        } catch {
            // The role must keep the password the catalog hands out; the pending one stays for a retry.
            if let old = try? keyring.open(current.passwordSealed, tenant: tenant.rawValue, field: "password") {
                try? await setPassword(old, of: role, admin: admin)
            }
            throw error
        }
    }

    private func setPassword(_ password: String, of role: String, admin: PostgresURL) async throws {
        let verifier = try SCRAMVerifier.make(password: password)
        try await Database.withConnection(admin, logger: logger) { connection in
            // Statement logging off for this transaction: the verifier stays out of the server log.
            try await RoleDDL.run(
                ["ALTER ROLE \(try SQLIdentifier.quoted(role)) PASSWORD \(SchemaDDL.literal(verifier))"],
                on: connection, logger: logger)
        }
    }
}
