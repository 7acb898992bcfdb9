import Logging
import PostgresNIO
import TenantryCore

extension Retirement {
    /// How retire-legacy deletes a tenant's rows from the unified database.
    public enum DeleteMethod: String, Sendable, Codable, CaseIterable {
        /// One `DELETE … WHERE tenant = $1` per table with the per-row triggers skipped
        /// (`SET LOCAL session_replication_role = replica` inside the tenant's transaction), then
        /// one check per foreign key into a tenant table: nothing outside the tenant may reference
        /// its rows. Linear in the tenant's rows whatever indexes the foreign keys have. Falls back
        /// to ``rowTriggers`` when the role may not set `session_replication_role` (superuser, or
        /// `GRANT SET ON PARAMETER` on PostgreSQL 15+) or a tenant table has a DELETE trigger of
        /// the application's (it would be skipped too).
        case setBased = "set"
        /// The same statements with PostgreSQL's triggers firing per row: each deleted parent row
        /// scans every referencing table without an index on its columns (quadratic).
        case rowTriggers = "row"
    }

    /// What one run's deletes use, decided once before the first tenant.
    struct Deletion: Sendable {
        /// Whether the per-row triggers are skipped.
        var setBased: Bool
        /// Every foreign key into a tenant table (checked after each tenant's deletes, both ways).
        var keys: [TenantForeignKey]
    }

    /// Reads the foreign keys into tenant tables and decides the method: set-based when asked for,
    /// allowed, and no application DELETE trigger would be skipped by it.
    func prepareDeletion(on unified: PostgresConnection) async throws -> Deletion {
        let keys = try await TenantForeignKey.load(plan, on: unified, logger: logger)
        let unindexed = keys.filter { !$0.indexed }.map(\.described)
        var fallback: String?
        if deleteMethod == .setBased {
            var triggers: [String] = []
            let rows = try await unified.query("""
                SELECT c.relname::text || '.' || t.tgname::text FROM pg_trigger t
                JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE NOT t.tgisinternal AND t.tgenabled IN ('O', 'R') AND (t.tgtype & 8) <> 0
                  AND t.tgname NOT LIKE 'tenantry\\_%' AND n.nspname::text = \(plan.schema)
                  AND c.relname::text = ANY(\(plan.tables.map(\.name)))
                ORDER BY 1
                """, logger: logger)
            for try await trigger in rows.decode(String.self) { triggers.append(trigger) }
            if !triggers.isEmpty {
                fallback = "DELETE trigger(s) \(triggers.joined(separator: ", ")) would be skipped"
            } else {
                do {
                    try await Database.withTransaction(unified, logger: logger) { unified in
                        try await unified.query("SET LOCAL session_replication_role = replica", logger: logger)
                    }
                } catch {
                    fallback = "this role may not set session_replication_role (\(Database.oneLine(error)))"
                }
            }
        }
        if let fallback {
            let cost = unindexed.isEmpty ? "" : "; unindexed foreign keys make it quadratic: \(unindexed.joined(separator: ", ")) (see tenantry doctor)"
            logger.warning("retire-legacy: deleting row by row: \(fallback)\(cost)")
        }
        return Deletion(setBased: deleteMethod == .setBased && fallback == nil, keys: keys)
    }

