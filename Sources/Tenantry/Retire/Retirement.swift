import Foundation
import Logging
import NIOCore
import PostgresNIO
import TenantryCore
import Tracing

/// Retires dedicated tenants' rows from the unified database (the seeds' LegacyRetirement), and
/// restores them from the archive.
///
/// Retire: every tenant is verified first (``Verifier/verifyByFingerprint(_:unified:unifiedURL:tenantURL:settle:)``;
/// refused if one differs), its reverse stream is paused, then in one repeatable-read transaction
/// of the unified database per batch of tenants (``batchSize``) their rows are archived table by
/// table in COPY text format (pg_dump cannot select one tenant's rows) and exactly those rows
/// deleted (per tenant and table counts compared, rolled back on any mismatch), set-based past the
/// per-row triggers when allowed (``DeleteMethod``), then checked from another session: no row
/// outside a tenant references its rows; the manifest is written last, atomically, before the
/// commit. A batch that fails is retried one tenant at a time. ``concurrency`` workers. The tenant goes to
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
    /// Tenants verified, then retired, at a time (migrate-data copies 2 at a time).
    public var concurrency = 2
    /// Tenants a worker retires in one transaction: one read per table for the archive, one delete
    /// statement and one integrity check (one scan of each referencing table) for all of them. A
    /// batch that fails is rolled back whole and retried one tenant at a time.
    public var batchSize = 8
    /// Receives each step's wall time in seconds (benchmarks): `prepare` and `verify` once for the
    /// run (every tenant), `pause`, `archive`, `delete`, `check`, `catalog` per tenant.
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
        if verifyFirst { try await verifyAll(ids) }
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

    func count(_ table: MovePlan.Table, of id: TenantID, on connection: PostgresConnection) async throws -> Int {
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

    static func encode(_ manifest: Manifest) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(manifest)
    }
}
