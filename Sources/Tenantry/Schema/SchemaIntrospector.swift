import Logging
import PostgresNIO
import TenantryCore

/// Reads a schema's tables, columns, constraints, indexes, enums, domains and sequences from
/// PostgreSQL's catalogs into a ``SchemaModel``.
public struct SchemaIntrospector: Sendable {
    /// The schema to read. Default `public`.
    public var schema: String
    /// The logger for the catalog queries.
    public var logger: Logger

    /// Creates an introspector.
    public init(schema: String = "public", logger: Logger) {
        self.schema = schema
        self.logger = logger
    }

    /// Reads the schema over `connection`.
    public func read(_ connection: PostgresConnection) async throws -> SchemaModel {
        var model = SchemaModel()
        var tables: [Int64: SchemaModel.Table] = [:]
        var order: [Int64] = []
        for try await (oid, name) in try await connection.query("""
            SELECT c.oid::int8, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = \(schema) AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname
            """, logger: logger).decode((Int64, String).self) {
            tables[oid] = SchemaModel.Table(name: name, columns: [])
            order.append(oid)
        }
        try await readColumns(connection, into: &tables)
        try await readConstraints(connection, into: &tables)
        try await readIndexes(connection, into: &tables)
        model.tables = order.compactMap { tables[$0] }

        for try await (name, labels) in try await connection.query("""
            SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
            FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = \(schema) GROUP BY t.oid, t.typname ORDER BY t.oid
            """, logger: logger).decode((String, [String]).self) {
            model.enums.append(.init(name: name, labels: labels))
        }
        for try await (name, base, notNull, defaultValue, checks) in try await connection.query("""
            SELECT t.typname::text, format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault,
                   ARRAY(SELECT pg_get_constraintdef(c.oid, true) FROM pg_constraint c WHERE c.contypid = t.oid ORDER BY c.conname)
            FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE t.typtype = 'd' AND n.nspname = \(schema) ORDER BY t.oid
            """, logger: logger).decode((String, String, Bool, String?, [String]).self) {
            model.domains.append(.init(name: name, baseType: base, notNull: notNull, defaultExpression: defaultValue, checks: checks))
        }
        for try await (name, table, column) in try await connection.query("""
            SELECT s.relname::text, tc.relname::text, a.attname::text
            FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
            LEFT JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
                 AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
            LEFT JOIN pg_class tc ON tc.oid = d.refobjid
            LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE s.relkind = 'S' AND n.nspname = \(schema)
              AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.objid = s.oid AND i.deptype = 'i')
            ORDER BY s.relname
            """, logger: logger).decode((String, String?, String?).self) {
            model.sequences.append(.init(name: name, ownerTable: table, ownerColumn: column))
        }
        return model
    }

    private func readColumns(_ connection: PostgresConnection, into tables: inout [Int64: SchemaModel.Table]) async throws {
        for try await (oid, name, type, notNull, defaultValue, identity, generated, collation) in try await connection.query("""
            SELECT a.attrelid::int8, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid, true), a.attidentity::text, a.attgenerated::text,
                   CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                        THEN quote_ident(co.collname::text) END
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            LEFT JOIN pg_collation co ON co.oid = a.attcollation
            WHERE n.nspname = \(schema) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attrelid, a.attnum
            """, logger: logger).decode((Int64, String, String, Bool, String?, String, String, String?).self) {
            let generation: SchemaModel.Column.Generation = switch (identity, generated) {
            case ("a", _): .identityAlways
            case ("d", _): .identityByDefault
            case (_, "s"): .stored
            default: .none
            }
            tables[oid]?.columns.append(.init(
                name: name, type: type, notNull: notNull, defaultExpression: defaultValue,
                generation: generation, collation: collation))
        }
    }

