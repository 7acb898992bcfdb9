import Logging
import PostgresNIO
import TenantryCore

/// Moves the tenant database's sequences (serial and identity columns) past every value in use:
/// past the tenant's own rows and past the unified database's sequence for the same column, so
/// ids made in either database never collide when rows flow back (reverse sync, rollback).
///
/// A fixed number of round trips whatever the number of sequences (after a copy: one on each
/// side; at cutover four on the tenant side, one on the unified side): it runs once per copied
/// tenant and inside the cutover fence.
struct SequenceSync: Sendable {
    let plan: MovePlan
    let logger: Logger

    /// One serial or identity column of the tenant database.
    private struct Owned {
        let sequence: String
        let table: String
        let column: String
        /// The table's schema-qualified, quoted name (the same in both databases).
        let qualified: String
    }

    /// Sets every owned sequence of the tenant database to
    /// `max(max(column) + 1, next value of the unified sequence)`, in two round trips.
    func advance(tenantDatabase: PostgresConnection, unified: PostgresConnection) async throws {
        try await advance(tenantDatabase: tenantDatabase, unifiedNext: try await unifiedNextValues(unified))
    }

    /// The next value of every sequence owned by a column of the plan's tables in the unified
    /// database (or whichever database `unified` is), keyed by table and column: one round trip.
    /// A copy reads them as soon as its reads are done, while the target still loads.
    func unifiedNextValues(_ unified: PostgresConnection) async throws -> [UnifiedSequence] {
        let rows = try await unified.query("""
            SELECT c.relname::text, a.attname::text, coalesce(pg_catalog.pg_sequence_last_value(s.oid) + 1, 1)::int8
            \(unescaped: Self.ownedSequencesJoin) \(plan.schema)
            """, logger: logger)
        var result: [UnifiedSequence] = []
        for try await (table, column, next) in rows.decode((String, String, Int64).self) where plan.table(table) != nil {
            result.append(UnifiedSequence(table: table, column: column, next: next))
        }
        return result
    }

    /// The sequences owned by a column (`s`), with their table (`c`) and column (`a`), of the
    /// schema named right after it (a bind, or a literal inside a DO block).
    static let ownedSequencesJoin = """
        FROM pg_class s
        JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
            AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        JOIN pg_class c ON c.oid = d.refobjid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
        WHERE s.relkind = 'S' AND n.nspname =
        """

    /// The next value of a unified sequence owned by `table.column`.
    struct UnifiedSequence: Sendable {
        let table: String
        let column: String
        let next: Int64
    }

    /// Sets every owned sequence of the tenant database to `max(max(column) + 1, unified next
    /// value, 1)` in one round trip: one DO block finds the sequences, reads each column's maximum
    /// and sets the sequence (`setval`; `ALTER SEQUENCE … NO MAXVALUE RESTART` where an id block
    /// still caps it).
    func advance(tenantDatabase: PostgresConnection, unifiedNext: [UnifiedSequence]) async throws {
        let tables = plan.tables.map { CaptureSQL.literal($0.name) }
        guard !tables.isEmpty else { return }
        let unified = unifiedNext.map { "(\(CaptureSQL.literal($0.table)), \(CaptureSQL.literal($0.column)), \($0.next)::int8)" }
        let lookup = unified.isEmpty
            ? "1"
            : "coalesce((SELECT v.n FROM (VALUES \(unified.joined(separator: ", "))) AS v(t, c, n) WHERE v.t = r.rel AND v.c = r.col), 1)"
        let body = """
            DECLARE r record; m int8; u int8;
            BEGIN
            FOR r IN
                SELECT s.oid::regclass::text AS seq, c.oid::regclass::text AS tbl, c.relname::text AS rel, a.attname::text AS col
                \(Self.ownedSequencesJoin) \(CaptureSQL.literal(plan.schema))
                  AND c.relname = ANY(ARRAY[\(tables.joined(separator: ", "))]::text[])
            LOOP
                EXECUTE format('SELECT coalesce(max(%I), 0)::int8 FROM %s', r.col, r.tbl) INTO m;
                u := \(lookup);
                -- A sequence still capped by an id block (a copy after a rollback) loses its cap
                -- (DDL); any other is set in place, without DDL (setval is not rolled back with
                -- a failed copy, which only leaves the sequence further ahead).
                IF (SELECT s.seqmax <> CASE s.seqtypid WHEN 'pg_catalog.int2'::pg_catalog.regtype THEN 32767
                                                       WHEN 'pg_catalog.int4'::pg_catalog.regtype THEN 2147483647
                                                       ELSE 9223372036854775807 END
                    FROM pg_catalog.pg_sequence s WHERE s.seqrelid = r.seq::pg_catalog.regclass) THEN
                    EXECUTE format('ALTER SEQUENCE %s NO MAXVALUE RESTART WITH %s', r.seq, greatest(m + 1, u, 1));
                ELSE
                    PERFORM pg_catalog.setval(r.seq::pg_catalog.regclass, greatest(m + 1, u, 1), false);
                END IF;
            END LOOP;
            END
            """
        let tag = CaptureSQL.dollarTag(notIn: body)
        try await tenantDatabase.query(PostgresQuery(unsafeSQL: "DO \(tag)\n\(body)\n\(tag)"), logger: logger)
    }

