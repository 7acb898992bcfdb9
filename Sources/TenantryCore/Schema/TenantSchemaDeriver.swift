import Foundation

/// Derives the tenant database schema from the unified one: the tenant-scoped tables (those with
/// a NOT NULL discriminator column) minus the discriminator, with keys, uniques, foreign keys and indexes
/// that contained it rewritten, and everything else kept.
///
/// Rules (docs/schema.md):
/// - the discriminator column is dropped;
/// - primary keys, unique constraints and indexes lose the discriminator from their columns; one
///   left with no column, or one that duplicates another, is dropped;
/// - foreign keys between tenant tables lose the `(discriminator → discriminator)` pair and become
///   `DEFERRABLE INITIALLY IMMEDIATE`; foreign keys to global tables are dropped and listed;
/// - checks, predicates, expressions or generated columns that use the discriminator are dropped
///   and listed;
/// - a tenant table without a primary key is an error, unless it is excluded.
public struct TenantSchemaDeriver: Sendable {
    /// The tenant key column.
    public var discriminator: String
    /// Tenant tables to leave out of the tenant schema.
    public var excludedTables: Set<String>

    /// Creates a deriver.
    public init(discriminator: String = "shop_id", excludedTables: Set<String> = []) {
        self.discriminator = discriminator
        self.excludedTables = excludedTables
    }

    /// One change made while deriving, for the report.
    public struct Change: Sendable, Equatable, Codable, CustomStringConvertible {
        /// The table concerned.
        public var table: String
        /// What was changed (`dropped column`, `rewrote primary key`, …).
        public var action: String
        /// The details (`(shop_id, id) → (id)`).
        public var detail: String
        public var description: String { "\(table): \(action) \(detail)" }
    }

    /// The result of a derivation.
    public struct Result: Sendable, Equatable {
        /// The tenant schema.
        public var schema: SchemaModel
        /// Every change, in table order.
        public var changes: [Change]
        /// Tenant tables derived (in DDL order).
        public var tenantTables: [String]
        /// Tables that stay only in the unified database.
        public var globalTables: [String]
        /// Foreign keys to global tables that were dropped (`table.constraint → global table`).
        public var droppedGlobalForeignKeys: [String]
    }

    /// Derives the tenant schema from `unified`.
    public func derive(from unified: SchemaModel) throws(TenantryError) -> Result {
        // A nullable discriminator marks rows that may belong to no tenant (e.g. `users.shop_id`
        // of superadmins): such a table stays global.
        let tenantNames = unified.tables.filter { table in
            table.columns.contains { $0.name == discriminator && $0.notNull }
        }.map(\.name)
        guard !tenantNames.isEmpty else {
            throw TenantryError(
                code: .invalidArgument,
                message: "no table has the discriminator column '\(discriminator)': nothing is tenant-scoped (set --discriminator)")
        }
        let tenantSet = Set(tenantNames).subtracting(excludedTables)
        var changes: [Change] = []
        var droppedGlobal: [String] = []
        for table in unified.tables where table.columns.contains(where: { $0.name == discriminator && !$0.notNull }) {
            changes.append(Change(
                table: table.name, action: "kept global", detail: "(its \(discriminator) is nullable: rows may belong to no tenant)"))
        }
        for name in tenantNames where excludedTables.contains(name) {
            changes.append(Change(table: name, action: "excluded", detail: "(--exclude): not in the tenant schema"))
        }
        let missingKey = unified.tables.filter { tenantSet.contains($0.name) && $0.primaryKey == nil }.map(\.name)
        if !missingKey.isEmpty {
            throw TenantryError(
                code: .invalidArgument,
                message: "tenant table\(missingKey.count > 1 ? "s" : "") \(missingKey.joined(separator: ", ")) "
                    + "\(missingKey.count > 1 ? "have" : "has") no primary key; Tenantry needs one to sync rows "
                    + "(add one, or leave the table out with --exclude \(missingKey.joined(separator: ",")))",
                table: missingKey[0])
        }

        var tables: [SchemaModel.Table] = []
        for table in unified.tables where tenantSet.contains(table.name) {
            tables.append(try deriveTable(table, changes: &changes))
        }
        // Foreign keys need the derived keys of the tables they reference.
        for index in tables.indices {
            var kept: [SchemaModel.Constraint] = []
            for constraint in tables[index].constraints {
                guard constraint.kind == .foreignKey else { kept.append(constraint); continue }
                if let fk = deriveForeignKey(
                    constraint, of: tables[index].name, tenantTables: tenantSet, derived: tables,
                    changes: &changes, droppedGlobal: &droppedGlobal) {
                    kept.append(fk)
                }
            }
            tables[index].constraints = kept
        }

        var schema = SchemaModel()
        let usedTypes = Set(tables.flatMap { $0.columns.map { Self.baseTypeName($0.type) } })
        schema.enums = unified.enums.filter { usedTypes.contains($0.name) }
        schema.domains = unified.domains.filter { usedTypes.contains($0.name) }
        schema.sequences = unified.sequences.filter { sequence in
            tables.contains { table in table.columns.contains { $0.defaultExpression?.contains(sequence.name) == true } }
        }
        schema.tables = tables
        return Result(
            schema: schema, changes: changes, tenantTables: tables.map(\.name),
            globalTables: unified.tables.map(\.name).filter { !tenantNames.contains($0) },
            droppedGlobalForeignKeys: droppedGlobal)
    }

