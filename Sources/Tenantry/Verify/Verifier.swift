import Foundation
import Logging
import PostgresNIO
import TenantryCore
import Tracing

/// Compares a tenant's rows in the unified database with its tenant database (the seeds'
/// verify-sync; data-diff and Vitess VDiff are the anchors).
///
/// Per table: the unified side's keys cut the table into primary-key-ordered chunks; each chunk's
/// row count and a sum of 64-bit row hashes are computed inside each database (only two numbers
/// travel per chunk). A chunk that differs is bisected until its halves are small, then its rows'
/// keys and hashes are compared to name each row that is missing, extra or changed.
public struct Verifier: Sendable {
    /// One row that differs.
    public struct Difference: Sendable, Codable, Equatable, CustomStringConvertible {
        /// How the row differs.
        public enum Kind: String, Sendable, Codable {
            /// In the unified database only.
            case missing
            /// In the tenant database only.
            case extra
            /// In both, with different values.
            case changed
        }
        /// The table.
        public var table: String
        /// How.
        public var kind: Kind
        /// The row's key values, in key order, as text.
        public var key: [String]
        public var description: String {
            "\(table) \(kind.rawValue) (\(key.joined(separator: ", ")))"
        }
    }

    /// One table's result.
    public struct TableResult: Sendable, Codable, Equatable {
        /// The table.
        public var table: String
        /// Rows of the tenant in the unified database.
        public var unifiedRows: Int
        /// Rows in the tenant database.
        public var tenantRows: Int
        /// Chunks compared.
        public var chunks: Int
        /// Differences found (at most ``Verifier/maxDifferencesPerTable`` are listed).
        public var differences: [Difference]
        /// How many rows differ in all.
        public var differenceCount: Int
    }

