import Logging
import PostgresNIO
import TenantryCore

/// A read-only query across tenants (`tenantry query`, `POST /api/superadmin/query`): the same SQL
/// in every chosen tenant's database, through a ``TenantRouter`` (so the per-server connection caps
/// hold), with bounded concurrency and a timeout per tenant; optionally the rows merged by a
/// second SQL statement in PostgreSQL itself (``combine``).
///
/// ```swift
/// var query = FleetQuery(sql: "SELECT state, count(*) AS n FROM orders GROUP BY 1")
/// query.combine = "SELECT state, sum(n) AS n FROM results GROUP BY 1 ORDER BY 1"
/// let result = try await query.run(router: router, logger: logger)
/// ```
///
/// - Each tenant runs in a `READ ONLY` transaction with `SET LOCAL statement_timeout`; a statement
///   that writes is refused by PostgreSQL and fails the whole query with one error.
/// - Values are PostgreSQL's text output (`::text`), `nil` for NULL; every row starts with the
///   tenant id (column `tenant_id`) unless combined.
/// - A shared tenant (still in the unified database) runs the same SQL there, scoped to its rows:
///   its tenant tables are shadowed by temporary views filtered on the discriminator (the row-level
///   security predicate of `docs/security.md`), see `docs/fleet-query.md`.
public struct FleetQuery: Sendable {
    /// The per-tenant SQL: one query (`SELECT`, `WITH … SELECT`, `VALUES`, `TABLE`), read as a
    /// subquery; tenant tables unqualified (`orders`, not `public.orders`).
    public var sql: String
    /// Which tenants: `.all` (every tenant of the catalog not deprovisioned) or explicit ids.
    public var tenants: TenantSelection
    /// Only the tenants on this server (`default`: the unified database's server, where shared
    /// tenants live too); `nil`: every server.
    public var server: String?
    /// SQL over a temporary table `results` (`tenant_id text` then the per-tenant columns, with
    /// their types), run in PostgreSQL; its rows are the result. `nil`: the tenants' rows are.
    public var combine: String?
    /// Tenants queried at the same time (1…64; default 32: the fastest of 8, 16 and 32 in most
    /// benchmark runs at 200 tenants, see Benchmarks/README.md, and under the default cap of 50
    /// connections per server of the router `tenantry query` and the admin API run for the call.
    /// The router's caps hold whatever the value; on an application's router with a tight cap,
    /// pass less).
    public var concurrency: Int
    /// The longest one tenant's statement may run (its `statement_timeout`; default 30 s).
    public var timeout: Duration
    /// When true a tenant that fails or times out is left out and named in ``Result/missing``;
    /// when false (the default) the query throws one error naming them.
    public var partial: Bool
    /// The tenant key column of the unified database (`TENANTRY_DISCRIMINATOR`, default `shop_id`).
    public var discriminator: String

    /// A query with its options (see the properties for the defaults).
    public init(
        sql: String, tenants: TenantSelection = .all, server: String? = nil, combine: String? = nil,
        concurrency: Int = 32, timeout: Duration = .seconds(30), partial: Bool = false, discriminator: String = "shop_id"
    ) {
        self.sql = sql
        self.tenants = tenants
        self.server = server
        self.combine = combine
        self.concurrency = concurrency
        self.timeout = timeout
        self.partial = partial
        self.discriminator = discriminator
    }

    /// The name of the first column of every tenant row.
    public static let tenantColumn = "tenant_id"

    /// A result column: its name and its type as `format_type` prints it (`bigint`, `text`, …).
    public struct Column: Sendable, Codable, Equatable {
        /// The column name.
        public var name: String
        /// The type name (`text` for the tenant id column).
        public var type: String
        /// A column.
        public init(name: String, type: String) {
            self.name = name
            self.type = type
        }
    }

    /// One tenant's rows, handed over once its query has finished (a tenant that fails hands none).
    public struct Batch: Sendable {
        /// The tenant.
        public var tenant: TenantID
        /// The columns, `tenant_id` first.
        public var columns: [Column]
        /// The rows: the tenant id, then the values as text (`nil`: NULL).
        public var rows: [[String?]]
    }

