import TenantryCore

/// One side of a move: a database, and — when many tenants share that database — the row filter
/// that selects one tenant's rows (the discriminator column and the tenant's value).
///
/// The move engine (copier, change applier, relay, cutover) copies and syncs from a
/// ``MoveRoute/source`` to a ``MoveRoute/target``, and everything that differs between the two
/// sides comes from the endpoints, never from a direction flag:
///
/// | move | source | target |
/// |---|---|---|
/// | shared → dedicated (copy, sync) | unified, filtered | tenant database |
/// | reverse sync, rollback | tenant database | unified, filtered |
/// | dedicated → dedicated, another server (Step 10) | tenant database | tenant database |
///
/// A filtered endpoint holds the shared layout: tables qualified by ``schema``, keyed by the
/// unified primary key (which includes the discriminator), writes carrying the discriminator, and
/// an upsert that never updates another tenant's row. An endpoint without a filter holds one
/// tenant: the derived tenant tables, keyed by the tenant key.
public struct MoveEndpoint: Sendable, Equatable {
    /// The rows of one tenant in a shared database: `column = CAST(value AS type)`.
    public struct RowFilter: Sendable, Equatable {
        /// The discriminator column (unquoted).
        public var column: String
        /// Its PostgreSQL type (`integer`, `bigint`, `text`, …).
        public var type: String
        /// The tenant whose rows these are (its id is the column's value).
        public var tenant: TenantID

        /// Creates a filter.
        public init(column: String, type: String, tenant: TenantID) {
            self.column = column
            self.type = type
            self.tenant = tenant
        }

        /// `"column"`, quoted.
        public var quotedColumn: String { MovePlan.quote(column) }

        /// `[alias.]"column" = CAST($parameter AS type)`: the condition for the tenant's rows, with
        /// the tenant id bound as `$parameter` (the index on the column serves it).
        public func condition(parameter: Int, alias: String? = nil) -> String {
            "\(alias.map { "\($0)." } ?? "")\(quotedColumn) = \(value(parameter: parameter))"
        }

        /// `CAST($parameter AS type)`: the tenant id as the column's value.
        public func value(parameter: Int) -> String { "CAST($\(parameter) AS \(type))" }
    }

    /// How to reach the database: a login allowed to read and write every tenant table (the
    /// server's admin login for a tenant database).
    public var url: PostgresURL
    /// The schema of the tenant tables, when names must be qualified (the unified database);
    /// `nil` when the search path finds them (a tenant database).
    public var schema: String?
    /// The row filter of a shared database; `nil` for a database that holds one tenant only.
    public var filter: RowFilter?
    /// As a target: whether what is applied here is captured in turn (a server move's follower
    /// database, whose own stream carries the changes on to unified). The relay then applies with
    /// `tenantry.applying = 'relay'` (capture on, the moved guard passed) and forwards a change
    /// the copy snapshot already held as a record instead of dropping it.
    public var recordsChanges: Bool
    /// As a stream's source: the value of its `capture_state.forward_to` that names this stream's
    /// target (`nil`: the usual consumer). A batch whose source names another consumer does nothing.
    public var forwardTo: String?

    /// Creates an endpoint.
    public init(url: PostgresURL, schema: String? = nil, filter: RowFilter? = nil, recordsChanges: Bool = false) {
        self.url = url
        self.schema = schema
        self.filter = filter
        self.recordsChanges = recordsChanges
    }

    /// The unified (shared) database, filtered to `tenant`'s rows: `plan`'s schema and discriminator.
    public static func shared(_ url: PostgresURL, plan: MovePlan, tenant: TenantID) -> MoveEndpoint {
        MoveEndpoint(
            url: url, schema: plan.schema,
            filter: RowFilter(column: plan.discriminator, type: plan.discriminatorType, tenant: tenant))
    }

    /// A tenant's own database (no filter: every row is the tenant's).
    public static func dedicated(_ url: PostgresURL) -> MoveEndpoint {
        MoveEndpoint(url: url)
    }

    /// Whether many tenants share the database (the endpoint has a row filter).
    public var isShared: Bool { filter != nil }

    /// `table`'s name on this side, quoted (schema-qualified when ``schema`` is set).
    public func name(_ table: MovePlan.Table) -> String {
        guard let schema else { return table.quoted }
        return "\(MovePlan.quote(schema)).\(table.quoted)"
    }

    /// `table`'s primary key on this side: the unified key (discriminator included) in a shared
    /// database, the tenant key otherwise.
    public func primaryKey(_ table: MovePlan.Table) -> [String] {
        isShared ? table.unifiedPrimaryKey : table.primaryKey
    }

    /// Whether `table` has a `GENERATED ALWAYS AS IDENTITY` column on this side (inserts then
    /// need `OVERRIDING SYSTEM VALUE`).
    public func hasIdentityAlways(_ table: MovePlan.Table) -> Bool {
        isShared ? table.unifiedHasIdentityAlways : table.hasIdentityAlways
    }

    /// Whether the foreign keys on this side are deferrable, so that a run of changes may be
    /// applied table by table: a tenant database's derived schema defers them; a shared database
    /// is the application's own schema, whose foreign keys are applied in the exact order.
    public var defersConstraints: Bool { !isShared }
}

/// Where one tenant's move goes: rows and changes flow from ``source`` to ``target``.
///
/// The relay's stream (`tenantry.changes`) lives in the source database (the capture trigger
/// writes it where the tenant's writes happen); the target applies it. Shared → dedicated and its
/// reverse are the same route read both ways (``reversed``); a move between two servers
/// (Step 10) is a route whose endpoints both lack a filter.
public struct MoveRoute: Sendable, Equatable {
    /// The tenant.
    public var tenant: TenantID
    /// Where the rows and the tenant's writes are now.
    public var source: MoveEndpoint
    /// Where they go.
    public var target: MoveEndpoint

    /// Creates a route.
    public init(tenant: TenantID, source: MoveEndpoint, target: MoveEndpoint) {
        self.tenant = tenant
        self.source = source
        self.target = target
    }

    /// Shared → dedicated: `tenant`'s unified rows into its tenant database.
    public static func toDedicated(
        _ tenant: TenantID, unified: PostgresURL, tenantDatabase: PostgresURL, plan: MovePlan
    ) -> MoveRoute {
        MoveRoute(tenant: tenant, source: .shared(unified, plan: plan, tenant: tenant), target: .dedicated(tenantDatabase))
    }

    /// The same route the other way (reverse sync, rollback).
    public var reversed: MoveRoute { MoveRoute(tenant: tenant, source: target, target: source) }

    /// A server move's first link: from the database that takes `tenant`'s writes (`live`) to the
    /// other one (`follower`, named `followerName` in the live database's `forward_to`), which
    /// records what it applies for its own stream to unified.
    public static func serverLink(_ tenant: TenantID, live: PostgresURL, follower: PostgresURL, followerName: String) -> MoveRoute {
        var source = MoveEndpoint.dedicated(live)
        source.forwardTo = followerName
        return MoveRoute(tenant: tenant, source: source, target: MoveEndpoint(url: follower, recordsChanges: true))
    }

    /// Whether this is a server move's link between two tenant databases.
    public var isServerLink: Bool { target.recordsChanges }

    /// Whether the stream flows back into a shared database (reverse sync after a cutover): its
    /// dead letters are mirrored there, where `status`, `dlq`, rollback and retirement read them,
    /// with direction `reverse`.
    public var isReverse: Bool { target.isShared && !source.isShared }
}
