import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// One captured change, as the relay reads it from `tenantry.changes`.
struct CapturedChange: Sendable {
    var id: Int64
    var table: String
    var op: Character
    /// For deletes and key-changing updates: the old key as a JSON object.
    var oldKey: String?
    /// For inserts and updates: the new row as a JSON object.
    var row: String?
    /// Whether the copy snapshot already saw this change's transaction (then it is skipped).
    var inCopy: Bool
    var attempts: Int
    /// When it was captured.
    var capturedAt: Date = Date()
}

/// Applies captured changes to a move's target (``MoveEndpoint``): upserts by primary key,
/// deletes by key, runs of the same table applied as one statement, everything idempotent
/// (applying a change twice leaves the same row).
///
/// The SQL comes from the target alone. Into a database of one tenant (shared → dedicated, or a
/// tenant database on another server): the tenant tables and keys. Into a shared database
/// (reverse sync): the discriminator is added, the unified keys are used, and the upsert never
/// updates a row of another tenant (``TenantryError/Code/crossTenantChange``).
struct ChangeApplier: Sendable {
    let plan: MovePlan
    /// Where the changes are applied.
    let target: MoveEndpoint
    let logger: Logger

    init(plan: MovePlan, target: MoveEndpoint, logger: Logger) {
        self.plan = plan
        self.target = target
        self.logger = logger
    }

    /// One statement's worth of work.
    private enum Step {
        case upsert(MovePlan.Table, rows: [String])
        case delete(MovePlan.Table, keys: [String])
    }

    /// Applies `changes` in order inside the caller's transaction, grouping runs.
    func applyGrouped(_ changes: [CapturedChange], on connection: PostgresConnection) async throws {
        // A shared database's foreign keys are not deferrable: keep the exact order there.
        guard target.defersConstraints else {
            for change in changes { try await apply(change, on: connection) }
            return
        }
        for step in try steps(changes) { try await run(step, on: connection) }
    }

    /// Applies one change (inside the caller's transaction).
    func apply(_ change: CapturedChange, on connection: PostgresConnection) async throws {
        for step in try steps([change]) { try await run(step, on: connection) }
    }

    private func steps(_ changes: [CapturedChange]) throws -> [Step] {
        var steps: [Step] = []
        var upserts: (table: MovePlan.Table, keys: [String: Int], rows: [String])?
        var deletes: (table: MovePlan.Table, keys: Set<String>, list: [String])?
        func flushUpserts() {
            if let run = upserts { steps.append(.upsert(run.table, rows: run.rows)) }
            upserts = nil
        }
        func flushDeletes() {
            if let run = deletes { steps.append(.delete(run.table, keys: run.list)) }
            deletes = nil
        }
        for change in changes where !change.inCopy {
            guard let table = plan.table(change.table) else {
                throw TenantryError(
                    code: .conflict,
                    message: "change \(change.id) is for table \(change.table), which is not a tenant table of the unified schema "
                        + "(re-run 'tenantry capture install' after schema changes)", table: change.table)
            }
            if let key = change.oldKey {
                flushUpserts()
                if deletes?.table.name != table.name { flushDeletes(); deletes = (table, [], []) }
                if deletes!.keys.insert(key).inserted { deletes!.list.append(key) }
            }
            guard change.op != "D", let row = change.row else { continue }
            flushDeletes()
            if upserts?.table.name != table.name { flushUpserts(); upserts = (table, [:], []) }
            // Two images of one key in a run: the later wins (one statement cannot touch a row twice).
            let key = Self.key(of: row, table: table)
            if let index = upserts!.keys[key] {
                upserts!.rows[index] = row
            } else {
                upserts!.keys[key] = upserts!.rows.count
                upserts!.rows.append(row)
            }
        }
        flushUpserts()
        flushDeletes()
        return steps
    }

    private func run(_ step: Step, on connection: PostgresConnection) async throws {
        switch step {
        case .upsert(let table, let rows):
            var query = PostgresQuery(unsafeSQL: upsertSQL(table))
            query.binds.append("[" + rows.joined(separator: ",") + "]")
            guard let filter = target.filter else {
                try await connection.query(query, logger: logger)
                return
            }
            // A shared target: a conflicting row of another tenant is never updated (the WHERE of
            // the upsert), and a row not written is an error naming both tenants.
            query.binds.append(filter.tenant.rawValue)
            var written = 0
            for try await _ in try await connection.query(query, logger: logger) { written += 1 }
            if written < rows.count {
                throw try await crossTenantError(table, rows: rows, filter: filter, on: connection)
            }
        case .delete(let table, let keys):
            var query = PostgresQuery(unsafeSQL: deleteSQL(table))
            query.binds.append("[" + keys.joined(separator: ",") + "]")
            if let filter = target.filter { query.binds.append(filter.tenant.rawValue) }
            try await connection.query(query, logger: logger)
        }
    }

