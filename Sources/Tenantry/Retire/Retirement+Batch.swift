import Foundation
import Logging
import NIOCore
import PostgresNIO
import TenantryCore

extension Retirement {
    /// The rows of `ids` in a tenant table: `discriminator = CAST($1 AS type)` for one tenant (the
    /// id bound as text), `discriminator = ANY(CAST($1 AS type[]))` for several (bound as text[]).
    struct TenantSet: Sendable {
        var ids: [TenantID]
        var plan: MovePlan

        /// The filter on `alias` (`"p."`, or `""`).
        func filter(_ alias: String = "") -> String {
            ids.count == 1 ? alias + plan.tenantFilter(parameter: 1)
                : "\(alias)\(MovePlan.quote(plan.discriminator)) = ANY(CAST($1 AS \(plan.discriminatorType)[]))"
        }

        /// Rows outside the set (a NULL tenant is outside), on `alias`.
        func outside(_ alias: String) -> String {
            let column = alias + MovePlan.quote(plan.discriminator)
            return ids.count == 1 ? "\(column) IS DISTINCT FROM CAST($1 AS \(plan.discriminatorType))"
                : "(\(column) IS NULL OR \(column) <> ALL(CAST($1 AS \(plan.discriminatorType)[])))"
        }

        /// `$1`.
        func bind(_ query: inout PostgresQuery) {
            if ids.count == 1 { query.binds.append(ids[0].rawValue) } else { query.binds.append(ids.map(\.rawValue)) }
        }

        /// The `i`-th tenant of the set, typed (for several; `$1` for one).
        func element(_ index: Int) -> String {
            ids.count == 1 ? "CAST($1 AS \(plan.discriminatorType))" : "(CAST($1 AS \(plan.discriminatorType)[]))[\(index + 1)]"
        }
    }

