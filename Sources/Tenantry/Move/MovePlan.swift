import Logging
import PostgresNIO
import TenantryCore

/// What moving a tenant touches, read from the unified database: every tenant-scoped table with
/// the columns a tenant database keeps, its key, and the order parents come before children.
///
/// Built from introspection and the same ``TenantSchemaDeriver`` that wrote the tenant schema, so
/// copy, sync and verify agree with the tenant databases on every column.
public struct MovePlan: Sendable {
    /// One tenant-scoped table.
    public struct Table: Sendable, Equatable {
        /// The table's name (unquoted).
        public var name: String
        /// `"name"`, quoted.
        public var quoted: String
        /// Every column the tenant table has, in order (generated ones included: verify compares them).
        public var columns: [SchemaModel.Column]
        /// The columns copy and sync write: everything but stored generated columns.
        public var writableColumns: [String]
        /// The tenant table's primary key (the unified key minus the discriminator).
        public var primaryKey: [String]
        /// Whether a column is `GENERATED ALWAYS AS IDENTITY` (inserts then need OVERRIDING SYSTEM VALUE).
        public var hasIdentityAlways: Bool
        /// The unified table's primary key (usually the tenant key plus the discriminator).
        public var unifiedPrimaryKey: [String] = []
        /// Whether the unified table has a `GENERATED ALWAYS AS IDENTITY` column.
        public var unifiedHasIdentityAlways = false
        /// The discriminator's type in this unified table (`format_type`), when known; else the plan's.
        public var unifiedDiscriminatorType: String? = nil
        /// Whether the discriminator is NOT NULL in this unified table.
        public var unifiedDiscriminatorNotNull = false

        /// Columns whose values a JSON row image cannot carry exactly (floating point: JSON has no
        /// -0; json and jsonb: a JSON null would be read back as SQL NULL): capture stores their
        /// text, and applying casts it back.
        public var textEncodedColumns: Set<String> {
            Set(writableColumns.filter { column in
                let type = self.type(of: column)
                return type.hasPrefix("double precision") || type.hasPrefix("real") || type.hasPrefix("json")
            })
        }

        /// The PostgreSQL type of `column`.
        public func type(of column: String) -> String {
            columns.first { $0.name == column }?.type ?? "text"
        }
    }

    /// The schema of the tenant-scoped tables (`public` by default).
    public var schema: String
    /// The tenant key column.
    public var discriminator: String
    /// Its PostgreSQL type in the unified database (`integer`, `bigint`, `text`, …).
    public var discriminatorType: String
    /// Tenant tables, parents before children.
    public var tables: [Table]

    /// A table by name.
    public func table(_ name: String) -> Table? { tables.first { $0.name == name } }

    /// `schema.table` in the unified database, quoted.
    public func unifiedName(_ table: Table) -> String {
        "\(MovePlan.quote(schema)).\(table.quoted)"
    }

    /// `discriminator = CAST($n AS type)`: the filter for one tenant's rows that uses the index.
    public func tenantFilter(parameter: Int) -> String {
        "\(MovePlan.quote(discriminator)) = CAST($\(parameter) AS \(discriminatorType))"
    }

    /// Reads the plan from the unified database.
    public static func load(
        _ connection: PostgresConnection, schema: String = "public", discriminator: String, logger: Logger
    ) async throws -> MovePlan {
        let unified = try await SchemaIntrospector(schema: schema, logger: logger).read(connection)
        return try make(unified: unified, schema: schema, discriminator: discriminator)
    }

    /// Builds the plan from an introspected unified schema.
    public static func make(unified: SchemaModel, schema: String = "public", discriminator: String) throws -> MovePlan {
        let derived = try TenantSchemaDeriver(discriminator: discriminator).derive(from: unified)
        var tables: [Table] = []
        for table in derived.schema.tables {
            tables.append(Table(
                name: table.name, quoted: try SQLIdentifier.quoted(table.name), columns: table.columns,
                writableColumns: table.columns.filter { $0.generation != .stored }.map(\.name),
                primaryKey: table.primaryKey?.columns ?? [],
                hasIdentityAlways: table.columns.contains { $0.generation == .identityAlways },
                unifiedPrimaryKey: unified.table(table.name)?.primaryKey?.columns ?? [],
                unifiedHasIdentityAlways: unified.table(table.name)?.columns.contains { $0.generation == .identityAlways } ?? false,
                unifiedDiscriminatorType: unified.table(table.name)?.columns.first { $0.name == discriminator }?.type,
                unifiedDiscriminatorNotNull: unified.table(table.name)?.columns.first { $0.name == discriminator }?.notNull ?? false))
        }
        let discriminatorType = unified.tables.lazy
            .compactMap { $0.columns.first { $0.name == discriminator } }.first?.type ?? "text"
        return MovePlan(
            schema: schema, discriminator: discriminator, discriminatorType: discriminatorType,
            tables: parentsFirst(tables, schema: derived.schema))
    }

    /// Orders tables so that a table comes after the tables its foreign keys reference (cycles and
    /// self-references are left in name order; constraints are deferred while copying anyway).
    static func parentsFirst(_ tables: [Table], schema: SchemaModel) -> [Table] {
        var parents: [String: Set<String>] = [:]
        for table in schema.tables {
            parents[table.name] = Set(table.constraints.compactMap { $0.kind == .foreignKey ? $0.referencedTable : nil })
                .subtracting([table.name])
        }
        var ordered: [Table] = []
        var done: Set<String> = []
        var remaining = tables
        while !remaining.isEmpty {
            let ready = remaining.filter { (parents[$0.name] ?? []).isSubset(of: done) }
            let next = ready.isEmpty ? [remaining[0]] : ready
            for table in next {
                ordered.append(table)
                done.insert(table.name)
            }
            let names = Set(next.map(\.name))
            remaining.removeAll { names.contains($0.name) }
        }
        return ordered
    }
}

extension MovePlan {
    /// Quotes a name read from PostgreSQL's catalogs (never empty, never longer than 63 bytes).
    static func quote(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

extension MovePlan.Table {
    /// `"a", "b"`: the quoted column list of `names`.
    func list(_ names: [String]) -> String {
        names.map(MovePlan.quote).joined(separator: ", ")
    }
}