    /// At cutover: gives the tenant database a block of ids no other tenant can get. The unified
    /// sequence is pushed past the block, and the tenant sequence restarts inside it, clear of any
    /// id the unified database may have handed out meanwhile. Rows made in the tenant database then
    /// flow back (reverse sync, rollback) without colliding with other tenants' rows under a
    /// unified key that is global (`id` alone). Block: 10^9 ids for bigint columns, 10^6 for
    /// integer, 10^3 for smallint; the tenant keeps the upper half.
    /// Returns the headroom: the fewest ids any sequence can hand out inside its block (nil: no block).
    @discardableResult
    func reserveBlock(tenantDatabase: PostgresConnection, unified: PostgresConnection) async throws -> Int64? {
        let owned = try await ownedSequences(tenantDatabase)
        guard !owned.isEmpty else { return nil }
        let localMax = try await maxima(owned, tenantDatabase)
        let blocks = owned.map { column -> Int64 in
            let type = plan.table(column.table)?.type(of: column.column) ?? "bigint"
            return type == "smallint" ? 1_000 : type == "integer" ? 1_000_000 : 1_000_000_000
        }
        let reserved = try await keyed(owned, unified, """
            pg_catalog.setval(pg_catalog.pg_get_serial_sequence(q, c),
                pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(q, c)) + b)::int8
            """, blocks: blocks)
        var blockRows: [String] = []
        var headroom: Int64?
        try await setSequences(tenantDatabase, owned.enumerated().map { index, column in
            var start = localMax[index] + 1
            guard let reserved = reserved[index] else { return (column.sequence, start, nil) }
            start = max(start, reserved - blocks[index] / 2)
            // The block ends where the unified sequence resumes: past it the tenant's nextval fails
            // loudly instead of handing out an id that another tenant may hold in unified.
            guard start <= reserved else { return (column.sequence, start, nil) }
            blockRows.append("(\(CaptureSQL.literal(column.sequence)), \(start), \(reserved), \(blocks[index]))")
            headroom = min(headroom ?? .max, reserved - start + 1)
            return (column.sequence, start, reserved)
        })
        try await tenantDatabase.query("DELETE FROM tenantry.id_blocks", logger: logger)
        if !blockRows.isEmpty {
            try await tenantDatabase.query(PostgresQuery(unsafeSQL: """
                INSERT INTO tenantry.id_blocks (sequence_name, block_start, block_end, block_size) VALUES \(blockRows.joined(separator: ", "))
                """), logger: logger)
        }
        return headroom
    }

    /// One id block of a dedicated tenant's sequence and what is left of it.
    struct Block: Sendable {
        var sequence: String
        var end: Int64
        var size: Int64
        /// Ids the tenant database can still hand out before the block ends.
        var remaining: Int64
    }

    /// The id blocks of a tenant database (empty before its first cutover).
    func blocks(tenantDatabase: PostgresConnection) async throws -> [Block] {
        let rows = try await tenantDatabase.query("""
            SELECT sequence_name, block_end, block_size,
                   block_end - coalesce(pg_catalog.pg_sequence_last_value(sequence_name::regclass), block_start - 1)
            FROM tenantry.id_blocks ORDER BY sequence_name
            """, logger: logger)
        var result: [Block] = []
        for try await (sequence, end, size, remaining) in rows.decode((String, Int64, Int64, Int64).self) {
            result.append(Block(sequence: sequence, end: end, size: size, remaining: remaining))
        }
        return result
    }

