import Logging
import PostgresNIO
import TenantryCore

/// Moves the tenant database's sequences (serial and identity columns) past every value in use:
/// past the tenant's own rows and past the unified database's sequence for the same column, so
/// ids made in either database never collide when rows flow back (reverse sync, rollback).
struct SequenceSync: Sendable {
    let plan: MovePlan
    let logger: Logger

    /// Sets every owned sequence of the tenant database to
    /// `max(max(column) + 1, next value of the unified sequence)`.
    func advance(tenantDatabase: PostgresConnection, unified: PostgresConnection) async throws {
        let sequences = try await ownedSequences(tenantDatabase)
        for (sequence, table, column) in sequences where plan.table(table) != nil {
            let qualified = "\(MovePlan.quote(plan.schema)).\(MovePlan.quote(table))"
            let localMax = try await tenantDatabase.query(
                PostgresQuery(unsafeSQL: "SELECT coalesce(max(\(MovePlan.quote(column)))::int8, 0) FROM \(qualified)"), logger: logger)
                .decode(Int64.self).first(where: { _ in true }) ?? 0
            var next = max(localMax + 1, 1)
            let unifiedSequence = try await unified.query(
                "SELECT pg_get_serial_sequence(\(qualified), \(column))", logger: logger)
                .decode(String?.self).first(where: { _ in true }) ?? nil
            if let unifiedSequence {
                let unifiedNext = try await unified.query(PostgresQuery(unsafeSQL: """
                    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END::int8 FROM \(unifiedSequence)
                    """), logger: logger).decode(Int64.self).first(where: { _ in true }) ?? 1
                next = max(next, unifiedNext)
            }
            try await tenantDatabase.query("SELECT setval(\(sequence)::regclass, \(next), false)", logger: logger)
        }
    }

    /// At cutover: gives the tenant database a block of ids no other tenant can get. The unified
    /// sequence is pushed past the block, and the tenant sequence restarts inside it, clear of any
    /// id the unified database may have handed out meanwhile. Rows made in the tenant database then
    /// flow back (reverse sync, rollback) without colliding with other tenants' rows under a
    /// unified key that is global (`id` alone). Block: 10^9 ids for bigint columns, 10^6 for
    /// integer, 10^3 for smallint; the tenant keeps the upper half.
    func reserveBlock(tenantDatabase: PostgresConnection, unified: PostgresConnection) async throws {
        let owned = try await ownedSequences(tenantDatabase)
        for (sequence, table, column) in owned where plan.table(table) != nil {
            let qualified = "\(MovePlan.quote(plan.schema)).\(MovePlan.quote(table))"
            let localMax = try await tenantDatabase.query(
                PostgresQuery(unsafeSQL: "SELECT coalesce(max(\(MovePlan.quote(column)))::int8, 0) FROM \(qualified)"), logger: logger)
                .decode(Int64.self).first(where: { _ in true }) ?? 0
            var start = localMax + 1
            if let unifiedSequence = try await unified.query(
                "SELECT pg_get_serial_sequence(\(qualified), \(column))", logger: logger)
                .decode(String?.self).first(where: { _ in true }) ?? nil {
                let type = plan.table(table)?.type(of: column) ?? "bigint"
                let block: Int64 = type == "smallint" ? 1_000 : type == "integer" ? 1_000_000 : 1_000_000_000
                let reserved = try await unified.query(PostgresQuery(unsafeSQL: """
                    SELECT setval(\(CaptureSQL.literal(unifiedSequence)), nextval(\(CaptureSQL.literal(unifiedSequence))) + \(block))::int8
                    """), logger: logger).decode(Int64.self).first(where: { _ in true }) ?? block
                start = max(start, reserved - block / 2)
            }
            try await tenantDatabase.query("SELECT setval(\(sequence)::regclass, \(start), false)", logger: logger)
        }
    }

    private func ownedSequences(_ connection: PostgresConnection) async throws -> [(String, String, String)] {
        let rows = try await connection.query("""
            SELECT s.oid::regclass::text, c.relname::text, a.attname::text
            FROM pg_class s
            JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
            JOIN pg_class c ON c.oid = d.refobjid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
            WHERE s.relkind = 'S' AND n.nspname = \(plan.schema)
            ORDER BY 1
            """, logger: logger)
        var result: [(String, String, String)] = []
        for try await row in rows.decode((String, String, String).self) { result.append(row) }
        return result
    }
}
