import Foundation
import Logging
import NIOCore
import PostgresNIO
import TenantryCore
import Tracing

/// Retires dedicated tenants' rows from the unified database (the seeds' LegacyRetirement), and
/// restores them from the archive.
///
/// Retire: every tenant is verified first (``Verifier``; refused if one differs), its reverse
/// stream is paused, then in one repeatable-read transaction of the unified database per tenant
/// its rows are archived table by table in COPY text format (pg_dump cannot select one tenant's
/// rows) and exactly those rows deleted, children first (per-table counts compared, rolled back on
/// any mismatch), set-based past the per-row triggers when allowed (``DeleteMethod``), then checked
/// from another session: no row outside the tenant references its rows; the manifest is written
/// last, atomically, before the commit. ``concurrency`` tenants at a time. The tenant goes to
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
    /// Runs between a tenant's archive and its delete, inside their transaction (tests: a write
    /// landing in that window).
    var beforeDelete: (@Sendable (TenantID) async throws -> Void)?
    /// Runs after a tenant's rows were restored (committed) and before its stream resumes and its
    /// phase changes (tests: a restore killed in that window).
    var afterRestoreLoad: (@Sendable (TenantID) async throws -> Void)?
    /// How the rows are deleted (default: set-based, falling back to row by row when not allowed).
    public var deleteMethod: DeleteMethod = .setBased
    /// Tenants verified, then retired, at a time (migrate-data copies 2 at a time); each tenant in its own transaction.
    public var concurrency = 2
    /// Receives each step's wall time in seconds, per tenant: `verify`, `archive`, `delete`, `check` (benchmarks).
    public var timing: (@Sendable (_ step: String, _ seconds: Double) -> Void)?

    /// Runs `body`, handing its wall time to ``timing`` as `step`.
    func timed<T>(_ step: String, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer { timing?(step, (ContinuousClock.now - start).totalSeconds) }
        return try await body()
    }

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

    func tenantURL(_ tenant: TenantID) async throws -> PostgresURL {
        try servers.adminURL(of: try await catalog.requireTenant(tenant))
    }

    /// Retires `tenants` (default: every dedicated tenant). `archiveDirectory`: where the archive
    /// goes (`nil`: no archive, `ARCHIVE_BEFORE_DELETE=false`).
    public func retire(_ tenants: [TenantID]? = nil, archiveDirectory: String?, dryRun: Bool) async throws -> Report {
        try await TenantryTracing.withSpan("move.retire", phase: "retire") { span in
            span?.attributes["tenantry.dry_run"] = dryRun
            if let tenants { span?.attributes[TenantryTracing.Key.tenant] = tenants.map(\.rawValue).joined(separator: ",") }
            let report = try await retireTenants(tenants, archiveDirectory: archiveDirectory, dryRun: dryRun)
            span?.attributes[TenantryTracing.Key.tenant] = report.tenants.map(\.rawValue).joined(separator: ",")
            span?.attributes[TenantryTracing.Key.tenantCount] = report.tenants.count
            return report
        }
    }

    private func retireTenants(_ tenants: [TenantID]?, archiveDirectory: String?, dryRun: Bool) async throws -> Report {
        let dedicated = try await catalog.tenants(inPhases: [.dedicated])
        var ids = tenants ?? dedicated
        guard !ids.isEmpty else {
            throw TenantryError(code: .conflict, message: "no dedicated tenant to retire (cut tenants over first)")
        }
        if let other = ids.first(where: { !dedicated.contains($0) }) {
            let phase = try await catalog.move(other)?.phase ?? .shared
            throw TenantryError(
                code: .conflict, message: "tenant \(other) is \(phase), not dedicated: only cut-over tenants can be retired",
                tenant: other.rawValue)
        }
        try await catalog.requireNoServerMove(ids, before: "retire-legacy")
        // An earlier run killed midway: finish it (its delete committed) or undo its pause (it did not).
        var finished: [TenantID] = []
        if !dryRun {
            // Installations whose capture predates the mark get its table now (idempotent).
            try await Database.withConnection(unifiedURL, logger: logger) { unified in
                try await Database.execute(script: CaptureSQL.retiredTable, on: unified, logger: logger)
            }
            let candidates = ids
            let interrupted = try await timed("prepare") {
                try await concurrentMap(candidates, concurrency: max(concurrency, 1)) { try await finishInterrupted($0) }
            }
            finished = zip(ids, interrupted).filter(\.1).map(\.0)
        }
        ids.removeAll { finished.contains($0) }
        guard !ids.isEmpty else { return Report(tenants: finished, dryRun: false, archive: nil, tables: []) }
        // A paused stream or a dead letter is a change not applied to unified: never retire past it.
        try await Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, logger: logger)
            .requireStreamsClear(ids, before: "retire-legacy")
        if verifyFirst {
            let verifier = Verifier(plan: plan, logger: logger)
            var differing: [String] = []
            let relay = relay
            let reports = try await timed("verify") {
                try await concurrentMap(ids, concurrency: max(concurrency, 1)) { id in
                    try await verifier.verify(
                        id, unifiedURL: unifiedURL, tenantURL: try await tenantURL(id),
                        settle: { _ = try await relay.catchUp([id], timeout: .seconds(60)) })
                }
            }
            for (id, report) in zip(ids, reports) {
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
        if dryRun {
            return try await Database.withConnection(unifiedURL, logger: logger) { unified in
                var rows: [TableRows] = []
                for id in ids {
                    for table in plan.tables {
                        rows.append(TableRows(tenant: id, table: table.name, rows: try await count(table, of: id, on: unified)))
                    }
                }
                return Report(tenants: ids, dryRun: true, archive: nil, tables: rows)
            }
        }
        var archive: String?
        if let archiveDirectory {
            let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
            var root = (archiveDirectory as NSString).appendingPathComponent("retire-\(stamp)")
            // Two runs in the same second get their own directories.
            var attempt = 1
            while FileManager.default.fileExists(atPath: root) {
                attempt += 1
                root = (archiveDirectory as NSString).appendingPathComponent("retire-\(stamp)-\(attempt)")
            }
            try ArchiveFiles.makeDirectory(root)
            archive = root
        }
        let deleted = try await retireEach(ids, archive: archive)
        return Report(tenants: finished + ids, dryRun: false, archive: archive, tables: deleted)
    }

    /// After a retire-legacy killed between pausing `id`'s reverse stream and setting its phase:
    /// the unified database's mark (written in the delete's transaction) tells whether the delete
    /// committed. Committed: the phase is set now and `true` returned. Not committed: the reverse
    /// stream resumes (the tenant's writes since flow to unified) and retirement starts afresh.
    private func finishInterrupted(_ id: TenantID) async throws -> Bool {
        let paused = try await Database.withConnection(try await tenantURL(id), logger: logger) { tenantDatabase in
            try await tenantDatabase.query(
                "SELECT coalesce(pause_kind, '') FROM tenantry.capture_state WHERE tenant_id = \(id.rawValue)", logger: logger)
                .decode(String.self).first(where: { _ in true }) == PauseKind.retirement.rawValue
        }
        guard paused else { return false }
        let deleted = try await Database.withConnection(unifiedURL, logger: logger) { unified in
            try await unified.query(
                "SELECT count(*)::int FROM tenantry.retired_tenants WHERE tenant_id = \(id.rawValue)", logger: logger)
                .decode(Int.self).first(where: { _ in true }) == 1
        }
        if deleted {
            try await catalog.setPhase(id, to: .retired)
            try? await catalog.audit(actor: actor, action: "retire-legacy", tenant: id, outcome: .ok, detail: ["resumed": "true"])
            return true
        }
        try await resumeReverseStream(id)
        logger.warning("retire-legacy: an interrupted run paused this tenant's reverse sync; resumed", metadata: [LogMetadataKey.tenant: "\(id)"])
        return false
    }

    private func count(_ table: MovePlan.Table, of id: TenantID, on connection: PostgresConnection) async throws -> Int {
        var query = PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(plan.unifiedName(table)) WHERE \(plan.tenantFilter(parameter: 1))")
        query.binds.append(id.rawValue)
        return try await connection.query(query, logger: logger).decode(Int.self).first(where: { _ in true }) ?? 0
    }

    /// Pauses the tenant's reverse stream under the relay's stream lock (taken in the tenant
    /// database, where the reverse stream lives): a batch in flight finishes first, and once this
    /// commits the relay applies nothing more of the tenant to unified. Reverse capture goes on
    /// recording; restore-legacy resumes the stream. Returns whether it was paused already.
    func pauseReverseStream(_ id: TenantID) async throws -> Bool {
        try await Database.withConnection(try await tenantURL(id), logger: logger) { tenantDatabase in
            try await Database.withTransaction(tenantDatabase, logger: logger) { tenantDatabase in
                try await tenantDatabase.query(
                    "SELECT pg_advisory_xact_lock(\(AdvisoryLock.relayNamespace), \(AdvisoryLock.tenant(id)))", logger: logger)
                let paused = try await tenantDatabase.query(
                    "SELECT sync_paused FROM tenantry.capture_state WHERE tenant_id = \(id.rawValue)", logger: logger)
                    .decode(Bool.self).first(where: { _ in true }) ?? false
                try await tenantDatabase.query("""
                    UPDATE tenantry.capture_state SET sync_paused = true, paused_reason = \(Self.pausedReason),
                        pause_kind = \(PauseKind.retirement.rawValue), updated_at = now() WHERE tenant_id = \(id.rawValue) AND NOT sync_paused
                    """, logger: logger)
                return paused
            }
        }
    }

    /// Undoes ``pauseReverseStream(_:)`` after a retirement that changed nothing.
    func resumeReverseStream(_ id: TenantID) async throws {
        try await Database.withConnection(try await tenantURL(id), logger: logger) { tenantDatabase in
            try await tenantDatabase.query("""
                UPDATE tenantry.capture_state SET sync_paused = false, paused_reason = NULL, pause_kind = NULL, updated_at = now()
                WHERE tenant_id = \(id.rawValue) AND pause_kind = \(PauseKind.retirement.rawValue)
                """, logger: logger)
        }
    }

    static let pausedReason = "retired from the unified database"

    /// In ONE repeatable-read transaction of the unified database: archives the tenant's rows
    /// (when `archive` is set; each file fsynced, the tenant's directory too), deletes them,
    /// children first, checks per table that it deleted exactly the rows it archived (or counted),
    /// checks integrity (``checkIntegrity(_:deleted:deletion:on:)``, on `checker`), lists this
    /// tenant's entries in the manifest (written atomically) and commits. Any mismatch or failure
    /// rolls the delete back and takes the tenant's entries out of the manifest again.
    func archiveAndDelete(
        _ id: TenantID, archive root: String?, book: ManifestBook, deletion: Deletion, on unified: PostgresConnection,
        checker: PostgresConnection
    ) async throws -> ([TableRows], [Manifest.Table]) {
        var entries: [Manifest.Table] = []
        var manifestWritten = false
        var createdDirectory = false
        let tenantDirectory = root.map { ($0 as NSString).appendingPathComponent(id.rawValue) }
        do {
            let tables = try await Database.withTransaction(unified, logger: logger) { unified in
                try await unified.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", logger: logger)
                // Tenantry's own write: past the moved-tenant guard, not captured.
                try await unified.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
                var archived: [String: Int] = [:]
                let archiveStart = ContinuousClock.now
                if let root, let tenantDirectory {
                    try ArchiveFiles.makeDirectory(tenantDirectory)
                    createdDirectory = true
                    for (index, table) in plan.tables.enumerated() {
                        let entry = try await archiveTable(table, index: index, of: id, root: root, on: unified)
                        archived[table.name] = entry.rows
                        entries.append(entry)
                    }
                    try ArchiveFiles.syncDirectory(tenantDirectory)
                } else {
                    for table in plan.tables { archived[table.name] = try await count(table, of: id, on: unified) }
                }
                timing?("archive", (ContinuousClock.now - archiveStart).totalSeconds)
                try await beforeDelete?(id)
                let deleteStart = ContinuousClock.now
                // Set-based: no trigger fires per deleted row (foreign-key checks and actions
                // included); checkIntegrity below stands in for them, once per foreign key.
                if deletion.setBased { try await unified.query("SET LOCAL session_replication_role = replica", logger: logger) }
                var tables: [TableRows] = []
                for table in plan.tables.reversed() {
                    var query = PostgresQuery(unsafeSQL: "WITH deleted AS (DELETE FROM \(plan.unifiedName(table)) "
                        + "WHERE \(plan.tenantFilter(parameter: 1)) RETURNING 1) SELECT count(*)::int FROM deleted")
                    query.binds.append(id.rawValue)
                    let count = try await unified.query(query, logger: logger).decode(Int.self).first(where: { _ in true }) ?? 0
                    guard count == archived[table.name] else {
                        throw TenantryError(
                            code: .conflict,
                            message: "retire-legacy rolled back for tenant \(id): \(table.name) had \(archived[table.name] ?? 0) row(s) "
                                + "archived but \(count) deleted; nothing of this tenant was deleted",
                            tenant: id.rawValue)
                    }
                    tables.append(TableRows(tenant: id, table: table.name, rows: count))
                }
                timing?("delete", (ContinuousClock.now - deleteStart).totalSeconds)
                try await timed("check") { try await checkIntegrity(id, deleted: tables, deletion: deletion, on: checker) }
                // The mark a re-run reads to know this delete committed (finishInterrupted); a row
                // of its own, so no concurrent update can fail this REPEATABLE READ transaction.
                let archiveName = root.map { ($0 as NSString).lastPathComponent }
                try await unified.query("""
                    INSERT INTO tenantry.retired_tenants (tenant_id, archive) VALUES (\(id.rawValue), \(archiveName))
                    ON CONFLICT (tenant_id) DO UPDATE SET retired_at = now(), archive = EXCLUDED.archive
                    """, logger: logger)
                if root != nil {
                    manifestWritten = true
                    try book.list(entries)
                }
                return tables
            }
            return (tables, entries)
        } catch {
            if let root {
                // The rows stay in unified: the manifest must not list them, nor the directory hold their files.
                if manifestWritten { book.unlist(id) }
                if createdDirectory, let tenantDirectory { try? FileManager.default.removeItem(atPath: tenantDirectory) }
            }
            throw Database.wrap(error, "retiring tenant \(id)", tenant: id.rawValue)
        }
    }

    /// Writes one table's rows of the tenant, in COPY text format, to a new 0600 file (fsynced).
    private func archiveTable(
        _ table: MovePlan.Table, index: Int, of id: TenantID, root: String, on unified: PostgresConnection
    ) async throws -> Manifest.Table {
        let columns = [plan.discriminator] + table.writableColumns
        let safeName = table.name.unicodeScalars
            .filter { $0.isASCII && $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" }
            .map(String.init).joined()
        let file = "\(id.rawValue)/\(String(format: "%03d", index))_\(safeName).copy"
        var writer = try ArchiveFiles.create((root as NSString).appendingPathComponent(file))
        var query = PostgresQuery(unsafeSQL: "SELECT \(columns.map { "\(MovePlan.quote($0))::text" }.joined(separator: ", ")) "
            + "FROM \(plan.unifiedName(table)) WHERE \(plan.tenantFilter(parameter: 1))")
        query.binds.append(id.rawValue)
        var encoder = CopyEncoder()
        var count = 0
        for try await row in try await unified.query(query, logger: logger) {
            encoder.append(row)
            count += 1
            if encoder.readableBytes >= 1 << 18 { try writer.write(encoder.take()) }
        }
        try writer.write(encoder.take())
        try writer.finish()
        return Manifest.Table(tenant: id.rawValue, table: table.name, columns: columns, file: file, rows: count)
    }

    static func encode(_ manifest: Manifest) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(manifest)
    }
}
