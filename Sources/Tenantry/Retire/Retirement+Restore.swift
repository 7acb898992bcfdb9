import Foundation
import Logging
import NIOCore
import PostgresNIO
import TenantryCore

extension Retirement {
    /// Restores the rows of an archive written by ``retire(_:archiveDirectory:dryRun:)`` into the
    /// unified database and puts its tenants back to `dedicated`: the relay then applies what their
    /// tenant databases recorded since, so unified is current again.
    ///
    /// The whole manifest is checked before anything changes: every file name must stay inside
    /// the archive directory (no absolute name, no `..`, no symbolic link out), every table must
    /// be a tenant table whose columns are exactly the archived ones, every tenant `retired`.
    /// Each tenant is restored in one transaction, rolled back unless it loaded the manifest's
    /// row count.
    public func restore(archive root: String) async throws -> Report {
        let manifestPath = (root as NSString).appendingPathComponent("manifest.json")
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            throw TenantryError(code: .invalidArgument, message: "\(root) is not a retire-legacy archive (no manifest.json)")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let manifest: Manifest
        do {
            manifest = try decoder.decode(Manifest.self, from: data)
        } catch {
            throw TenantryError(code: .invalidArgument, message: "\(manifestPath) is not a valid archive manifest")
        }
        let entries = try validate(manifest, root: root)
        let ids = try Array(Set(manifest.tables.map(\.tenant))).map { try TenantID($0) }.sorted()
        try await catalog.requireNoServerMove(ids, before: "restore-legacy")
        for id in ids {
            guard try await catalog.move(id)?.phase == .retired else {
                throw TenantryError(
                    code: .conflict, message: "tenant \(id) is not retired: its rows are in the unified database already; nothing was restored",
                    tenant: id.rawValue)
            }
        }
        // Only the archive of a tenant's latest retirement: an older one lacks what was applied to
        // unified between the two retirements.
        let name = ((root as NSString).standardizingPath as NSString).lastPathComponent
        try await Database.withConnection(unifiedURL, logger: logger) { unified in
            try await Database.execute(script: CaptureSQL.retiredTable, on: unified, logger: logger)
            for id in ids {
                let rows = try await unified.query(
                    "SELECT archive FROM tenantry.retired_tenants WHERE tenant_id = \(id.rawValue)", logger: logger)
                for try await latest in rows.decode(String?.self) where latest != name {
                    throw TenantryError(
                        code: .conflict,
                        message: "tenant \(id) was retired again after this archive was made: "
                            + (latest.map { "restore its latest archive, \($0)" } ?? "its latest retirement kept no archive")
                            + "; nothing was restored",
                        tenant: id.rawValue)
                }
            }
        }
        var restored: [TableRows] = []
        try await Database.withConnection(unifiedURL, logger: logger) { unified in
            for id in ids {
                // A restore killed after its load committed (the load's transaction removed the
                // tenant's retirement mark) left the phase `retired`: load nothing again, finish.
                let loaded = try await unified.query(
                    "SELECT NOT EXISTS (SELECT 1 FROM tenantry.retired_tenants WHERE tenant_id = \(id.rawValue))", logger: logger)
                    .decode(Bool.self).first(where: { _ in true }) ?? false
                if !loaded {
                try await Database.withTransaction(unified, logger: logger) { unified in
                    try await unified.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
                    for (entry, table, path) in entries where entry.tenant == id.rawValue {
                        guard let handle = FileHandle(forReadingAtPath: path) else {
                            throw TenantryError(code: .invalidArgument, message: "archive file \(path) is missing")
                        }
                        defer { try? handle.close() }
                        try await unified.copyFrom(
                            table: Copier.escapeQuotes(table.name), columns: entry.columns.map(Copier.escapeQuotes), logger: logger
                        ) { writer in
                            while let chunk = try handle.read(upToCount: 1 << 18), !chunk.isEmpty {
                                try await writer.write(ByteBuffer(bytes: chunk))
                            }
                        }
                        var query = PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(plan.unifiedName(table)) WHERE \(plan.tenantFilter(parameter: 1))")
                        query.binds.append(id.rawValue)
                        let count = try await unified.query(query, logger: logger).decode(Int.self).first(where: { _ in true }) ?? 0
                        guard count == entry.rows else {
                            throw TenantryError(
                                code: .conflict,
                                message: "restore-legacy rolled back for tenant \(id): \(table.name) has \(count) row(s) of the tenant "
                                    + "after loading \(entry.file), the manifest says \(entry.rows)",
                                tenant: id.rawValue, table: table.name)
                        }
                        restored.append(TableRows(tenant: id, table: table.name, rows: entry.rows))
                    }
                    try await unified.query(
                        "DELETE FROM tenantry.retired_tenants WHERE tenant_id = \(id.rawValue)", logger: logger)
                }
                }
                try await afterRestoreLoad?(id)
                // Reverse sync resumes before the phase changes: what the tenant database recorded
                // since retirement flows back once the relay sees `dedicated`. (The other order
                // left a restore killed in between `dedicated` with its stream paused for good.)
                try await Capture(unifiedURL: try await tenantURL(id), discriminator: plan.discriminator, logger: logger)
                    .setSyncPaused(id, false)
                try await catalog.setPhase(id, to: .dedicated)
                try? await catalog.audit(actor: actor, action: "restore-legacy", tenant: id, outcome: .ok, detail: ["archive": root])
            }
        }
        return Report(tenants: ids, dryRun: false, archive: root, tables: restored)
    }

    /// Every manifest entry with its table and file path, or one clear error for the first entry
    /// that names a file outside `root`, a table that is not a tenant table, or other columns.
    private func validate(_ manifest: Manifest, root: String) throws -> [(Manifest.Table, MovePlan.Table, String)] {
        func refuse(_ why: String) -> TenantryError {
            TenantryError(code: .invalidArgument, message: "restore-legacy refused: \(why); nothing was restored")
        }
        guard manifest.discriminator == plan.discriminator else {
            throw refuse("the archive's tenant column is \(manifest.discriminator), the unified database's \(plan.discriminator)")
        }
        let realRoot = URL(fileURLWithPath: root).standardizedFileURL.resolvingSymlinksInPath().path
        var result: [(Manifest.Table, MovePlan.Table, String)] = []
        for entry in manifest.tables {
            let components = entry.file.split(separator: "/", omittingEmptySubsequences: false)
            guard !entry.file.hasPrefix("/"), !entry.file.contains("\0"),
                  !components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
                throw refuse("archive file name \(entry.file) leaves the archive directory")
            }
            let path = (root as NSString).appendingPathComponent(entry.file)
            let realPath = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
            guard realPath.hasPrefix(realRoot + "/") else {
                throw refuse("archive file \(entry.file) leads out of the archive directory (symbolic link)")
            }
            _ = try TenantID(entry.tenant)
            guard let table = plan.table(entry.table) else {
                throw refuse("archive table \(entry.table) is not a tenant table of the unified schema")
            }
            let expected = [plan.discriminator] + table.writableColumns
            guard entry.columns.count == Set(entry.columns).count, Set(entry.columns) == Set(expected) else {
                throw refuse("archive table \(entry.table) has columns (\(entry.columns.joined(separator: ", "))), "
                    + "the unified table (\(expected.joined(separator: ", ")))")
            }
            result.append((entry, table, path))
        }
        return result
    }
}