    // MARK: - Tables

    private func deriveTable(_ table: SchemaModel.Table, changes: inout [Change]) throws(TenantryError) -> SchemaModel.Table {
        var result = table
        var droppedColumns: Set<String> = [discriminator]
        result.columns = []
        for var column in table.columns {
            if column.name == discriminator {
                changes.append(Change(table: table.name, action: "dropped column", detail: discriminator))
                continue
            }
            if let expression = column.defaultExpression, mentionsDiscriminator(expression) {
                if column.generation == .stored {
                    droppedColumns.insert(column.name)
                    changes.append(Change(
                        table: table.name, action: "dropped generated column",
                        detail: "\(column.name) (its expression uses \(discriminator))"))
                    continue
                }
                column.defaultExpression = nil
                changes.append(Change(table: table.name, action: "dropped default", detail: "of \(column.name) (uses \(discriminator))"))
            }
            result.columns.append(column)
        }

        result.constraints = []
        var keySets: [[String]] = []
        for constraint in table.constraints {
            switch constraint.kind {
            case .primaryKey, .unique:
                let columns = constraint.columns.filter { $0 != discriminator }
                let kindName = constraint.kind == .primaryKey ? "primary key" : "unique constraint"
                if columns.isEmpty {
                    if constraint.kind == .primaryKey {
                        throw TenantryError(
                            code: .invalidArgument,
                            message: "tenant table \(table.name)'s primary key is only \(discriminator): one row per tenant "
                                + "has no key left in a tenant database (give it another key, or --exclude \(table.name))",
                            table: table.name)
                    }
                    changes.append(Change(table: table.name, action: "dropped \(kindName)", detail: "\(constraint.name) (only \(discriminator))"))
                    continue
                }
                if columns.contains(where: droppedColumns.contains) {
                    changes.append(Change(table: table.name, action: "dropped \(kindName)", detail: "\(constraint.name) (uses a dropped column)"))
                    continue
                }
                if keySets.contains(columns) {
                    changes.append(Change(
                        table: table.name, action: "dropped \(kindName)",
                        detail: "\(constraint.name) (\(Self.list(constraint.columns)) → \(Self.list(columns)) duplicates another key)"))
                    continue
                }
                if columns != constraint.columns {
                    changes.append(Change(
                        table: table.name, action: "rewrote \(kindName)",
                        detail: "\(constraint.name) \(Self.list(constraint.columns)) → \(Self.list(columns))"))
                }
                keySets.append(columns)
                var rewritten = constraint
                rewritten.columns = columns
                result.constraints.append(rewritten)
            case .check, .exclusion:
                if constraint.columns.contains(where: droppedColumns.contains) || mentionsDiscriminator(constraint.definition) {
                    changes.append(Change(
                        table: table.name, action: "dropped \(constraint.kind == .check ? "check" : "exclusion constraint")",
                        detail: "\(constraint.name) (uses \(discriminator))"))
                    continue
                }
                result.constraints.append(constraint)
            case .foreignKey:
                result.constraints.append(constraint)
            }
        }

        result.indexes = []
        var indexSignatures: Set<String> = Set(keySets.map { "btree|" + $0.joined(separator: ",") })
        for index in table.indexes {
            guard let rewritten = deriveIndex(index, table: table.name, dropped: droppedColumns, changes: &changes) else { continue }
            let signature = "\(rewritten.method)|" + rewritten.keys.map { $0.column ?? $0.definition }.joined(separator: ",")
                + (rewritten.keys.contains { !$0.options.isEmpty } ? "|\(rewritten.keys.map(\.options))" : "")
                + "|\(rewritten.included.map(\.definition))|\(rewritten.predicate ?? "")"
            let plainSignature = "btree|" + rewritten.keys.map { $0.column ?? $0.definition }.joined(separator: ",")
            let duplicatesKey = rewritten.method == "btree" && rewritten.predicate == nil && rewritten.included.isEmpty
                && rewritten.keys.allSatisfy({ $0.options.isEmpty }) && indexSignatures.contains(plainSignature)
            if duplicatesKey || indexSignatures.contains(signature) {
                changes.append(Change(
                    table: table.name, action: "dropped index",
                    detail: "\(index.name) (after removing \(discriminator) it duplicates another index or key)"))
                continue
            }
            indexSignatures.insert(signature)
            result.indexes.append(rewritten)
        }
        return result
    }

