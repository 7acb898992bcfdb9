import Foundation
import Logging
import NIOCore
import PostgresNIO
import TenantryCore

/// Retires dedicated tenants' rows from the unified database (the seeds' LegacyRetirement), and
/// restores them from the archive.
///
/// Retire: every tenant is verified first (``Verifier``; refused if one differs), its rows are
/// archived table by table in COPY text format with a manifest (pg_dump cannot select one tenant's
/// rows), then deleted in one unified transaction per tenant, children first. The tenant goes to
/// `retired`: the relay stops applying its changes back, but reverse capture keeps recording them
/// in its tenant database, so ``restore(archive:)`` followed by the relay brings the unified rows
/// fully up to date again.
public struct Retirement: Sendable {
    /// Rows of one tenant in one table.
    public struct TableRows: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// The table.
        public var table: String
        /// Rows archived, deleted or restored.
        public var rows: Int
    }

    /// What a retirement (or restore) did.
    public struct Report: Sendable, Codable, Equatable {
        /// The tenants.
        public var tenants: [TenantID]
        /// Nothing was changed (`--dry-run`).
        public var dryRun: Bool
        /// The archive directory, when one was written or read.
        public var archive: String?
        /// Per tenant and table.
        public var tables: [TableRows]
    }

    struct Manifest: Codable {
        struct Table: Codable {
            var tenant: String
            var table: String
            var columns: [String]
            var file: String
            var rows: Int
        }
        var createdAt: Date
        var discriminator: String
        var tables: [Table]
    }

    let catalog: Catalog
    let servers: ServerDirectory
    let unifiedURL: PostgresURL
    let plan: MovePlan
    let relay: Relay
    let verifyFirst: Bool
    let actor: String
    let logger: Logger

    /// Creates a retirement handle (`verifyFirst`: `VERIFY_BEFORE_RETIREMENT`).
    public init(catalog: Catalog, servers: ServerDirectory, unifiedURL: PostgresURL, plan: MovePlan, relay: Relay,
                verifyFirst: Bool = true, actor: String, logger: Logger) {
        self.catalog = catalog
        self.servers = servers
        self.unifiedURL = unifiedURL
        self.plan = plan
        self.relay = relay
        self.verifyFirst = verifyFirst
        self.actor = actor
        self.logger = logger
    }

    private func tenantURL(_ tenant: TenantID) async throws -> PostgresURL {
        try servers.adminURL(of: try await catalog.requireTenant(tenant))
    }

    /// Retires `tenants` (default: every dedicated tenant). `archiveDirectory`: where the archive
    /// goes (`nil`: no archive, `ARCHIVE_BEFORE_DELETE=false`).
    public func retire(_ tenants: [TenantID]? = nil, archiveDirectory: String?, dryRun: Bool) async throws -> Report {
        let dedicated = try await catalog.tenants(inPhases: [.dedicated])
        let ids = tenants ?? dedicated
        guard !ids.isEmpty else {
            throw TenantryError(code: .conflict, message: "no dedicated tenant to retire (cut tenants over first)")
        }
        if let other = ids.first(where: { !dedicated.contains($0) }) {
            let phase = try await catalog.move(other)?.phase ?? .shared
            throw TenantryError(
                code: .conflict, message: "tenant \(other) is \(phase), not dedicated: only cut-over tenants can be retired",
                tenant: other.rawValue)
        }
        if verifyFirst {
            let verifier = Verifier(plan: plan, logger: logger)
            var differing: [String] = []
            for id in ids {
                let report = try await verifier.verify(
                    id, unifiedURL: unifiedURL, tenantURL: try await tenantURL(id),
                    settle: { _ = try await relay.catchUp([id], timeout: .seconds(60)) })
                if !report.equal {
                    let tables = report.tables.filter { $0.differenceCount > 0 }.map { "\($0.table): \($0.differenceCount) row(s)" }
                    differing.append("tenant \(id) (\(tables.joined(separator: ", ")))")
                }
            }
            guard differing.isEmpty else {
                throw TenantryError(
                    code: .conflict,
                    message: "retire-legacy refused: \(differing.joined(separator: "; ")) differ between unified and the tenant database; "
                        + "nothing was deleted (see tenantry verify-sync)")
            }
        }
        return try await Database.withConnection(unifiedURL, logger: logger) { unified in
            var rows: [TableRows] = []
            for id in ids {
                for table in plan.tables {
                    var query = PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(plan.unifiedName(table)) WHERE \(plan.tenantFilter(parameter: 1))")
                    query.binds.append(id.rawValue)
                    let count = try await unified.query(query, logger: logger).decode(Int.self).first(where: { _ in true }) ?? 0
                    rows.append(TableRows(tenant: id, table: table.name, rows: count))
                }
            }
            if dryRun { return Report(tenants: ids, dryRun: true, archive: nil, tables: rows) }
            var archive: String?
            if let archiveDirectory {
                archive = try await writeArchive(ids, to: archiveDirectory, on: unified)
            }
            var deleted: [TableRows] = []
            for id in ids {
                // Reverse sync stops first: under the relay's stream lock for this tenant (taken in
                // the tenant database, where the reverse stream lives), a batch in flight finishes,
                // the stream is paused, and only then are the unified rows deleted. A batch applied
                // between two deletes would otherwise re-insert rows (a new repair of a customer
                // about to go) and break the delete or leave orphans. Reverse capture goes on
                // recording; restore-legacy resumes the stream.
                try await Database.withConnection(try await tenantURL(id), logger: logger) { tenantDatabase in
                    try await Database.withTransaction(tenantDatabase, logger: logger) { tenantDatabase in
                        try await tenantDatabase.query(
                            "SELECT pg_advisory_xact_lock(\(AdvisoryLock.relayNamespace), \(AdvisoryLock.tenant(id)))", logger: logger)
                        try await tenantDatabase.query("""
                            UPDATE tenantry.capture_state SET sync_paused = true, paused_reason = 'retired from the unified database',
                                updated_at = now() WHERE tenant_id = \(id.rawValue)
                            """, logger: logger)
                        try await Database.withTransaction(unified, logger: logger) { unified in
                            // Tenantry's own write: past the moved-tenant guard, not captured.
                            try await unified.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
                            for table in plan.tables.reversed() {
                                var query = PostgresQuery(unsafeSQL: "DELETE FROM \(plan.unifiedName(table)) WHERE \(plan.tenantFilter(parameter: 1))")
                                query.binds.append(id.rawValue)
                                for try await _ in try await unified.query(query, logger: logger) {}
                                let count = rows.first { $0.tenant == id && $0.table == table.name }?.rows ?? 0
                                deleted.append(TableRows(tenant: id, table: table.name, rows: count))
                            }
                        }
                    }
                }
                try await catalog.setPhase(id, to: .retired)
                try? await catalog.audit(
                    actor: actor, action: "retire-legacy", tenant: id, outcome: .ok,
                    detail: ["rows": "\(deleted.filter { $0.tenant == id }.reduce(0) { $0 + $1.rows })", "archive": archive ?? "none"])
            }
            return Report(tenants: ids, dryRun: false, archive: archive, tables: deleted)
        }
    }

    private func writeArchive(_ ids: [TenantID], to directory: String, on unified: PostgresConnection) async throws -> String {
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let root = (directory as NSString).appendingPathComponent("retire-\(stamp)")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var manifest = Manifest(createdAt: Date(), discriminator: plan.discriminator, tables: [])
        // One snapshot for the whole archive.
        try await unified.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
        do {
            for id in ids {
                for (index, table) in plan.tables.enumerated() {
                    let columns = [plan.discriminator] + table.writableColumns
                    let file = "\(id.rawValue)/\(String(format: "%03d", index))_\(table.name.unicodeScalars.filter { $0.isASCII && $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" }.map(String.init).joined()).copy"
                    let path = (root as NSString).appendingPathComponent(file)
                    try FileManager.default.createDirectory(
                        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                    FileManager.default.createFile(atPath: path, contents: nil)
                    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
                    var query = PostgresQuery(unsafeSQL: "SELECT \(columns.map { "\(MovePlan.quote($0))::text" }.joined(separator: ", ")) "
                        + "FROM \(plan.unifiedName(table)) WHERE \(plan.tenantFilter(parameter: 1))")
                    query.binds.append(id.rawValue)
                    var encoder = CopyEncoder()
                    var count = 0
                    for try await row in try await unified.query(query, logger: logger) {
                        encoder.append(row)
                        count += 1
                        if encoder.readableBytes >= 1 << 18 { try handle.write(contentsOf: Array(buffer: encoder.take())) }
                    }
                    try handle.write(contentsOf: Array(buffer: encoder.take()))
                    try handle.close()
                    manifest.tables.append(.init(tenant: id.rawValue, table: table.name, columns: columns, file: file, rows: count))
                }
            }
            try await unified.query("COMMIT", logger: logger)
        } catch {
            _ = try? await unified.query("ROLLBACK", logger: logger)
            throw Database.wrap(error, "archiving to \(root)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try encoder.encode(manifest).write(to: URL(fileURLWithPath: (root as NSString).appendingPathComponent("manifest.json")))
        return root
    }

    /// Restores the rows of an archive written by ``retire(_:archiveDirectory:dryRun:)`` into the
    /// unified database and puts its tenants back to `dedicated`: the relay then applies what their
    /// tenant databases recorded since, so unified is current again.
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
        let ids = try Array(Set(manifest.tables.map(\.tenant))).map { try TenantID($0) }.sorted()
        var restored: [TableRows] = []
        try await Database.withConnection(unifiedURL, logger: logger) { unified in
            for id in ids {
                guard try await catalog.move(id)?.phase == .retired else {
                    throw TenantryError(
                        code: .conflict, message: "tenant \(id) is not retired: its rows are in the unified database already",
                        tenant: id.rawValue)
                }
                try await Database.withTransaction(unified, logger: logger) { unified in
                    try await unified.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
                    for entry in manifest.tables where entry.tenant == id.rawValue {
                        guard plan.table(entry.table) != nil else {
                            throw TenantryError(code: .conflict, message: "archive table \(entry.table) is not a tenant table of the unified schema")
                        }
                        let path = (root as NSString).appendingPathComponent(entry.file)
                        guard let handle = FileHandle(forReadingAtPath: path) else {
                            throw TenantryError(code: .invalidArgument, message: "archive file \(path) is missing")
                        }
                        defer { try? handle.close() }
                        try await unified.copyFrom(
                            table: Copier.escapeQuotes(entry.table), columns: entry.columns.map(Copier.escapeQuotes), logger: logger
                        ) { writer in
                            while let chunk = try handle.read(upToCount: 1 << 18), !chunk.isEmpty {
                                try await writer.write(ByteBuffer(bytes: chunk))
                            }
                        }
                        restored.append(TableRows(tenant: id, table: entry.table, rows: entry.rows))
                    }
                }
                try await catalog.setPhase(id, to: .dedicated)
                // Reverse sync resumes: what the tenant database recorded since retirement flows back.
                try await Capture(unifiedURL: try await tenantURL(id), discriminator: plan.discriminator, logger: logger)
                    .setSyncPaused(id, false)
                try? await catalog.audit(actor: actor, action: "restore-legacy", tenant: id, outcome: .ok, detail: ["archive": root])
            }
        }
        return Report(tenants: ids, dryRun: false, archive: root, tables: restored)
    }
}