    /// The upsert of a run of row images (`$1`, a JSON array) into the target; for a shared
    /// target, `$2` is the tenant id.
    func upsertSQL(_ table: MovePlan.Table) -> String {
        let filter = target.filter
        let name = target.name(table)
        let key = target.primaryKey(table)
        let columns = (filter.map { [$0.quotedColumn] } ?? []) + table.writableColumns.map(MovePlan.quote)
        let updates = table.writableColumns.filter { !key.contains($0) }
            .map { "\(MovePlan.quote($0)) = EXCLUDED.\(MovePlan.quote($0))" }
        let conflict: String
        if let filter {
            // Only a row of the same tenant may be updated; a key held by another tenant's row
            // writes nothing, and RETURNING tells (see run(_:on:)). With no other column to
            // update, setting the discriminator to itself makes the same-tenant case return a row.
            let discriminator = filter.quotedColumn
            let set = updates.isEmpty ? ["\(discriminator) = EXCLUDED.\(discriminator)"] : updates
            conflict = "DO UPDATE SET \(set.joined(separator: ", ")) WHERE \(name).\(discriminator) = EXCLUDED.\(discriminator) RETURNING 1"
        } else {
            conflict = updates.isEmpty ? "DO NOTHING" : "DO UPDATE SET \(updates.joined(separator: ", "))"
        }
        // Most columns come from jsonb_populate_record; those captured as text are cast back.
        let textEncoded = table.textEncodedColumns
        let values = (filter.map { [$0.value(parameter: 2)] } ?? []) + table.writableColumns.map { column in
            textEncoded.contains(column)
                ? "CAST(r.image ->> \(CaptureSQL.literal(column)) AS \(table.type(of: column)))"
                : "p.\(MovePlan.quote(column))"
        }
        let overriding = target.hasIdentityAlways(table) ? " OVERRIDING SYSTEM VALUE" : ""
        return """
            INSERT INTO \(name) (\(columns.joined(separator: ", ")))\(overriding)
            SELECT \(values.joined(separator: ", ")) FROM jsonb_array_elements($1::jsonb) AS r(image),
                LATERAL jsonb_populate_record(NULL::\(name), r.image) AS p
            ON CONFLICT (\(table.list(key))) \(conflict)
            """
    }

    /// The error for an upsert into a shared target that would have overwritten another tenant's
    /// row: names the table, the key and both tenants.
    private func crossTenantError(
        _ table: MovePlan.Table, rows: [String], filter: MoveEndpoint.RowFilter, on connection: PostgresConnection
    ) async throws -> TenantryError {
        let tenant = filter.tenant
        let name = target.name(table)
        let discriminator = filter.quotedColumn
        let key = target.primaryKey(table)
        let match = key.filter { $0 != filter.column }
            .map { "t.\(MovePlan.quote($0)) = k.\(MovePlan.quote($0))" }.joined(separator: " AND ")
        var query = PostgresQuery(unsafeSQL: """
            SELECT t.\(discriminator)::text, (SELECT jsonb_object_agg(key, value) FROM jsonb_each(to_jsonb(k))
                                             WHERE key = ANY($3::text[]))::text
            FROM \(name) t JOIN jsonb_populate_recordset(NULL::\(name), $1::jsonb) k ON \(match.isEmpty ? "true" : match)
            WHERE t.\(discriminator) <> \(filter.value(parameter: 2)) LIMIT 1
            """)
        query.binds.append("[" + rows.joined(separator: ",") + "]")
        query.binds.append(tenant.rawValue)
        query.binds.append(key)
        var owner = "another tenant"
        var otherKey = "?"
        for try await (other, conflicting) in try await connection.query(query, logger: logger).decode((String, String?).self) {
            owner = "tenant \(other)"
            otherKey = conflicting ?? "?"
        }
        return TenantryError(
            code: .crossTenantChange,
            message: "tenant \(tenant)'s change to \(table.name) \(otherKey) would overwrite a row of \(owner) in the unified database: "
                + "refused (the same key exists for both tenants; see docs/reliability.md)",
            tenant: tenant.rawValue, table: table.name)
    }

    /// The delete of a run of keys (`$1`, a JSON array of the tenant keys the capture recorded) from
    /// the target; for a shared target, only the tenant's rows (`$2`, the tenant id).
    func deleteSQL(_ table: MovePlan.Table) -> String {
        let name = target.name(table)
        var match = table.primaryKey.map { "t.\(MovePlan.quote($0)) = k.\(MovePlan.quote($0))" }
        if let filter = target.filter { match.append(filter.condition(parameter: 2, alias: "t")) }
        return """
            DELETE FROM \(name) t USING jsonb_populate_recordset(NULL::\(name), $1::jsonb) k WHERE \(match.joined(separator: " AND "))
            """
    }

    /// A row's key as text, for de-duplicating a run (JSON values of the key columns, in order).
    static func key(of row: String, table: MovePlan.Table) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(row.utf8)) as? [String: Any] else { return row }
        return table.primaryKey.map { column in
            guard let value = object[column] else { return "∅" }
            return "\(value)"
        }.joined(separator: "\u{1F}")
    }
}