    /// After the deletes of `set`'s tenants (`deleted`, per tenant and table), on `checker` —
    /// another session, which still sees their rows: every tenant table a foreign key starts from
    /// holds exactly the rows of the tenants that were deleted (none written past the moved guard
    /// since the snapshot), and no row outside the set references one of their rows. Either
    /// failing throws, naming the table or foreign key and a count; the caller's transaction then
    /// rolls back. One statement (one round trip) for the whole set: one scan per referencing table.
    func checkIntegrity(_ set: TenantSet, deleted: [TableRows], deletion: Deletion, on checker: PostgresConnection) async throws {
        let referencing = Set(deletion.keys.filter { $0.referencingIsTenantTable(plan) }.map(\.table))
        let tables = plan.tables.filter { referencing.contains($0.name) }
        var groups: [[TenantForeignKey]] = []
        for key in deletion.keys {
            if let index = groups.firstIndex(where: { $0[0].schema == key.schema && $0[0].table == key.table }) {
                groups[index].append(key)
            } else {
                groups.append([key])
            }
        }
        let keys = groups.flatMap { $0 }
        let counts = tables.map { "SELECT count(*)::int FROM \(plan.unifiedName($0)) WHERE \(set.filter())" }
        let parts = ["ARRAY[\(counts.map { "(\($0))" }.joined(separator: ", "))]::int[]"]
            + groups.map { "(\(TenantForeignKey.outsideReferencesSQL($0, plan: plan, tenants: set)))" }
        guard !tables.isEmpty || !keys.isEmpty else { return }
        var query = PostgresQuery(unsafeSQL: "SELECT \(parts.joined(separator: " || "))")
        set.bind(&query)
        let found = try await checker.query(query, logger: logger).decode([Int].self).first(where: { _ in true }) ?? []
        guard found.count == tables.count + keys.count else {
            throw TenantryError(code: .database, message: "retire-legacy: the integrity check returned \(found.count) counts, not \(tables.count + keys.count)")
        }
        let named = set.ids.count == 1 ? "tenant \(set.ids[0])" : "tenants \(set.ids.map(\.rawValue).joined(separator: ", "))"
        let of = set.ids.count == 1 ? "it" : "them"
        for (index, table) in tables.enumerated() {
            let present = found[index]
            let removed = deleted.filter { $0.table == table.name }.reduce(0) { $0 + $1.rows }
            guard present == removed else {
                throw TenantryError(
                    code: .conflict,
                    message: "retire-legacy rolled back for \(named): \(table.name) holds \(present) row(s) of \(of) but \(removed) were "
                        + "deleted (written during the retirement); nothing of \(set.ids.count == 1 ? "this tenant" : "these tenants") was deleted",
                    tenant: set.ids.count == 1 ? set.ids[0].rawValue : nil)
            }
        }
        for (key, count) in zip(keys, found.dropFirst(tables.count)) where count > 0 {
            throw TenantryError(
                code: .conflict,
                message: "retire-legacy refused for \(named): \(count) row(s) of \(key.table) outside the \(set.ids.count == 1 ? "tenant" : "tenants") reference "
                    + "\(set.ids.count == 1 ? "its" : "their") \(key.referencedTable) rows through \(key.name) (\(key.described)); deleting would leave them dangling "
                    + "or change them; nothing of \(set.ids.count == 1 ? "this tenant" : "these tenants") was deleted",
                tenant: set.ids.count == 1 ? set.ids[0].rawValue : nil)
        }
    }
}

extension Retirement {
    /// Deletes the rows of `set`'s tenants from every tenant table, children first, and returns
    /// the rows deleted per table (`plan.tables` reversed) and, within a table, per tenant in the
    /// set's order. Set-based (no trigger fires): ONE statement, a data-modifying CTE per table —
    /// all see the same snapshot and no foreign-key trigger runs between them, so their order does
    /// not matter; one round trip for the batch. Row by row: one statement per table, children
    /// first, so each foreign-key trigger finds the referencing rows of the set gone.
    func deleteRows(of set: TenantSet, setBased: Bool, on unified: PostgresConnection) async throws -> [[Int]] {
        let tables = Array(plan.tables.reversed())
        guard !tables.isEmpty else { return [] }
        let key = MovePlan.quote(plan.discriminator)
        func delete(_ table: MovePlan.Table) -> String {
            "DELETE FROM \(plan.unifiedName(table)) WHERE \(set.filter()) RETURNING \(key) AS k"
        }
        // Per tenant of the set, its rows among the deleted ones: an int[] in the set's order.
        func counts(_ deleted: String) -> String {
            "SELECT ARRAY[\(set.ids.indices.map { "count(*) FILTER (WHERE k = \(set.element($0)))::int" }.joined(separator: ", "))]::int[] "
                + "FROM \(deleted)"
        }
        func run(_ sql: String, tables: Int) async throws -> [[Int]] {
            var query = PostgresQuery(unsafeSQL: sql)
            set.bind(&query)
            let flat = try await unified.query(query, logger: logger).decode([Int].self).first(where: { _ in true }) ?? []
            guard flat.count == tables * set.ids.count else {
                throw TenantryError(code: .database, message: "retire-legacy: the delete returned \(flat.count) counts, not \(tables * set.ids.count)")
            }
            return stride(from: 0, to: flat.count, by: set.ids.count).map { Array(flat[$0..<($0 + set.ids.count)]) }
        }
        if setBased {
            let ctes = tables.enumerated().map { "d\($0.offset) AS (\(delete($0.element)))" }
            let selects = tables.indices.map { "(\(counts("d\($0)")))" }
            return try await run("WITH \(ctes.joined(separator: ", ")) SELECT \(selects.joined(separator: " || "))", tables: tables.count)
        }
        var counted: [[Int]] = []
        for table in tables {
            counted += try await run("WITH d AS (\(delete(table))) \(counts("d"))", tables: 1)
        }
        return counted
    }
}
