import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import TenantryCore

/// The SQL of one fleet-query session: read-only, time-limited, values as text.
///
/// PostgresNIO asks for every result column in binary format, so the values are converted to
/// text by PostgreSQL itself: the statement is described (its column names and type oids, from
/// one row of NULLs: a `LEFT JOIN` to the query with `LIMIT 0`, which never runs it) and read
/// with each column cast to `text` (PostgreSQL's own output functions) under positional aliases —
/// two statements for the first tenants, one (both joined) for the others, see ``read``. The
/// per-tenant SQL is embedded unchanged as a subquery.
enum FleetSession {
    /// What one statement returned.
    struct Answer: Sendable {
        /// Names and `format_type` names.
        var columns: [FleetQuery.Column]
        /// Whether each column's type is a `pg_catalog` one (it exists on every server) and not a
        /// pseudo-type (`void`, `record`: no column can have one).
        var builtin: [Bool]
        /// The values as text.
        var rows: [[String?]]
    }

    /// Makes the current transaction `READ ONLY` and limits each statement to `timeout`, in one
    /// round trip (`transaction_read_only` is what `SET TRANSACTION READ ONLY` sets; switching to
    /// read-only is allowed at any point of a transaction, also in a savepoint).
    static func restrict(_ connection: PostgresConnection, timeout: Duration, logger: Logger) async throws {
        let milliseconds = String(max(1, timeout.wholeMilliseconds))
        try await connection.query("""
            SELECT set_config('transaction_read_only', 'on', true), set_config('statement_timeout', \(milliseconds), true)
            """, logger: logger)
    }

    /// The type names of built-in type oids (below 16384, `FirstNormalObjectId`: the same on every
    /// database), learnt once per fleet query, so most tenants need no type lookup.
    final class TypeNames: Sendable {
        private let known = NIOLockedValueBox([Int64: (name: String, builtin: Bool)]())

        func lookup(_ oids: [Int64]) -> [(name: String, builtin: Bool)]? {
            known.withLockedValue { known in
                let found = oids.compactMap { known[$0] }
                return found.count == oids.count ? found : nil
            }
        }

        func learn(_ oids: [Int64], _ types: [(name: String, builtin: Bool)]) {
            known.withLockedValue { known in
                for (oid, type) in zip(oids, types) where oid < 16384 { known[oid] = type }
            }
        }
    }

    /// The column count of the query, learnt by the first tenants' describe and shared by the
    /// tenants of one fleet query, so the others need no describe statement of their own.
    final class Shape: Sendable {
        private let learnt = NIOLockedValueBox<Int?>(nil)

        /// The column count, once a tenant has described the query.
        var count: Int? { learnt.withLockedValue { $0 } }

        func learn(_ count: Int) { learnt.withLockedValue { if $0 == nil { $0 = count } } }
    }

    /// The tenant's result has another column count than ``Shape`` learnt: read it again with a
    /// describe of its own (in a new transaction), so its own columns are compared and reported.
    struct ShapeChanged: Error {}

