/// A relational schema as read from PostgreSQL's catalogs: what `schema derive` works on.
///
/// Expressions and types are kept as PostgreSQL prints them (`format_type`, `pg_get_expr`), with
/// identifiers already quoted where needed, so the derived DDL reproduces them exactly.
public struct SchemaModel: Sendable, Equatable, Codable {
    /// Enum types, in creation order.
    public var enums: [EnumType] = []
    /// Domains.
    public var domains: [Domain] = []
    /// Sequences used by column defaults (`serial`), with the column that owns them, if any.
    public var sequences: [Sequence] = []
    /// Tables.
    public var tables: [Table] = []

    /// Creates an empty model.
    public init() {}

    /// A table by name.
    public func table(_ name: String) -> Table? { tables.first { $0.name == name } }

    /// `CREATE TYPE … AS ENUM`.
    public struct EnumType: Sendable, Equatable, Codable {
        /// The type name.
        public var name: String
        /// Labels in order.
        public var labels: [String]
        /// Creates one.
        public init(name: String, labels: [String]) { self.name = name; self.labels = labels }
    }

    /// A sequence used by a `nextval` default.
    public struct Sequence: Sendable, Equatable, Codable {
        /// The sequence name (unquoted).
        public var name: String
        /// The owning table, if `OWNED BY`.
        public var ownerTable: String?
        /// The owning column.
        public var ownerColumn: String?
        /// Creates one.
        public init(name: String, ownerTable: String?, ownerColumn: String?) {
            self.name = name; self.ownerTable = ownerTable; self.ownerColumn = ownerColumn
        }
    }

    /// `CREATE DOMAIN`.
    public struct Domain: Sendable, Equatable, Codable {
        /// The domain name.
        public var name: String
        /// `format_type` of the base type.
        public var baseType: String
        /// Whether NOT NULL.
        public var notNull: Bool
        /// The default expression, if any.
        public var defaultExpression: String?
        /// `CHECK (…)` definitions.
        public var checks: [String]
        /// Creates one.
        public init(name: String, baseType: String, notNull: Bool, defaultExpression: String?, checks: [String]) {
            self.name = name; self.baseType = baseType; self.notNull = notNull
            self.defaultExpression = defaultExpression; self.checks = checks
        }
    }

    /// A table.
    public struct Table: Sendable, Equatable, Codable {
        /// The table name (unquoted).
        public var name: String
        /// Columns in order.
        public var columns: [Column]
        /// Constraints (primary key, unique, foreign key, check, exclusion).
        public var constraints: [Constraint]
        /// Indexes not backing a constraint.
        public var indexes: [Index]
        /// Creates one.
        public init(name: String, columns: [Column], constraints: [Constraint] = [], indexes: [Index] = []) {
            self.name = name; self.columns = columns; self.constraints = constraints; self.indexes = indexes
        }

        /// The primary key, if any.
        public var primaryKey: Constraint? { constraints.first { $0.kind == .primaryKey } }
        /// Whether the table has the column.
        public func hasColumn(_ name: String) -> Bool { columns.contains { $0.name == name } }
    }

    /// A column.
    public struct Column: Sendable, Equatable, Codable {
        /// How a column gets values of its own.
        public enum Generation: String, Sendable, Codable {
            case none, identityAlways, identityByDefault, stored
        }
        /// Name (unquoted).
        public var name: String
        /// `format_type(atttypid, atttypmod)`.
        public var type: String
        /// NOT NULL.
        public var notNull: Bool
        /// Default expression (for `stored`: the generation expression).
        public var defaultExpression: String?
        /// Identity or generated.
        public var generation: Generation
        /// A non-default collation, quoted.
        public var collation: String?
        /// Creates one.
        public init(name: String, type: String, notNull: Bool = false, defaultExpression: String? = nil,
                    generation: Generation = .none, collation: String? = nil) {
            self.name = name; self.type = type; self.notNull = notNull; self.defaultExpression = defaultExpression
            self.generation = generation; self.collation = collation
        }
    }

    /// A table constraint.
    public struct Constraint: Sendable, Equatable, Codable {
        /// The kind of constraint.
        public enum Kind: String, Sendable, Codable { case primaryKey, unique, foreignKey, check, exclusion }
        /// Name (unquoted).
        public var name: String
        /// Kind.
        public var kind: Kind
        /// Constrained columns (unquoted), in order. For checks: the columns referenced.
        public var columns: [String]
        /// For foreign keys: the referenced table.
        public var referencedTable: String?
        /// For foreign keys: the referenced columns, in order.
        public var referencedColumns: [String]
        /// For foreign keys: `NO ACTION`, `CASCADE`, …
        public var onDelete: String
        /// For foreign keys.
        public var onUpdate: String
        /// For foreign keys: `MATCH FULL` or empty.
        public var match: String
        /// For checks and exclusions: the full definition from `pg_get_constraintdef`.
        public var definition: String
        /// For unique and primary keys: `NULLS NOT DISTINCT`.
        public var nullsNotDistinct: Bool
        /// Creates one.
        public init(name: String, kind: Kind, columns: [String], referencedTable: String? = nil, referencedColumns: [String] = [],
                    onDelete: String = "NO ACTION", onUpdate: String = "NO ACTION", match: String = "",
                    definition: String = "", nullsNotDistinct: Bool = false) {
            self.name = name; self.kind = kind; self.columns = columns; self.referencedTable = referencedTable
            self.referencedColumns = referencedColumns; self.onDelete = onDelete; self.onUpdate = onUpdate
            self.match = match; self.definition = definition; self.nullsNotDistinct = nullsNotDistinct
        }
    }

    /// An index that does not back a constraint.
    public struct Index: Sendable, Equatable, Codable {
        /// One key or included column.
        public struct Element: Sendable, Equatable, Codable {
            /// A plain column's name (unquoted), or `nil` for an expression.
            public var column: String?
            /// The column (quoted) or expression text, as `pg_get_indexdef` prints it.
            public var definition: String
            /// Operator class and ordering suffix (`text_pattern_ops DESC NULLS LAST`), may be empty.
            public var options: String
            /// Creates one.
            public init(column: String?, definition: String, options: String = "") {
                self.column = column; self.definition = definition; self.options = options
            }
        }
        /// Name (unquoted).
        public var name: String
        /// UNIQUE.
        public var unique: Bool
        /// Access method (`btree`, `gin`, …).
        public var method: String
        /// Key elements.
        public var keys: [Element]
        /// INCLUDE columns.
        public var included: [Element]
        /// The partial-index predicate, if any.
        public var predicate: String?
        /// NULLS NOT DISTINCT.
        public var nullsNotDistinct: Bool
        /// Creates one.
        public init(name: String, unique: Bool = false, method: String = "btree", keys: [Element], included: [Element] = [],
                    predicate: String? = nil, nullsNotDistinct: Bool = false) {
            self.name = name; self.unique = unique; self.method = method; self.keys = keys; self.included = included
            self.predicate = predicate; self.nullsNotDistinct = nullsNotDistinct
        }
    }
}