    private func deriveIndex(
        _ index: SchemaModel.Index, table: String, dropped: Set<String>, changes: inout [Change]
    ) -> SchemaModel.Index? {
        let keys = index.keys.filter { $0.column != discriminator }
        let usesDropped = keys.contains { element in
            element.column.map(dropped.contains) ?? mentionsDiscriminator(element.definition)
        } || index.predicate.map(mentionsDiscriminator) == true
        if usesDropped {
            changes.append(Change(table: table, action: "dropped index", detail: "\(index.name) (its expression or predicate uses \(discriminator))"))
            return nil
        }
        if keys.isEmpty {
            changes.append(Change(table: table, action: "dropped index", detail: "\(index.name) (only \(discriminator))"))
            return nil
        }
        var result = index
        result.keys = keys
        result.included = index.included.filter { $0.column.map { !dropped.contains($0) } ?? !mentionsDiscriminator($0.definition) }
        if keys.count != index.keys.count || result.included.count != index.included.count {
            changes.append(Change(
                table: table, action: "rewrote index",
                detail: "\(index.name) \(Self.list(index.keys.map(\.definition))) → \(Self.list(keys.map(\.definition)))"))
        }
        return result
    }

    // MARK: - Foreign keys

    private func deriveForeignKey(
        _ constraint: SchemaModel.Constraint, of table: String, tenantTables: Set<String>, derived: [SchemaModel.Table],
        changes: inout [Change], droppedGlobal: inout [String]
    ) -> SchemaModel.Constraint? {
        guard let target = constraint.referencedTable, tenantTables.contains(target) else {
            let target = constraint.referencedTable ?? "?"
            changes.append(Change(
                table: table, action: "dropped foreign key", detail: "\(constraint.name) → \(target) (a global table)"))
            droppedGlobal.append("\(table).\(constraint.name) → \(target)")
            return nil
        }
        var local: [String] = []
        var remote: [String] = []
        for (from, to) in zip(constraint.columns, constraint.referencedColumns) {
            if from == discriminator && to == discriminator { continue }
            if from == discriminator || to == discriminator {
                changes.append(Change(
                    table: table, action: "dropped foreign key", detail: "\(constraint.name) (pairs \(from) with \(to))"))
                return nil
            }
            local.append(from)
            remote.append(to)
        }
        guard !local.isEmpty else {
            changes.append(Change(table: table, action: "dropped foreign key", detail: "\(constraint.name) (only \(discriminator))"))
            return nil
        }
        guard let referenced = derived.first(where: { $0.name == target }),
              referenced.constraints.contains(where: {
                  ($0.kind == .primaryKey || $0.kind == .unique) && Set($0.columns) == Set(remote) && $0.columns.count == remote.count
              }) || referenced.indexes.contains(where: {
                  $0.unique && $0.predicate == nil && $0.keys.compactMap(\.column) == remote && $0.keys.count == remote.count
              }) else {
            changes.append(Change(
                table: table, action: "dropped foreign key",
                detail: "\(constraint.name) (\(target)\(Self.list(remote)) is not unique in the tenant schema)"))
            return nil
        }
        var result = constraint
        result.columns = local
        result.referencedColumns = remote
        if local.count != constraint.columns.count {
            changes.append(Change(
                table: table, action: "rewrote foreign key",
                detail: "\(constraint.name) \(Self.list(constraint.columns)) → \(target)\(Self.list(constraint.referencedColumns)) "
                    + "became \(Self.list(local)) → \(target)\(Self.list(remote)), deferrable"))
        }
        return result
    }

    // MARK: - Helpers

    /// Whether an expression mentions the discriminator as an identifier (quoted or not).
    func mentionsDiscriminator(_ expression: String) -> Bool {
        let text = Array(expression.utf8)
        let needle = Array(discriminator.utf8)
        guard text.count >= needle.count else { return false }
        func isIdentifierByte(_ byte: UInt8) -> Bool {
            (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x30 && byte <= 0x39) || byte == 0x5f || byte == 0x24
        }
        var index = 0
        while index + needle.count <= text.count {
            if Array(text[index..<(index + needle.count)]) == needle {
                let before = index == 0 ? nil : text[index - 1]
                let after = index + needle.count < text.count ? text[index + needle.count] : nil
                if !(before.map(isIdentifierByte) ?? false) && !(after.map(isIdentifierByte) ?? false) { return true }
            }
            index += 1
        }
        return false
    }

    static func list(_ columns: [String]) -> String { "(" + columns.joined(separator: ", ") + ")" }

    /// `repair_status[]` → `repair_status`; `"Mixed"` → `Mixed`; `public.t` → `t`.
    static func baseTypeName(_ type: String) -> String {
        var name = type
        while name.hasSuffix("[]") { name.removeLast(2) }
        if let dot = name.lastIndex(of: "."), !name.hasPrefix("\"") || name[name.index(before: dot)] == "\"" {
            name = String(name[name.index(after: dot)...])
        }
        if name.hasPrefix("\""), name.hasSuffix("\""), name.count >= 2 {
            name = String(name.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"")
        }
        return name
    }
}
