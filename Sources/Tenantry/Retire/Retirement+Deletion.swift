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

    /// After `id`'s deletes (`deleted`, per table), on `checker` — another session, which still
    /// sees the tenant's rows: every tenant table a foreign key starts from holds exactly the rows
    /// of the tenant that were deleted (none written past the moved guard since the snapshot), and
    /// no row outside the tenant references one of its rows. Either failing throws, naming the table
    /// or foreign key and a count; the caller's transaction then rolls back.
    func checkIntegrity(_ id: TenantID, deleted: [TableRows], deletion: Deletion, on checker: PostgresConnection) async throws {
        let referencing = Set(deletion.keys.filter { $0.referencingIsTenantTable(plan) }.map(\.table))
        let tables = plan.tables.filter { referencing.contains($0.name) }
        // One statement (one round trip): the tenant tables' counts, then one scan per referencing table.
        var groups: [[TenantForeignKey]] = []
        for key in deletion.keys {
            if let index = groups.firstIndex(where: { $0[0].schema == key.schema && $0[0].table == key.table }) {
                groups[index].append(key)
            } else {
                groups.append([key])
            }
        }
        let keys = groups.flatMap { $0 }
        let counts = tables.map { "SELECT count(*)::int FROM \(plan.unifiedName($0)) WHERE \(plan.tenantFilter(parameter: 1))" }
        let parts = ["ARRAY[\(counts.map { "(\($0))" }.joined(separator: ", "))]::int[]"]
            + groups.map { "(\(TenantForeignKey.outsideReferencesSQL($0, plan: plan)))" }
        guard !tables.isEmpty || !keys.isEmpty else { return }
        var query = PostgresQuery(unsafeSQL: "SELECT \(parts.joined(separator: " || "))")
        query.binds.append(id.rawValue)
        let found = try await checker.query(query, logger: logger).decode([Int].self).first(where: { _ in true }) ?? []
        guard found.count == tables.count + keys.count else {
            throw TenantryError(code: .database, message: "retire-legacy: the integrity check returned \(found.count) counts, not \(tables.count + keys.count)")
        }
        for (index, table) in tables.enumerated() {
            let present = found[index]
            let removed = deleted.first { $0.table == table.name }?.rows ?? 0
            guard present == removed else {
                throw TenantryError(
                    code: .conflict,
                    message: "retire-legacy rolled back for tenant \(id): \(table.name) holds \(present) row(s) of it but \(removed) were "
                        + "deleted (written during the retirement); nothing of this tenant was deleted",
                    tenant: id.rawValue)
            }
        }
        for (key, count) in zip(keys, found.dropFirst(tables.count)) where count > 0 {
            throw TenantryError(
                code: .conflict,
                message: "retire-legacy refused for tenant \(id): \(count) row(s) of \(key.table) outside the tenant reference its "
                    + "\(key.referencedTable) rows through \(key.name) (\(key.described)); deleting would leave them dangling "
                    + "or change them; nothing of this tenant was deleted",
                tenant: id.rawValue)
        }
    }
}