    /// Gives every block with less than a quarter of its size left a new block (the unified
    /// sequence pushed past it, the tenant sequence restarted inside it). Returns the headroom
    /// afterwards: the fewest ids any sequence can still hand out (nil when there is no block).
    @discardableResult
    func extendBlocks(tenantDatabase: PostgresConnection, unified: PostgresConnection) async throws -> Int64? {
        let blocks = try await blocks(tenantDatabase: tenantDatabase)
        var headroom = blocks.map(\.remaining).min()
        let low = blocks.filter { $0.remaining < $0.size / 4 }
        guard !low.isEmpty else { return headroom }
        let owned = try await ownedSequences(tenantDatabase).filter { column in low.contains { $0.sequence == column.sequence } }
        let sizes = owned.map { column in low.first { $0.sequence == column.sequence }!.size }
        let reserved = try await keyed(owned, unified, """
            pg_catalog.setval(pg_catalog.pg_get_serial_sequence(q, c),
                pg_catalog.nextval(pg_catalog.pg_get_serial_sequence(q, c)) + b)::int8
            """, blocks: sizes)
        var values: [(String, Int64, Int64?)] = []
        var rows: [String] = []
        for (index, column) in owned.enumerated() {
            guard let end = reserved[index] else { continue }
            let start = end - sizes[index] / 2
            values.append((column.sequence, start, end))
            rows.append("(\(CaptureSQL.literal(column.sequence)), \(start), \(end), \(sizes[index]))")
        }
        guard !values.isEmpty else { return headroom }
        try await setSequences(tenantDatabase, values)
        try await tenantDatabase.query(PostgresQuery(unsafeSQL: """
            INSERT INTO tenantry.id_blocks (sequence_name, block_start, block_end, block_size) VALUES \(rows.joined(separator: ", "))
            ON CONFLICT (sequence_name) DO UPDATE SET block_start = EXCLUDED.block_start, block_end = EXCLUDED.block_end,
                block_size = EXCLUDED.block_size, updated_at = now()
            """), logger: logger)
        headroom = try await self.blocks(tenantDatabase: tenantDatabase).map(\.remaining).min()
        logger.info("id blocks extended", metadata: ["sequences": "\(values.map(\.0))", "headroom": "\(headroom ?? 0)"])
        return headroom
    }

    /// `max(column)` (0 when empty) of every owned column, in one query.
    private func maxima(_ owned: [Owned], _ connection: PostgresConnection) async throws -> [Int64] {
        let selects = owned.enumerated().map { index, column in
            "SELECT \(index), coalesce(max(\(MovePlan.quote(column.column))), 0)::int8 FROM \(column.qualified)"
        }
        var values = [Int64](repeating: 0, count: owned.count)
        let rows = try await connection.query(PostgresQuery(unsafeSQL: selects.joined(separator: " UNION ALL ")), logger: logger)
        for try await (index, value) in rows.decode((Int, Int64).self) { values[index] = value }
        return values
    }

    /// Evaluates `expression` (over `q`, the qualified table, `c`, the column, and `b`, the block)
    /// in the unified database for every owned column whose unified column has a sequence; nil
    /// where it has none.
    private func keyed(
        _ owned: [Owned], _ unified: PostgresConnection, _ expression: String, blocks: [Int64]? = nil
    ) async throws -> [Int64?] {
        let tuples = owned.enumerated().map { index, column in
            "(\(index), \(CaptureSQL.literal(column.qualified)), \(CaptureSQL.literal(column.column)), \(blocks?[index] ?? 0)::int8)"
        }
        let sql = """
            SELECT i, \(expression) FROM (VALUES \(tuples.joined(separator: ", "))) AS v(i, q, c, b)
            WHERE pg_catalog.pg_get_serial_sequence(q, c) IS NOT NULL
            """
        var values = [Int64?](repeating: nil, count: owned.count)
        let rows = try await unified.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        for try await (index, value) in rows.decode((Int, Int64).self) { values[index] = value }
        return values
    }

    /// Restarts each sequence at its value, with its block's end as MAXVALUE (none when nil), in
    /// one round trip.
    private func setSequences(_ connection: PostgresConnection, _ values: [(String, Int64, Int64?)]) async throws {
        let statements = values.map { sequence, start, end in
            let limit = end.map { "MAXVALUE \($0)" } ?? "NO MAXVALUE"
            return "ALTER SEQUENCE \(sequence) \(limit) RESTART WITH \(start);"
        }
        let body = statements.joined(separator: "\n")
        let tag = CaptureSQL.dollarTag(notIn: body)
        try await connection.query(PostgresQuery(unsafeSQL: "DO \(tag) BEGIN\n\(body)\nEND \(tag)"), logger: logger)
    }

    private func ownedSequences(_ connection: PostgresConnection) async throws -> [Owned] {
        let rows = try await connection.query("""
            SELECT s.oid::regclass::text, c.relname::text, a.attname::text
            \(unescaped: Self.ownedSequencesJoin) \(plan.schema)
            ORDER BY 1
            """, logger: logger)
        var result: [Owned] = []
        for try await (sequence, table, column) in rows.decode((String, String, String).self) where plan.table(table) != nil {
            result.append(Owned(
                sequence: sequence, table: table, column: column,
                qualified: "\(MovePlan.quote(plan.schema)).\(MovePlan.quote(table))"))
        }
        return result
    }
}