    /// One tenant's result.
    public struct Report: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// Whether every table is equal.
        public var equal: Bool
        /// Per table.
        public var tables: [TableResult]
        /// Wall time.
        public var seconds: Double
    }

    /// The move plan (tables, keys, columns).
    public var plan: MovePlan
    /// Rows per chunk.
    public var chunkSize: Int
    /// A differing range at most this large is compared row by row.
    public var leafSize: Int
    /// How many times differences are re-checked after `settle` (in-flight changes).
    public var rechecks: Int
    /// The logger.
    public var logger: Logger
    /// Differences listed per table.
    public static let maxDifferencesPerTable = 100

    /// Creates a verifier.
    public init(plan: MovePlan, chunkSize: Int = 10_000, leafSize: Int = 512, rechecks: Int = 3, logger: Logger) {
        self.plan = plan
        self.chunkSize = max(2, chunkSize)
        self.leafSize = max(1, leafSize)
        self.rechecks = rechecks
        self.logger = logger
    }

    /// Compares `tenant` between the unified database and its tenant database. When rows differ,
    /// `settle` (e.g. draining the relay) is called and the differing ranges compared again, up to
    /// ``rechecks`` times, so changes in flight are not reported.
    public func verify(
        _ tenant: TenantID, unifiedURL: PostgresURL, tenantURL: PostgresURL,
        settle: (@Sendable () async throws -> Void)? = nil
    ) async throws -> Report {
        try await TenantryTracing.phase("verify", tenant: tenant) { span in
            let report = try await verifyTenant(tenant, unifiedURL: unifiedURL, tenantURL: tenantURL, settle: settle)
            span?.attributes["tenantry.verify.equal"] = report.equal
            return report
        }
    }

    private func verifyTenant(
        _ tenant: TenantID, unifiedURL: PostgresURL, tenantURL: PostgresURL, settle: (@Sendable () async throws -> Void)?
    ) async throws -> Report {
        let started = ContinuousClock.now
        return try await Database.withConnection(unifiedURL, logger: logger) { unified in
            try await Database.withConnection(tenantURL, logger: logger) { tenantDatabase in
                for connection in [unified, tenantDatabase] { try await normalize(connection) }
                var results: [TableResult] = []
                for table in plan.tables {
                    let sides = Sides(unified: unified, tenant: tenantDatabase, tenantID: tenant)
                    do {
                        results.append(try await verify(table, sides: sides, settle: settle))
                    } catch {
                        throw Database.wrap(error, "verifying \(table.name) of tenant \(tenant)", tenant: tenant.rawValue, table: table.name)
                    }
                }
                return Report(
                    tenant: tenant, equal: results.allSatisfy { $0.differenceCount == 0 }, tables: results,
                    seconds: (ContinuousClock.now - started).totalSeconds)
            }
        }
    }

    /// Compares `tenant`'s rows between two endpoints: `source` may be shared (filtered to the
    /// tenant), `target` holds the tenant alone (a server move compares two such databases).
    public func verify(
        _ tenant: TenantID, source: MoveEndpoint, target: MoveEndpoint, settle: (@Sendable () async throws -> Void)? = nil
    ) async throws -> Report {
        try await TenantryTracing.phase("verify", tenant: tenant) { span in
            let report = try await verifyTenant(tenant, source: source, target: target, settle: settle)
            span?.attributes["tenantry.verify.equal"] = report.equal
            return report
        }
    }

    private func verifyTenant(
        _ tenant: TenantID, source: MoveEndpoint, target: MoveEndpoint, settle: (@Sendable () async throws -> Void)?
    ) async throws -> Report {
        let started = ContinuousClock.now
        return try await Database.withConnection(source.url, logger: logger) { first in
            try await Database.withConnection(target.url, logger: logger) { second in
                for connection in [first, second] { try await normalize(connection) }
                var results: [TableResult] = []
                for table in plan.tables {
                    let sides = Sides(unified: first, tenant: second, tenantID: source.isShared ? tenant : nil)
                    do {
                        results.append(try await verify(table, sides: sides, settle: settle))
                    } catch {
                        throw Database.wrap(error, "verifying \(table.name) of tenant \(tenant)", tenant: tenant.rawValue, table: table.name)
                    }
                }
                return Report(
                    tenant: tenant, equal: results.allSatisfy { $0.differenceCount == 0 },
                    tables: results, seconds: (ContinuousClock.now - started).totalSeconds)
            }
        }
    }

    /// The same text for the same value on both sides, whatever the databases' defaults.
    func normalize(_ connection: PostgresConnection) async throws {
        try await connection.query("""
            SELECT set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO, MDY', false),
                   set_config('IntervalStyle', 'postgres', false), set_config('extra_float_digits', '1', false),
                   set_config('bytea_output', 'hex', false)
            """, logger: logger)
    }

    struct Sides {
        var unified: PostgresConnection
        var tenant: PostgresConnection
        /// The first side's row filter (the tenant in a shared database); nil when both sides hold one tenant.
        var tenantID: TenantID?
    }

    /// A key range `(lower, upper]`; `nil` bounds are open.
    struct KeyRange {
        var lower: [String]?
        var upper: [String]?
    }

    private func verify(_ table: MovePlan.Table, sides: Sides, settle: (@Sendable () async throws -> Void)?) async throws -> TableResult {
        let boundaries = try await chunkBoundaries(table, sides: sides)
        var ranges: [KeyRange] = []
        var lower: [String]?
        for boundary in boundaries {
            ranges.append(KeyRange(lower: lower, upper: boundary))
            lower = boundary
        }
        ranges.append(KeyRange(lower: lower, upper: nil))
        var unifiedRows = 0
        var tenantRows = 0
        var leaves: [KeyRange] = []
        for range in ranges {
            let (u, t) = try await summaries(table, range, sides: sides)
            unifiedRows += u.count
            tenantRows += t.count
            if u != t { leaves += try await bisect(table, range, sides: sides, unified: u, tenant: t) }
        }
        var differences = try await diff(table, leaves, sides: sides)
        var attempt = 0
        while !differences.isEmpty, let settle, attempt < rechecks {
            attempt += 1
            try await settle()
            // Only a difference seen again is one: rows written since the last look (in flight on a
            // database under load) are not reported.
            let before = Set(differences.map { "\($0.kind.rawValue) \($0.key)" })
            differences = try await diff(table, leaves, sides: sides).filter { before.contains("\($0.kind.rawValue) \($0.key)") }
            if differences.isEmpty {
                // Counts may have moved with the settled changes.
                unifiedRows = try await count(table, on: sides.unified, tenant: sides.tenantID)
                tenantRows = try await count(table, on: sides.tenant, tenant: nil)
            }
        }
        return TableResult(
            table: table.name, unifiedRows: unifiedRows, tenantRows: tenantRows, chunks: ranges.count,
            differences: Array(differences.prefix(Self.maxDifferencesPerTable)), differenceCount: differences.count)
    }

    // MARK: - SQL pieces

    private var keyArray: (MovePlan.Table) -> String {
        { table in "ARRAY[\(table.primaryKey.map { "\(MovePlan.quote($0))::text" }.joined(separator: ", "))]" }
    }

    func rowHash(_ table: MovePlan.Table) -> String {
        "md5(ROW(\(table.list(table.columns.map(\.name))))::text)"
    }

    /// `FROM … WHERE …` for one side and range; binds start at `$1`.
    private func source(_ table: MovePlan.Table, _ range: KeyRange?, tenant: TenantID?) -> PostgresQuery {
        var conditions: [String] = []
        var binds = PostgresBindings()
        if let tenant {
            binds.append(tenant.rawValue)
            conditions.append(plan.tenantFilter(parameter: binds.count))
        }
        let key = "(\(table.list(table.primaryKey)))"
        func tuple(_ values: [String]) -> String {
            var parts: [String] = []
            for (column, value) in zip(table.primaryKey, values) {
                binds.append(value)
                parts.append("CAST($\(binds.count) AS \(table.type(of: column)))")
            }
            return "(\(parts.joined(separator: ", ")))"
        }
        if let lower = range?.lower { conditions.append("\(key) > \(tuple(lower))") }
        if let upper = range?.upper { conditions.append("\(key) <= \(tuple(upper))") }
        let name = tenant == nil ? table.quoted : plan.unifiedName(table)
        var query = PostgresQuery(unsafeSQL: " FROM \(name)" + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")))
        query.binds = binds
        return query
    }

    private func prefixed(_ head: String, _ query: PostgresQuery, _ tail: String = "") -> PostgresQuery {
        var result = PostgresQuery(unsafeSQL: head + query.sql + tail)
        result.binds = query.binds
        return result
    }

    private func chunkBoundaries(_ table: MovePlan.Table, sides: Sides) async throws -> [[String]] {
        let from = source(table, nil, tenant: sides.tenantID)
        let query = prefixed(
            "SELECT k FROM (SELECT \(keyArray(table)) AS k, row_number() OVER (ORDER BY \(table.list(table.primaryKey))) AS n",
            from, ") s WHERE n % \(chunkSize) = 0 ORDER BY n")
        var result: [[String]] = []
        for try await key in try await sides.unified.query(query, logger: logger).decode([String].self) { result.append(key) }
        return result
    }

    struct Summary: Equatable {
        var count: Int
        var hash: String
    }

    private func summary(_ table: MovePlan.Table, _ range: KeyRange, on connection: PostgresConnection, tenant: TenantID?) async throws -> Summary {
        let query = prefixed(
            "SELECT count(*)::int, coalesce(sum(('x' || substr(\(rowHash(table)), 1, 16))::bit(64)::bigint::numeric), 0)::text",
            source(table, range, tenant: tenant))
        for try await (count, hash) in try await connection.query(query, logger: logger).decode((Int, String).self) {
            return Summary(count: count, hash: hash)
        }
        return Summary(count: 0, hash: "0")
    }

    private func summaries(_ table: MovePlan.Table, _ range: KeyRange, sides: Sides) async throws -> (Summary, Summary) {
        async let unified = summary(table, range, on: sides.unified, tenant: sides.tenantID)
        async let tenant = summary(table, range, on: sides.tenant, tenant: nil)
        return try await (unified, tenant)
    }

    private func count(_ table: MovePlan.Table, on connection: PostgresConnection, tenant: TenantID?) async throws -> Int {
        try await summary(table, KeyRange(), on: connection, tenant: tenant).count
    }

    /// Splits a differing range until each differing piece holds at most ``leafSize`` rows.
    private func bisect(_ table: MovePlan.Table, _ range: KeyRange, sides: Sides, unified: Summary, tenant: Summary) async throws -> [KeyRange] {
        guard max(unified.count, tenant.count) > leafSize else { return [range] }
        // The middle key of the larger side splits the range.
        let (connection, filter, size) = unified.count >= tenant.count
            ? (sides.unified, sides.tenantID, unified.count) : (sides.tenant, nil, tenant.count)
        let query = prefixed(
            "SELECT \(keyArray(table))", source(table, range, tenant: filter),
            " ORDER BY \(table.list(table.primaryKey)) OFFSET \(size / 2 - 1) LIMIT 1")
        guard let middle = try await connection.query(query, logger: logger).decode([String].self).first(where: { _ in true }) else {
            return [range]
        }
        var leaves: [KeyRange] = []
        for half in [KeyRange(lower: range.lower, upper: middle), KeyRange(lower: middle, upper: range.upper)] {
            let (u, t) = try await summaries(table, half, sides: sides)
            if u != t { leaves += try await bisect(table, half, sides: sides, unified: u, tenant: t) }
        }
        return leaves
    }

    /// Compares rows in each leaf range by key and hash.
    private func diff(_ table: MovePlan.Table, _ leaves: [KeyRange], sides: Sides) async throws -> [Difference] {
        var differences: [Difference] = []
        for range in leaves {
            async let unified = rows(table, range, on: sides.unified, tenant: sides.tenantID)
            async let tenant = rows(table, range, on: sides.tenant, tenant: nil)
            let (u, t) = try await (unified, tenant)
            let tenantByKey = Dictionary(t.map { ($0.key, $0.hash) }, uniquingKeysWith: { first, _ in first })
            let unifiedKeys = Set(u.map(\.key))
            for row in u {
                switch tenantByKey[row.key] {
                case nil: differences.append(Difference(table: table.name, kind: .missing, key: row.key))
                case let hash? where hash != row.hash: differences.append(Difference(table: table.name, kind: .changed, key: row.key))
                default: break
                }
            }
            for row in t where !unifiedKeys.contains(row.key) {
                differences.append(Difference(table: table.name, kind: .extra, key: row.key))
            }
        }
        return differences
    }

    private func rows(_ table: MovePlan.Table, _ range: KeyRange, on connection: PostgresConnection, tenant: TenantID?) async throws -> [(key: [String], hash: String)] {
        let query = prefixed("SELECT \(keyArray(table)), \(rowHash(table))", source(table, range, tenant: tenant))
        var result: [(key: [String], hash: String)] = []
        for try await (key, hash) in try await connection.query(query, logger: logger).decode(([String], String).self) {
            result.append((key, hash))
        }
        return result
    }
}