    /// In ONE repeatable-read transaction of the unified database, for one tenant or a batch of
    /// them: archives their rows (when `archive` is set: per tenant and table one file, each
    /// fsynced, each tenant's directory too; one read per table for the whole batch), deletes them
    /// (``deleteRows(of:setBased:on:)``), checks per tenant and table that it deleted exactly the
    /// rows it archived (or counted), checks integrity (``checkIntegrity(_:deleted:deletion:on:)``,
    /// on `checker`), marks them retired, lists their entries in the manifest (written atomically)
    /// and commits. Any mismatch or failure rolls every tenant of the batch back and takes their
    /// entries out of the manifest and their files out of the archive again.
    func archiveAndDelete(
        _ ids: [TenantID], archive root: String?, book: ManifestBook, deletion: Deletion, on unified: PostgresConnection,
        checker: PostgresConnection
    ) async throws -> [TableRows] {
        let set = TenantSet(ids: ids, plan: plan)
        var entries: [Manifest.Table] = []
        var manifestWritten = false
        var createdDirectories: [String] = []
        do {
            let tables = try await Database.withTransaction(unified, logger: logger) { unified in
                try await unified.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", logger: logger)
                // Tenantry's own write: past the moved-tenant guard, not captured.
                try await unified.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
                var archived: [String: Int] = [:]  // "tenant table" → rows
                let archiveStart = ContinuousClock.now
                if let root {
                    for id in ids {
                        let directory = (root as NSString).appendingPathComponent(id.rawValue)
                        try ArchiveFiles.makeDirectory(directory)
                        createdDirectories.append(directory)
                    }
                    let positions = try await canonicalPositions(set, on: unified)
                    var written: [ArchiveFiles.Writer] = []
                    for (index, table) in plan.tables.enumerated() {
                        let (tableEntries, writers) = try await archiveTable(
                            table, index: index, of: set, positions: positions, root: root, on: unified)
                        written += writers
                        for entry in tableEntries {
                            archived["\(entry.tenant) \(table.name)"] = entry.rows
                            entries.append(entry)
                        }
                    }
                    // Every file and directory durable before the delete and the manifest.
                    try await ArchiveFiles.finishAll(written, directories: createdDirectories)
                } else {
                    for id in ids {
                        for table in plan.tables { archived["\(id.rawValue) \(table.name)"] = try await count(table, of: id, on: unified) }
                    }
                }
                timing?("archive", (ContinuousClock.now - archiveStart).totalSeconds)
                for id in ids { try await beforeDelete?(id) }
                let deleteStart = ContinuousClock.now
                // Set-based: no trigger fires per deleted row (foreign-key checks and actions
                // included); checkIntegrity below stands in for them, once per foreign key.
                if deletion.setBased { try await unified.query("SET LOCAL session_replication_role = replica", logger: logger) }
                let counts = try await deleteRows(of: set, setBased: deletion.setBased, on: unified)
                var tables: [TableRows] = []
                for (tenantIndex, id) in ids.enumerated() {
                    for (table, perTenant) in zip(plan.tables.reversed(), counts) {
                        let count = perTenant[tenantIndex]
                        let expected = archived["\(id.rawValue) \(table.name)"] ?? 0
                        guard count == expected else {
                            throw TenantryError(
                                code: .conflict,
                                message: "retire-legacy rolled back for tenant \(id): \(table.name) had \(expected) row(s) "
                                    + "archived but \(count) deleted; nothing of this tenant was deleted",
                                tenant: id.rawValue)
                        }
                        tables.append(TableRows(tenant: id, table: table.name, rows: count))
                    }
                }
                timing?("delete", (ContinuousClock.now - deleteStart).totalSeconds)
                try await timed("check") { try await checkIntegrity(set, deleted: tables, deletion: deletion, on: checker) }
                // The marks a re-run reads to know this delete committed (finishInterrupted); a row
                // per tenant, so no concurrent update can fail this REPEATABLE READ transaction.
                let archiveName = root.map { ($0 as NSString).lastPathComponent }
                try await unified.query("""
                    INSERT INTO tenantry.retired_tenants (tenant_id, archive) SELECT unnest(\(ids.map(\.rawValue))::text[]), \(archiveName)
                    ON CONFLICT (tenant_id) DO UPDATE SET retired_at = now(), archive = EXCLUDED.archive
                    """, logger: logger)
                if root != nil {
                    manifestWritten = true
                    try book.list(entries)
                }
                return tables
            }
            return tables
        } catch {
            // The rows stay in unified: the manifest must not list them, nor the directories hold their files.
            if manifestWritten { for id in ids { book.unlist(id) } }
            for directory in createdDirectories { try? FileManager.default.removeItem(atPath: directory) }
            if ids.count == 1 { throw Database.wrap(error, "retiring tenant \(ids[0])", tenant: ids[0].rawValue) }
            throw Database.wrap(error, "retiring tenants \(ids.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// For a batch: each tenant's key as the unified database prints it (`discriminator::text`),
    /// mapped to its position in the set — what routes an archived row to its tenant's file.
    private func canonicalPositions(_ set: TenantSet, on unified: PostgresConnection) async throws -> [String: Int] {
        guard set.ids.count > 1 else { return [:] }
        var query = PostgresQuery(unsafeSQL: "SELECT CAST($1 AS \(plan.discriminatorType)[])::text[]")
        set.bind(&query)
        let texts = try await unified.query(query, logger: logger).decode([String].self).first(where: { _ in true }) ?? []
        guard texts.count == set.ids.count, Set(texts).count == texts.count else {
            throw TenantryError(code: .database, message: "retire-legacy: the batch's tenant keys did not read back one by one")
        }
        return Dictionary(uniqueKeysWithValues: texts.enumerated().map { ($0.element, $0.offset) })
    }

    /// Writes one table's rows of each tenant of `set`, in COPY text format, to a new 0600 file per
    /// tenant: one read for the batch, each row routed by its tenant column (the first). Returns
    /// the entries and the files' writers, still to be fsynced (``ArchiveFiles/finishAll(_:directories:threads:)``).
    private func archiveTable(
        _ table: MovePlan.Table, index: Int, of set: TenantSet, positions: [String: Int], root: String, on unified: PostgresConnection
    ) async throws -> ([Manifest.Table], [ArchiveFiles.Writer]) {
        let columns = [plan.discriminator] + table.writableColumns
        let safeName = table.name.unicodeScalars
            .filter { $0.isASCII && $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" }
            .map(String.init).joined()
        let files = set.ids.map { "\($0.rawValue)/\(String(format: "%03d", index))_\(safeName).copy" }
        let writers = try files.map { try ArchiveFiles.create((root as NSString).appendingPathComponent($0)) }
        var encoders = set.ids.map { _ in CopyEncoder() }
        var counts = set.ids.map { _ in 0 }
        var query = PostgresQuery(unsafeSQL: "SELECT \(columns.map { "\(MovePlan.quote($0))::text" }.joined(separator: ", ")) "
            + "FROM \(plan.unifiedName(table)) WHERE \(set.filter())")
        set.bind(&query)
        for try await row in try await unified.query(query, logger: logger) {
            var position = 0
            if set.ids.count > 1 {
                let key = row.first(where: { _ in true })?.bytes.map { String(buffer: $0) }
                guard let key, let found = positions[key] else {
                    throw TenantryError(code: .database, message: "retire-legacy: a row of \(table.name) read for the batch belongs to none of it")
                }
                position = found
            }
            encoders[position].append(row)
            counts[position] += 1
            if encoders[position].readableBytes >= 1 << 18 { try writers[position].write(encoders[position].take()) }
        }
        for position in set.ids.indices { try writers[position].write(encoders[position].take()) }
        return (set.ids.indices.map {
            Manifest.Table(tenant: set.ids[$0].rawValue, table: table.name, columns: columns, file: files[$0], rows: counts[$0])
        }, writers)
    }
}
