import Foundation
import Logging
import NIOCore
import PostgresNIO
import TenantryCore
import Tracing

/// Copies one tenant's rows from the unified database into its tenant database (step 2 of a move):
/// from the route's source endpoint (filtered to the tenant) to its target (``MoveRoute``).
///
/// Capture is turned on first (waiting for older transactions), then one REPEATABLE READ snapshot
/// of the unified database is streamed table by table, parents first, with COPY into the tenant
/// database: all in one tenant-side transaction with constraints deferred, so a killed copy leaves
/// nothing behind and a re-run starts clean. The snapshot is recorded for the relay, which then
/// applies every captured change the snapshot did not see.
public struct Copier: Sendable {
    /// Where a copy is, for progress reports.
    public struct Progress: Sendable {
        /// The tenant.
        public var tenant: TenantID
        /// The table being copied.
        public var table: String
        /// Tables finished.
        public var tablesDone: Int
        /// Tables in all.
        public var tablesTotal: Int
        /// Rows copied for this tenant so far.
        public var rows: Int
    }

    /// What one tenant's copy did.
    public struct Report: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// Rows copied (0 when skipped).
        public var rows: Int
        /// Rows per table.
        public var tables: [String: Int]
        /// Wall time.
        public var seconds: Double
        /// `true` when the tenant was already copied (phase `syncing` or later).
        public var skipped: Bool
    }

    let catalog: Catalog
    let servers: ServerDirectory
    let unifiedURL: PostgresURL
    let plan: MovePlan
    let capture: Capture
    let actor: String
    let logger: Logger
    /// Whether the source is read with `COPY … TO STDOUT` (``CopyOutSession``) where it can be;
    /// `false` reads every table with SELECT (``CopyEncoder/lineExpression(_:)``).
    var readsWithCopyOut = true

    /// Creates a copier. `unifiedURL` must be able to read every tenant table; `capture` must
    /// point at the same database.
    public init(catalog: Catalog, servers: ServerDirectory, unifiedURL: PostgresURL, plan: MovePlan, capture: Capture,
                actor: String, logger: Logger) {
        self.catalog = catalog
        self.servers = servers
        self.unifiedURL = unifiedURL
        self.plan = plan
        self.capture = capture
        self.actor = actor
        self.logger = logger
    }

    /// Lists a batch of tenants about to be copied in the capture triggers, a window ahead of
    /// their copies (``Capture/listAhead(_:window:)``): call ``Capture/ListAhead/prepare(_:)``
    /// before each ``copy(_:progress:)``, which then turns capture on without re-creating triggers.
    public func listAhead(_ tenants: [TenantID], window: Int = 64) -> Capture.ListAhead {
        capture.listAhead(tenants, window: window)
    }

    /// Copies `tenant`. A tenant already in `syncing` or later is skipped.
    public func copy(_ tenant: TenantID, progress: @Sendable (Progress) -> Void = { _ in }) async throws -> Report {
        try await TenantryTracing.phase("copy", tenant: tenant) { span in
            let report = try await copyTenant(tenant, progress: progress)
            span?.attributes[TenantryTracing.Key.rows] = report.rows
            span?.attributes["tenantry.copy.skipped"] = report.skipped
            return report
        }
    }

    private func copyTenant(_ tenant: TenantID, progress: @Sendable (Progress) -> Void) async throws -> Report {
        // The record is read while the phase moves to copying (one statement, which writes
        // nothing unless the tenant has a database).
        async let recordRead = catalog.requireTenant(tenant)
        let begun = try await catalog.beginCopy(tenant)
        let record = try await recordRead
        guard let phase = begun, let database = record.databaseName else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) has no database (status \(record.status.rawValue)): run 'tenantry provision \(tenant)' first",
                tenant: tenant.rawValue)
        }
        if phase >= .syncing {
            return Report(tenant: tenant, rows: 0, tables: [:], seconds: 0, skipped: true)
        }
        let started = ContinuousClock.now
        do {
            let route = MoveRoute.toDedicated(
                tenant, unified: unifiedURL, tenantDatabase: try servers.adminURL(server: record.serverName, database: database),
                plan: plan)
            // Capture turns on (waiting for older transactions) on the copy's unified session while
            // the tenant database is prepared; the snapshot is taken only after it is on. The
            // snapshot is recorded for the relay on the same session, after COMMIT.
            let capture = self.capture
            let (snapshot, counts) = try await copyRows(
                route, beforeSnapshot: { try await capture.enable(tenant, on: $0) },
                afterCommit: { source, snapshot in
                    try await source.query("""
                        UPDATE tenantry.capture_state SET snapshot = \(snapshot)::pg_snapshot, updated_at = now()
                        WHERE tenant_id = \(tenant.rawValue)
                        """, logger: logger)
                },
                progress: progress)
            let rows = counts.values.reduce(0, +)
            let seconds = (ContinuousClock.now - started).totalSeconds
            // Snapshot, rows, phase syncing and the audit entry: one statement.
            try await catalog.finishCopy(
                tenant, snapshot: snapshot, rows: rows, actor: actor,
                detail: ["rows": "\(rows)", "seconds": String(format: "%.2f", seconds)])
            return Report(tenant: tenant, rows: rows, tables: counts, seconds: seconds, skipped: false)
        } catch {
            let message = Database.message(of: error)
            try? await catalog.setPhase(tenant, to: .copying, lastError: message)
            try? await catalog.audit(actor: actor, action: "migrate-data", tenant: tenant, outcome: .failed, detail: ["error": message])
            throw Database.wrap(error, "copying tenant \(tenant)", tenant: tenant.rawValue)
        }
    }

    /// Streams every table of the tenant from `route`'s source to its target in one snapshot;
    /// returns the snapshot and rows per table. The target must hold one tenant (COPY writes the
    /// tenant tables as they are; nothing adds a discriminator).
    /// With `consistentSource` (a tenant database copied to another server: the same schema, its
    /// rows already satisfy every constraint), the target skips per-row triggers and foreign-key
    /// checks (`session_replication_role = replica`), as `pg_restore` loads data before its constraints.
    ///
    /// `beforeSnapshot` (turning capture on) runs on the source session once both connections are
    /// open, while the target transaction is prepared, and the snapshot is taken only after it
    /// returned. `afterCommit` runs on the source session once
    /// both transactions committed (recording the snapshot without a connection of its own).
    func copyRows(
        _ route: MoveRoute, consistentSource: Bool = false,
        beforeSnapshot: @escaping @Sendable (PostgresConnection) async throws -> Void = { _ in },
        afterCommit: (PostgresConnection, String) async throws -> Void = { _, _ in },
        progress: @Sendable (Progress) -> Void
    ) async throws -> (String, [String: Int]) {
        let tenant = route.tenant
        guard !route.target.isShared, route.target.schema == nil else {
            throw TenantryError(
                code: .invalidArgument, message: "copying tenant \(tenant): the copy's target must be a database of its own",
                tenant: tenant.rawValue)
        }
        // The copy's COPY TO session logs in while the source and target connections do.
        let connecting = Task { try await Self.connect(route.source.url, route.target.url, logger: logger) }
        return try await withTaskCancellationHandler {
            try await withCopyOutSession(route) { reader in
                let (source, destination) = try await connecting.value
                return try await copyRows(
                    route, source: source, reader: reader, destination: destination, consistentSource: consistentSource,
                    beforeSnapshot: beforeSnapshot, afterCommit: afterCommit, progress: progress)
            }
        } onCancel: {
            connecting.cancel()
        }
    }

    /// Runs `body` with a COPY TO session to `route`'s source, or with nil when reading with COPY
    /// TO is off or the session cannot be had (logged: the copy then reads with SELECT). `body`
    /// runs exactly once.
    private func withCopyOutSession<Result: Sendable>(
        _ route: MoveRoute, _ body: (CopyOutSession?) async throws -> Result
    ) async throws -> Result {
        guard readsWithCopyOut else { return try await body(nil) }
        var entered = false
        do {
            return try await CopyOutSession.with(route.source.url) { session in
                entered = true
                return try await body(session)
            }
        } catch where !entered {
            logger.notice("copy: reading tenant \(route.tenant) with SELECT (no COPY TO session: \(error))")
            return try await body(nil)
        }
    }

    /// The copy on open connections (``copyRows(_:consistentSource:beforeSnapshot:afterCommit:progress:)``);
    /// closes `source` and `destination` whatever happens.
    private func copyRows(
        _ route: MoveRoute, source: PostgresConnection, reader: CopyOutSession?, destination: PostgresConnection,
        consistentSource: Bool, beforeSnapshot: @escaping @Sendable (PostgresConnection) async throws -> Void,
        afterCommit: (PostgresConnection, String) async throws -> Void, progress: @Sendable (Progress) -> Void
    ) async throws -> (String, [String: Int]) {
        let tenant = route.tenant
        let outcome: Swift.Result<(String, [String: Int]), any Error>
        do {
            // On the source session, while the target is prepared: the session is marked as a copy
            // snapshot (``markCopySnapshot``), then capture turns on; the snapshot is taken only
            // after both.
            async let captureOn: Void = {
                try await source.query(PostgresQuery(unsafeSQL: Self.markCopySnapshot), logger: logger)
                try await beforeSnapshot(source)
            }()
            try await destination.query("BEGIN", logger: logger)
            var snapshot = ""
            let counts: [String: Int]
            do {
                try await prepareTarget(route, destination, consistentSource: consistentSource)
                try await captureOn
                try await source.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
                do {
                    // The snapshot the relay starts after, and the same snapshot exported for the
                    // COPY TO session.
                    var exported = ""
                    (snapshot, exported) = try await source.query(
                        "SELECT pg_current_snapshot()::text, pg_export_snapshot()", logger: logger
                    ).decode((String, String).self).first(where: { _ in true }) ?? ("", "")
                    let (perTable, unifiedNext) = try await copyTables(
                        route, from: source, reader: reader, snapshot: exported, to: destination, progress: progress)
                    let total = perTable.values.reduce(0, +)
                    try await SequenceSync(plan: plan, logger: logger).advance(tenantDatabase: destination, unifiedNext: unifiedNext)
                    progress(Progress(tenant: tenant, table: "", tablesDone: plan.tables.count, tablesTotal: plan.tables.count, rows: total))
                    counts = perTable
                } catch {
                    _ = try? await source.query("ROLLBACK", logger: logger)
                    throw error
                }
            } catch {
                _ = try? await destination.query("ROLLBACK", logger: logger)
                throw error
            }
            // The source transaction only read (READ ONLY): it ends while the target commits.
            async let sourceEnded = source.query("COMMIT", logger: logger)
            do {
                try await destination.query("COMMIT", logger: logger)
            } catch {
                _ = try? await sourceEnded
                throw error
            }
            _ = try await sourceEnded
            try await afterCommit(source, snapshot)
            outcome = .success((snapshot, counts))
        } catch {
            outcome = .failure(error)
        }
        await Self.close(source, destination)
        return try outcome.get()
    }

    /// Prepares the target transaction in at most three round trips: constraints deferred, the
    /// relay's marker (and `session_replication_role` for a consistent source) set locally, and
    /// the tenant tables emptied when a killed copy left rows (TRUNCATE makes new files for every
    /// table and index, so it runs only when a table has rows).
    private func prepareTarget(_ route: MoveRoute, _ destination: PostgresConnection, consistentSource: Bool) async throws {
        try await destination.query("SET CONSTRAINTS ALL DEFERRED", logger: logger)
        var settings = ["pg_catalog.set_config('tenantry.applying', 'on', true) IS NOT NULL"]
        if consistentSource { settings.append("pg_catalog.set_config('session_replication_role', 'replica', true) IS NOT NULL") }
        let anyRows = plan.tables.map { "EXISTS (SELECT FROM \(route.target.name($0)))" }.joined(separator: " OR ")
        let rows = try await destination.query(
            PostgresQuery(unsafeSQL: "SELECT \(settings.joined(separator: " AND ")), \(anyRows.isEmpty ? "false" : anyRows)"),
            logger: logger)
        var hasRows = true
        for try await (_, any) in rows.decode((Bool, Bool).self) { hasRows = any }
        if hasRows, !plan.tables.isEmpty {
            try await destination.query(
                PostgresQuery(unsafeSQL: "TRUNCATE \(plan.tables.map(route.target.name).joined(separator: ", "))"), logger: logger)
        }
    }

    /// Marks a session as a copy snapshot (read only): capture-enable waits of other tenants need
    /// not wait for its transaction. Released when the session ends.
    static let markCopySnapshot = "SELECT pg_catalog.pg_advisory_lock_shared(\(AdvisoryLock.copySnapshotNamespace), 0)"

    /// Opens connections to `first` and `second` at once (both or neither).
    static func connect(
        _ first: PostgresURL, _ second: PostgresURL, logger: Logger
    ) async throws -> (PostgresConnection, PostgresConnection) {
        async let other = Database.connect(second, logger: logger)
        let one: PostgresConnection
        do {
            one = try await Database.connect(first, logger: logger)
        } catch {
            if let two = try? await other { try? await two.close() }
            throw error
        }
        do {
            return (one, try await other)
        } catch {
            try? await one.close()
            throw error
        }
    }

    /// Closes both connections at once.
    static func close(_ one: PostgresConnection, _ two: PostgresConnection) async {
        async let closed: Void? = try? one.close()
        try? await two.close()
        _ = await closed
    }
}
