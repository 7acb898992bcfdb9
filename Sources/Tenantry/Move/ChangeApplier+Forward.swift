import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension ChangeApplier {
    /// Applies `changes` in order into a target that records them (``MoveEndpoint/recordsChanges``,
    /// a server move's follower): a change the copy snapshot already held is not applied again
    /// but its record is forwarded into the target's stream as it is, so the next link (to
    /// unified) still gets it; the others are applied and the target's capture records them.
    /// Runs of each kind stay in order, so the target's stream keeps the source's order.
    func applyRecording(_ changes: [CapturedChange], tenant: TenantID, grouped: Bool, on connection: PostgresConnection) async throws {
        var start = changes.startIndex
        while start < changes.endIndex {
            let inCopy = changes[start].inCopy
            var end = start
            while end < changes.endIndex, changes[end].inCopy == inCopy { end += 1 }
            let run = Array(changes[start..<end])
            if inCopy {
                try await forward(run, tenant: tenant, on: connection)
            } else if grouped {
                try await applyGrouped(run, on: connection)
            } else {
                for change in run { try await apply(change, on: connection) }
            }
            start = end
        }
    }

    /// Appends `changes` to the target's `tenantry.changes` as they were captured (new ids, in
    /// order; the target's transaction id, so the target's stream applies them).
    func forward(_ changes: [CapturedChange], tenant: TenantID, on connection: PostgresConnection) async throws {
        try await Self.insertRecords(changes, tenant: tenant, firstID: nil, on: connection, logger: logger)
    }

    /// Inserts `changes` into `tenantry.changes` on `connection` in order, 1,000 per statement:
    /// with ids from the sequence, or `firstID, firstID + 1, …` (a hand-over puts a queue ahead of
    /// every change waiting there).
    static func insertRecords(
        _ changes: [CapturedChange], tenant: TenantID, firstID: Int64?, on connection: PostgresConnection, logger: Logger
    ) async throws {
        struct Record: Encodable {
            var i: Int64?
            var t: String
            var o: String
            var k: String?
            var r: String?
            var c: Double
        }
        for start in stride(from: 0, to: changes.count, by: 1_000) {
            let records = changes[start..<min(start + 1_000, changes.count)].enumerated().map { offset, change in
                Record(
                    i: firstID.map { $0 + Int64(start + offset) }, t: change.table, o: String(change.op), k: change.oldKey,
                    r: change.row, c: change.capturedAt.timeIntervalSince1970)
            }
            let id = firstID == nil ? "" : "id, "
            let value = firstID == nil ? "" : "(e->>'i')::int8, "
            var query = PostgresQuery(unsafeSQL: """
                INSERT INTO tenantry.changes (\(id)tenant_id, table_name, op, old_key, row_data, captured_at)
                SELECT \(value)$1, e->>'t', (e->>'o')::"char", (e->>'k')::jsonb, (e->>'r')::jsonb, to_timestamp((e->>'c')::float8)
                FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS u(e, n)
                ORDER BY n
                """)
            query.binds.append(tenant.rawValue)
            query.binds.append(String(decoding: try JSONEncoder().encode(records), as: UTF8.self))
            try await connection.query(query, logger: logger)
        }
    }
}
