import Logging
import PostgresNIO
import TenantryCore

/// A foreign key of the unified database that references a tenant table, read from
/// `pg_constraint`: what retire-legacy's set-based delete must check, and what `tenantry doctor`
/// warns about when no index leads with its columns.
///
/// Without such an index every parent row deleted makes PostgreSQL's foreign-key trigger scan the
/// whole referencing table, over every tenant's rows: deleting one tenant row by row is then
/// quadratic (a shop's 3,000 repairs scanned 120,000 orders rows 3,000 times).
struct TenantForeignKey: Sendable, Equatable {
    /// The constraint's name.
    var name: String
    /// The referencing table's schema and name.
    var schema: String
    var table: String
    /// The referencing columns, in key order.
    var columns: [String]
    /// The referenced tenant table (in the plan's schema) and its columns, in key order.
    var referencedTable: String
    var referencedColumns: [String]
    /// Whether a valid, non-partial index of the referencing table leads with exactly ``columns``.
    var indexed: Bool
    /// Rows of the referencing and the referenced table (planner estimates; 0 when never analysed).
    var rows: Int
    var referencedRows: Int
    /// Tenants in the referenced table (the planner's distinct estimate of its tenant column; 0: unknown).
    var referencedTenants: Int

    /// Referenced rows per tenant (estimated; `fallbackTenants` when the statistics do not say).
    func referencedRowsPerTenant(fallbackTenants: Int) -> Int {
        referencedRows / max(referencedTenants > 0 ? referencedTenants : fallbackTenants, 1)
    }

    /// `schema.table`, quoted.
    var quotedTable: String { "\(MovePlan.quote(schema)).\(MovePlan.quote(table))" }

    /// `orders (repair_id) → repairs (id)`.
    var described: String {
        "\(table) (\(columns.joined(separator: ", "))) → \(referencedTable) (\(referencedColumns.joined(separator: ", ")))"
    }

    /// Whether the referencing table is one of the plan's tenant tables (its rows of the tenant
    /// being retired are deleted with the rest; only other rows must not reference the tenant's).
    func referencingIsTenantTable(_ plan: MovePlan) -> Bool {
        schema == plan.schema && plan.table(table) != nil
    }

    /// Every foreign key that references one of `plan`'s tenant tables (from any schema), ordered
    /// by referencing table and name. Partitions' inherited copies are left out (their parent's
    /// constraint covers them).
    static func load(_ plan: MovePlan, on connection: PostgresConnection, logger: Logger) async throws -> [TenantForeignKey] {
        let names = plan.tables.map(\.name)
        let rows = try await connection.query("""
            SELECT c.conname::text, cn.nspname::text, cl.relname::text,
                   ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
                   pl.relname::text,
                   ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                         JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i),
                   EXISTS (SELECT 1 FROM pg_index i
                           WHERE i.indrelid = c.conrelid AND i.indisvalid AND i.indpred IS NULL
                             AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)] @> c.conkey
                             AND c.conkey @> (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)]),
                   greatest(cl.reltuples, 0)::int8, greatest(pl.reltuples, 0)::int8,
                   coalesce((SELECT CASE WHEN s.n_distinct < 0 THEN -s.n_distinct * greatest(pl.reltuples, 0) ELSE s.n_distinct END
                             FROM pg_stats s WHERE s.schemaname = pn.nspname AND s.tablename = pl.relname
                               AND s.attname::text = \(plan.discriminator) LIMIT 1), 0)::int8
            FROM pg_constraint c
            JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
            JOIN pg_class pl ON pl.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace
            WHERE c.contype = 'f' AND c.conparentid = 0 AND pn.nspname::text = \(plan.schema) AND pl.relname::text = ANY(\(names))
            ORDER BY cn.nspname, cl.relname, c.conname
            """, logger: logger)
        var keys: [TenantForeignKey] = []
        for try await (name, schema, table, columns, referenced, referencedColumns, indexed, count, referencedCount, tenants)
            in rows.decode((String, String, String, [String], String, [String], Bool, Int64, Int64, Int64).self) {
            keys.append(TenantForeignKey(
                name: name, schema: schema, table: table, columns: columns, referencedTable: referenced,
                referencedColumns: referencedColumns, indexed: indexed, rows: Int(count), referencedRows: Int(referencedCount),
                referencedTenants: Int(tenants)))
        }
        return keys
    }

