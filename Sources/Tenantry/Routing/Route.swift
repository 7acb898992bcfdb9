import TenantryCore

/// Where a tenant's reads and writes go, as the router resolved it from the catalog.
public struct Route: Sendable, Equatable {
    /// Which database answers: the unified one or the tenant's own (the monitor's ``QuerySource``).
    public typealias Source = QuerySource

    /// The tenant.
    public var tenant: TenantID
    /// `shared` or `dedicated`.
    public var placement: TenantRecord.Placement
    /// The move phase.
    public var phase: MovePhase
    /// The tenant database's server (`nil`: the default server), when provisioned.
    public var server: String?
    /// The tenant database, when provisioned and active.
    public var database: String?
    /// The tenant role.
    public var role: String?
    /// The catalog epoch of the tenant's record.
    public var epoch: Int64

    /// A tenant the catalog does not know: shared, served from the unified database.
    public static func shared(_ tenant: TenantID) -> Route {
        Route(tenant: tenant, placement: .shared, phase: .shared, server: nil, database: nil, role: nil, epoch: 0)
    }

    /// Where a write goes: the tenant database once the tenant is dedicated, else unified.
    public var writeSource: Source {
        placement == .dedicated && database != nil ? .tenant : .unified
    }

    /// Where a read goes under `policy`: dedicated tenants read their database; shared tenants
    /// whose database holds their data (phase `syncing` or later) follow the read policy.
    public func readSource(_ policy: ReadPolicy) -> Source {
        if writeSource == .tenant { return .tenant }
        guard database != nil, phase >= .syncing, phase != .retired else { return .unified }
        return policy.readsFromTenantDatabase(tenant) ? .tenant : .unified
    }
}

/// A query the router ran, for the performance monitor.
public struct ObservedQuery: Sendable {
    /// The tenant.
    public var tenant: TenantID
    /// The SQL text (values are binds, never in the text).
    public var sql: String
    /// Which database answered.
    public var source: Route.Source
    /// How long it took, rows included.
    public var duration: Duration
    /// The error, if it failed (a printable message).
    public var error: String?
}