    private func readConstraints(_ connection: PostgresConnection, into tables: inout [Int64: SchemaModel.Table]) async throws {
        for try await row in try await connection.query("""
            SELECT con.conrelid::int8, con.conname::text, con.contype::text,
                   ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, pos)
                         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.pos),
                   rc.relname::text,
                   ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, pos)
                         JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.pos),
                   con.confdeltype::text, con.confupdtype::text, con.confmatchtype::text,
                   pg_get_constraintdef(con.oid, true), coalesce(i.indnullsnotdistinct, false)
            FROM pg_constraint con
            JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_class rc ON rc.oid = con.confrelid
            LEFT JOIN pg_index i ON i.indexrelid = con.conindid AND con.contype IN ('p', 'u')
            WHERE n.nspname = \(schema) AND con.contype IN ('p', 'u', 'f', 'c', 'x')
            ORDER BY con.conrelid, CASE con.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 WHEN 'c' THEN 2 ELSE 3 END, con.conname
            """, logger: logger) {
            let (oid, name, type, columns, referenced, referencedColumns, onDelete, onUpdate, match, definition, nnd) = try row.decode(
                (Int64, String, String, [String], String?, [String], String, String, String, String, Bool).self)
            let kind: SchemaModel.Constraint.Kind = switch type {
            case "p": .primaryKey
            case "u": .unique
            case "f": .foreignKey
            case "x": .exclusion
            default: .check
            }
            tables[oid]?.constraints.append(.init(
                name: name, kind: kind, columns: columns, referencedTable: referenced, referencedColumns: referencedColumns,
                onDelete: Self.action(onDelete), onUpdate: Self.action(onUpdate), match: match == "f" ? "MATCH FULL" : "",
                definition: kind == .check || kind == .exclusion ? definition : "", nullsNotDistinct: nnd))
        }
    }

    private func readIndexes(_ connection: PostgresConnection, into tables: inout [Int64: SchemaModel.Table]) async throws {
        for try await row in try await connection.query("""
            SELECT i.indrelid::int8, ic.relname::text, i.indisunique, am.amname::text, i.indnkeyatts::int,
                   ARRAY(SELECT coalesce(a.attname::text, '') FROM generate_series(0, i.indnatts - 1) k(pos)
                         LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.pos] AND i.indkey[k.pos] <> 0
                         ORDER BY k.pos),
                   ARRAY(SELECT pg_get_indexdef(i.indexrelid, k.pos + 1, true) FROM generate_series(0, i.indnatts - 1) k(pos)
                         ORDER BY k.pos),
                   ARRAY(SELECT concat_ws(' ',
                            CASE WHEN k.pos < i.indnkeyatts AND NOT opc.opcdefault THEN quote_ident(opc.opcname::text) END,
                            CASE WHEN k.pos < i.indnkeyatts AND (i.indoption[k.pos] & 1) = 1 THEN 'DESC' END,
                            CASE WHEN k.pos >= i.indnkeyatts THEN NULL
                                 WHEN (i.indoption[k.pos] & 1) = 1 AND (i.indoption[k.pos] & 2) = 0 THEN 'NULLS LAST'
                                 WHEN (i.indoption[k.pos] & 1) = 0 AND (i.indoption[k.pos] & 2) = 2 THEN 'NULLS FIRST' END)
                         FROM generate_series(0, i.indnatts - 1) k(pos)
                         LEFT JOIN pg_opclass opc ON opc.oid = i.indclass[k.pos] ORDER BY k.pos),
                   pg_get_expr(i.indpred, i.indrelid, true), i.indnullsnotdistinct
            FROM pg_index i
            JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = ic.relam
            WHERE n.nspname = \(schema) AND c.relkind IN ('r', 'p')
              AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                              WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x'))
            ORDER BY i.indrelid, ic.relname
            """, logger: logger) {
            let (oid, name, unique, method, keyCount, columns, definitions, options, predicate, nnd) = try row.decode(
                (Int64, String, Bool, String, Int, [String], [String], [String], String?, Bool).self)
            var elements: [SchemaModel.Index.Element] = []
            for position in definitions.indices {
                let column = columns[position].isEmpty ? nil : columns[position]
                // Expressions are wrapped in parentheses, which CREATE INDEX accepts for any expression.
                let definition = column == nil ? "(\(definitions[position]))" : definitions[position]
                elements.append(.init(column: column, definition: definition, options: options[position]))
            }
            tables[oid]?.indexes.append(.init(
                name: name, unique: unique, method: method, keys: Array(elements.prefix(keyCount)),
                included: Array(elements.dropFirst(keyCount)), predicate: predicate, nullsNotDistinct: nnd))
        }
    }

    static func action(_ code: String) -> String {
        switch code {
        case "r": "RESTRICT"
        case "c": "CASCADE"
        case "n": "SET NULL"
        case "d": "SET DEFAULT"
        default: "NO ACTION"
        }
    }
}