    /// One query over one referencing table (every key of `keys` starts from it): per key, the
    /// rows outside the tenants (`$1`: one tenant, or a batch's array; not a tenant's own rows of
    /// a tenant table) that reference a row of theirs in the referenced table — what would dangle
    /// once their rows are gone — as an `int[]` in `keys`' order. One scan of the table whatever
    /// the number of keys (each key a hashed subplan of the tenants' referenced keys). Must run on a connection that still sees
    /// the tenant's rows (another session than the delete's, after the delete's statements: a
    /// writer that referenced the rows meanwhile has then either committed, and is counted, or
    /// waits on the deleted rows' locks and fails its own check).
    static func outsideReferencesSQL(_ keys: [TenantForeignKey], plan: MovePlan, tenants: Retirement.TenantSet) -> String {
        guard let first = keys.first else { return "SELECT ARRAY[]::int[]" }
        // A batch of several tenants: a row of one of them that references another's row counts
        // too (it is not the referenced tenant's own row): exactly the rows the per-tenant checks
        // would count between them, in one scan.
        let crossTenant = tenants.ids.count > 1 && first.referencingIsTenantTable(plan)
        let discriminator = MovePlan.quote(plan.discriminator)
        let counts = keys.map { key in
            let columns = key.columns.map { "c.\(MovePlan.quote($0))" }
            let referenced = key.referencedColumns.map { "p.\(MovePlan.quote($0))" }.joined(separator: ", ")
            let tuple = columns.count == 1 ? columns[0] : "(\(columns.joined(separator: ", ")))"
            let parents = "FROM \(MovePlan.quote(plan.schema)).\(MovePlan.quote(key.referencedTable)) p WHERE \(tenants.filter("p."))"
            var condition = "\(tuple) IN (SELECT \(referenced) \(parents))"
            if crossTenant {
                let own = "(c.\(discriminator), \(columns.joined(separator: ", "))) IN (SELECT p.\(discriminator), \(referenced) \(parents))"
                condition += " AND (\(tenants.outside("c.")) OR NOT coalesce(\(own), false))"
            }
            return "count(*) FILTER (WHERE \(condition))::int"
        }
        var sql = "SELECT ARRAY[\(counts.joined(separator: ", "))] FROM \(first.quotedTable) c"
        if first.referencingIsTenantTable(plan) && !crossTenant {
            sql += " WHERE \(tenants.outside("c."))"
        }
        return sql
    }
}

extension TenantForeignKey {
    /// `tenantry doctor`'s check: each foreign key into a tenant table without an index leading
    /// with its columns, with what deleting one tenant's rows costs through it (a warning).
    static func doctorCheck(_ keys: [TenantForeignKey], tenants: Int) -> DoctorCheck {
        let unindexed = keys.filter { !$0.indexed }
        guard !unindexed.isEmpty else {
            return DoctorCheck(
                group: "application database", name: "unindexed foreign keys", status: .pass,
                detail: "every one of the \(keys.count) foreign key(s) into tenant tables has an index on its columns")
        }
        let items = unindexed.map { key in
            let parents = key.referencedRowsPerTenant(fallbackTenants: tenants)
            return "\(key.described) [\(key.name)]: each deleted \(key.referencedTable) row scans all ~\(key.rows) \(key.table) rows "
                + "(~\(parents) \(key.referencedTable) rows per tenant → ~\(parents * key.rows) row visits to delete one tenant row by row)"
        }
        return DoctorCheck(
            group: "application database", name: "unindexed foreign keys", status: .warn,
            detail: "\(unindexed.count) foreign key(s) into tenant tables have no index on their columns: \(items.joined(separator: "; ")). "
                + "retire-legacy deletes set-based past them when its role may set session_replication_role (superuser), "
                + "else row by row at this cost; the application's own deletes pay it too: "
                + "CREATE INDEX CONCURRENTLY ON <table> (<columns>) fixes both")
    }
}

extension MoveOperations {
    /// `tenantry doctor`'s foreign-key check over the unified database (see ``TenantForeignKey``):
    /// never throws; a check that cannot run fails with its reason.
    func foreignKeyCheck() async -> DoctorCheck {
        do {
            let tenants = try await catalog.tenants().count
            let keys = try await Database.withConnection(unifiedURL, logger: logger) { connection in
                try await TenantForeignKey.load(plan, on: connection, logger: logger)
            }
            return TenantForeignKey.doctorCheck(keys, tenants: tenants)
        } catch {
            return DoctorCheck(group: "application database", name: "unindexed foreign keys", passed: false, detail: Database.oneLine(error))
        }
    }
}