    /// Runs `sql` (one query, without a trailing `;`) and returns its columns and rows as text.
    ///
    /// Once `shape` knows the column count, one statement: the cast query (positional aliases,
    /// each column cast to text) joined to the describe's `LIMIT 0` subquery `ON false`, whose
    /// all-NULL columns carry this tenant's own names and type oids in every row; a leading
    /// `true` column tells a row of the query from the one row of NULLs a tenant without rows gets
    /// (so even then the names are known). A tenant whose query has fewer columns fails with
    /// `42P10`, one with more throws ``ShapeChanged``: the caller reads both again without `shape`.
    static func read(
        _ connection: PostgresConnection, sql: String, typeNames: TypeNames = TypeNames(), shape: Shape? = nil, logger: Logger
    ) async throws -> Answer {
        guard let count = shape?.count, count > 0 else {
            let answer = try await describeAndRead(connection, sql: sql, typeNames: typeNames, logger: logger)
            shape?.learn(answer.columns.count)
            return answer
        }
        let aliases = (1...count).map { "fleet_c\($0)" }
        let statement = """
            SELECT fleet_rows.*, fleet_shape.* FROM (VALUES (1)) AS fleet_one (one)
            LEFT JOIN (SELECT true AS fleet_row, \(aliases.map { "fleet_query.\($0)::text" }.joined(separator: ", ")) FROM (
            \(sql)
            ) AS fleet_query (\(aliases.joined(separator: ", ")))) AS fleet_rows ON true
            LEFT JOIN (SELECT * FROM (
            \(sql)
            ) AS fleet_inner LIMIT 0) AS fleet_shape ON false
            """
        var names: [String] = []
        var oids: [Int64] = []
        var values: [[String?]] = []
        for try await row in try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) {
            let cells = Array(row)
            if names.isEmpty {
                guard cells.count == 1 + 2 * count else { throw ShapeChanged() }
                for cell in cells[(1 + count)...] {
                    names.append(cell.columnName)
                    oids.append(Int64(cell.dataType.rawValue))
                }
            }
            if cells[0].bytes != nil { values.append(cells[1...count].map { cell in cell.bytes.map { String(buffer: $0) } }) }
        }
        let (types, builtin) = try await typeNamesOf(oids, connection, typeNames: typeNames, logger: logger)
        guard types.count == names.count else {
            throw TenantryError(code: .database, message: "cannot read the result's column types")
        }
        return Answer(
            columns: zip(names, types).map { FleetQuery.Column(name: $0, type: $1) }, builtin: builtin, rows: values)
    }

    /// The describe (names and type oids from one row of NULLs: a `LEFT JOIN` to the query with
    /// `LIMIT 0`, which never runs it), then the query with each column cast to text: the first
    /// tenants' way, and any tenant's whose column count differs from theirs.
    static func describeAndRead(
        _ connection: PostgresConnection, sql: String, typeNames: TypeNames, logger: Logger
    ) async throws -> Answer {
        let describe = """
            SELECT fleet_query.* FROM (VALUES (1)) AS fleet_one (one) LEFT JOIN (SELECT * FROM (
            \(sql)
            ) AS fleet_inner LIMIT 0) AS fleet_query ON true
            """
        var names: [String] = []
        var oids: [Int64] = []
        for try await row in try await connection.query(PostgresQuery(unsafeSQL: describe), logger: logger) {
            for cell in row {
                names.append(cell.columnName)
                oids.append(Int64(cell.dataType.rawValue))
            }
        }
        let (types, builtin) = try await typeNamesOf(oids, connection, typeNames: typeNames, logger: logger)
        guard types.count == names.count else {
            throw TenantryError(code: .database, message: "cannot read the result's column types")
        }
        let aliases = names.indices.map { "fleet_c\($0 + 1)" }
        let select = aliases.map { "fleet_query.\($0)::text" }.joined(separator: ", ")
        let main = """
            SELECT \(select) FROM (
            \(sql)
            ) AS fleet_query\(aliases.isEmpty ? "" : " (" + aliases.joined(separator: ", ") + ")")
            """
        var values: [[String?]] = []
        for try await row in try await connection.query(PostgresQuery(unsafeSQL: main), logger: logger) {
            values.append(row.map { cell in cell.bytes.map { String(buffer: $0) } })
        }
        return Answer(
            columns: zip(names, types).map { FleetQuery.Column(name: $0, type: $1) }, builtin: builtin, rows: values)
    }

    /// The `format_type` names of `oids` and whether each is built in: from `typeNames` when it
    /// knows them all, else in one query (built-in ones learnt for the other tenants).
    static func typeNamesOf(
        _ oids: [Int64], _ connection: PostgresConnection, typeNames: TypeNames, logger: Logger
    ) async throws -> (types: [String], builtin: [Bool]) {
        if let known = typeNames.lookup(oids) { return (known.map(\.name), known.map(\.builtin)) }
        var types: [String] = []
        var builtin: [Bool] = []
        let rows = try await connection.query("""
            SELECT format_type(t.oid, NULL), t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype <> 'p'
            FROM unnest(\(oids)::bigint[]) WITH ORDINALITY AS u (type_oid, position) JOIN pg_type t ON t.oid = u.type_oid::oid
            ORDER BY u.position
            """, logger: logger)
        for try await (type, isBuiltin) in rows.decode((String, Bool).self) {
            types.append(type)
            builtin.append(isBuiltin)
        }
        if types.count == oids.count { typeNames.learn(oids, Array(zip(types, builtin)).map { (name: $0, builtin: $1) }) }
        return (types, builtin)
    }

    /// Shadows every tenant table of the unified database's `public` schema (a `NOT NULL`
    /// discriminator column) with a temporary view of the current tenant's rows, without the
    /// discriminator column — what the tenant's own database holds. The filter is the row-level
    /// security policy's (`docs/security.md`): the discriminator equal to `tenantry.tenant`, which
    /// the router sets on every unified connection. Temporary relations come first in the search
    /// path, so the tenant SQL's unqualified `orders` reads the view. Run inside a savepoint that is
    /// rolled back afterwards: the views never outlive the query nor reach the pooled session.
    static func shadowTenantTables(_ connection: PostgresConnection, discriminator: String, logger: Logger) async throws {
        let column = discriminator.replacingOccurrences(of: "'", with: "''")
        try await connection.query(PostgresQuery(unsafeSQL: """
            DO $fleet_query$
            DECLARE t record;
            BEGIN
              FOR t IN
                SELECT c.relname AS name, format_type(d.atttypid, d.atttypmod) AS key_type,
                       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> d.attname) AS columns
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                JOIN pg_attribute d ON d.attrelid = c.oid AND d.attname = '\(column)' AND NOT d.attisdropped AND d.attnotnull
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
              LOOP
                EXECUTE format(
                  'CREATE OR REPLACE TEMP VIEW %I AS SELECT %s FROM public.%I WHERE %I = CAST(nullif(current_setting(''tenantry.tenant'', true), '''') AS %s)',
                  t.name, coalesce(t.columns, ''), t.name, '\(column)', t.key_type);
              END LOOP;
            END
            $fleet_query$
            """), logger: logger)
    }
}
