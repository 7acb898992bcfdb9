import Foundation
import TenantryCore

/// A tenant as the catalog knows it.
public struct TenantRecord: Sendable, Equatable, Codable {
    /// Lifecycle status of the tenant's database.
    public enum Status: String, Sendable, Codable, CaseIterable {
        case provisioning, active, failed, deprovisioning, deprovisioned
    }
    /// Where the tenant's data is served from.
    public enum Placement: String, Sendable, Codable { case shared, dedicated }

    /// The tenant id.
    public var id: TenantID
    /// Lifecycle status.
    public var status: Status
    /// Where the data lives now.
    public var placement: Placement
    /// The server hosting the tenant database, if any.
    public var serverName: String?
    /// The tenant database's name, if provisioned.
    public var databaseName: String?
    /// The tenant role's name, if provisioned.
    public var roleName: String?
    /// The fleet schema version of the tenant database.
    public var schemaVersion: Int?
    /// Bumped on every route change; routers compare it to their cache.
    public var epoch: Int64
    /// The last failure, if the last operation failed.
    public var lastError: String?
    /// When the record was created.
    public var createdAt: Date
    /// When it last changed.
    public var updatedAt: Date

    /// A new shared tenant.
    public init(id: TenantID, status: Status = .active, placement: Placement = .shared) {
        self.id = id
        self.status = status
        self.placement = placement
        self.epoch = 1
        self.createdAt = Date()
        self.updatedAt = Date()
    }
}

/// A server that hosts tenant databases.
public struct ServerRecord: Sendable, Equatable, Codable {
    /// Its name (`^[a-z0-9][a-z0-9_-]{0,39}$`).
    public var name: String
    /// Host name or address.
    public var host: String
    /// TCP port.
    public var port: Int
    /// The admin role used to provision.
    public var adminUser: String
    /// The admin password, sealed with the keyring (`nil`: none needed, e.g. trust auth).
    public var adminPasswordSealed: String?
    /// The router's cap of open connections to this server.
    public var maxConnections: Int
    /// Whether it is the default server.
    public var isDefault: Bool
    /// The most bytes its tenant databases may take together (placement and `rebalance` keep
    /// under it); `nil`: no budget.
    public var maxBytes: Int64?

    /// Creates a record.
    public init(name: String, host: String, port: Int, adminUser: String, adminPasswordSealed: String?, maxConnections: Int = 50,
                isDefault: Bool = false, maxBytes: Int64? = nil) {
        self.maxBytes = maxBytes
        self.name = name
        self.host = host
        self.port = port
        self.adminUser = adminUser
        self.adminPasswordSealed = adminPasswordSealed
        self.maxConnections = maxConnections
        self.isDefault = isDefault
    }
}

/// A tenant's stored login (the password sealed by the keyring).
public struct CredentialRecord: Sendable, Equatable {
    /// The tenant.
    public var tenant: TenantID
    /// The role name.
    public var username: String
    /// `v1:<key-id>:<…>`.
    public var passwordSealed: String
    /// The key that sealed it.
    public var keyID: String
    /// When created.
    public var createdAt: Date
    /// When last rotated.
    public var rotatedAt: Date?
    /// When last used by the router.
    public var lastUsedAt: Date?
    /// Whether it is in use.
    public var active: Bool
}

/// A tenant's move state.
public struct MoveRecord: Sendable, Equatable, Codable {
    /// The tenant.
    public var tenant: TenantID
    /// The phase.
    public var phase: MovePhase
    /// The copy snapshot (`pg_current_snapshot()` text), once copied.
    public var snapshot: String?
    /// Rows copied by the snapshot copy.
    public var rowsCopied: Int64
    /// When the phase last changed.
    public var phaseChangedAt: Date
    /// The last failure.
    public var lastError: String?
}

/// One audit log entry.
public struct AuditEntry: Sendable, Equatable, Codable {
    /// Outcome of an audited action.
    public enum Outcome: String, Sendable, Codable { case ok, failed, refused }
    /// Its id.
    public var id: Int64
    /// When.
    public var at: Date
    /// Who (`cli:<os user>`, `api`, `system`).
    public var actor: String
    /// What (`provision`, `keys.rotate`, …).
    public var action: String
    /// The tenant, if any.
    public var tenant: String?
    /// The outcome.
    public var outcome: Outcome
    /// Non-secret details as JSON text.
    public var detail: String
}

/// The catalog at a glance, for `tenantry status`.
public struct CatalogSummary: Sendable, Codable, Equatable {
    /// The catalog schema version.
    public var catalogVersion: Int
    /// Number of tenants.
    public var tenants: Int
    /// Tenants per status.
    public var byStatus: [String: Int]
    /// Tenants per placement.
    public var byPlacement: [String: Int]
    /// Tenants per move phase (tenants without a move count as `shared`).
    public var byPhase: [String: Int]
    /// Registered servers.
    public var servers: [String]
    /// The read policy.
    public var readPolicy: ReadPolicy
}