    /// A tenant left out, and why.
    public struct Missing: Sendable, Codable, Equatable {
        /// The tenant id.
        public var tenant: String
        /// Why (one line: a timeout, the server's message, different columns, …).
        public var error: String
        /// A missing tenant.
        public init(tenant: String, error: String) {
            self.tenant = tenant
            self.error = error
        }
    }

    /// What the query returned.
    public struct Result: Sendable, Codable, Equatable {
        /// The columns: `tenant_id` then the per-tenant columns, or the combine SQL's columns.
        public var columns: [Column]
        /// The rows, values as text (`nil`: NULL); tenant rows grouped per tenant, in the order the
        /// tenants finished.
        public var rows: [[String?]]
        /// How many tenants were chosen.
        public var tenants: Int
        /// How many answered.
        public var answered: Int
        /// The tenants left out (only with ``FleetQuery/partial``), ordered by tenant id.
        public var missing: [Missing]
        /// Whether the rows are the combine SQL's.
        public var combined: Bool
        /// Wall-clock seconds, combine included.
        public var seconds: Double
    }

    /// Checks the options; throws one ``TenantryError`` (`invalidArgument`) naming the first problem.
    public func validate() throws {
        guard !Self.trimmed(sql).isEmpty else {
            throw TenantryError(code: .invalidArgument, message: "the per-tenant SQL is empty")
        }
        if let combine, Self.trimmed(combine).isEmpty {
            throw TenantryError(code: .invalidArgument, message: "the combine SQL is empty")
        }
        guard (1...64).contains(concurrency) else {
            throw TenantryError(code: .invalidArgument, message: "the concurrency must be from 1 to 64 (got \(concurrency))")
        }
        guard timeout >= .milliseconds(1), timeout <= .seconds(3600) else {
            throw TenantryError(code: .invalidArgument, message: "the timeout must be from 1 ms to 1 hour")
        }
        _ = try SQLIdentifier.quoted(discriminator)
    }

    /// The SQL text without surrounding whitespace and trailing semicolons (one statement is
    /// read as a subquery, where a `;` would not parse).
    static func trimmed(_ text: String) -> String {
        var result = Substring(text)
        while let last = result.last, last.isWhitespace || last == ";" { result = result.dropLast() }
        while let first = result.first, first.isWhitespace { result = result.dropFirst() }
        return String(result)
    }

    /// The tenants chosen, from the catalog, ordered by id: every tenant not deprovisioned for
    /// `.all`; an id the catalog does not know is an error (`tenantNotFound`).
    public func chooseTenants(_ catalog: Catalog) async throws -> [TenantRecord] {
        let records = try await catalog.tenants().filter { $0.status != .deprovisioned && $0.status != .deprovisioning }
        var chosen: [TenantRecord]
        switch tenants {
        case .all:
            chosen = records
        case .tenants(let ids):
            guard !ids.isEmpty else { throw TenantryError(code: .invalidArgument, message: "no tenant ids given") }
            let byID = Dictionary(records.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            let unknown = ids.filter { byID[$0] == nil }
            guard unknown.isEmpty else {
                let names = unknown.prefix(5).map(\.rawValue).joined(separator: ", ")
                throw TenantryError(
                    code: .tenantNotFound,
                    message: "unknown tenant\(unknown.count == 1 ? "" : "s") \(names)\(unknown.count > 5 ? " and \(unknown.count - 5) more" : ""): "
                        + "not in the catalog (or deprovisioned)", tenant: unknown[0].rawValue)
            }
            chosen = ids.compactMap { byID[$0] }
        }
        if let server {
            chosen = chosen.filter { Self.server(of: $0) == server }
        }
        return chosen.sorted { $0.id < $1.id }
    }

    /// The server that answers for a tenant: a dedicated tenant's database server, else the unified
    /// database's (`default`).
    static func server(of record: TenantRecord) -> String {
        guard record.placement == .dedicated, record.databaseName != nil else { return ServerDirectory.defaultServerName }
        return record.serverName ?? ServerDirectory.defaultServerName
    }
}
