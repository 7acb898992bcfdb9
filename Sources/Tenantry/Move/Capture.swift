import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// Change capture in the unified database: installing the triggers, turning capture on and off
/// per tenant, and reading each tenant's capture state.
///
/// Every call opens its own connection to `unifiedURL` (an admin login: installing triggers needs
/// the tables' owner).
public struct Capture: Sendable {
    /// The unified database, as a login that owns its tables.
    public var unifiedURL: PostgresURL
    /// The tenant key column.
    public var discriminator: String
    /// The schema of the tenant tables.
    public var schema: String
    /// How long ``enable(_:)`` waits for transactions older than the switch to end.
    public var enableTimeout: Duration
    /// The logger.
    public var logger: Logger
    /// How long re-listing a table's capture triggers (when a tenant gets capture state) waits for
    /// its lock before it lets the table's writers go and tries again: about the longest a writer
    /// waits behind it.
    public var relistLockTimeout: Duration = .milliseconds(50)

    /// Creates a capture handle.
    public init(unifiedURL: PostgresURL, discriminator: String = "shop_id", schema: String = "public",
                enableTimeout: Duration = .seconds(30), logger: Logger) {
        self.unifiedURL = unifiedURL
        self.discriminator = discriminator
        self.schema = schema
        self.enableTimeout = enableTimeout
        self.logger = logger
    }

    /// What ``install()`` did.
    public struct InstallReport: Sendable, Codable, Equatable {
        /// Tables that now have the capture trigger.
        public var tables: [String]
    }

    /// Installs (or refreshes) the capture tables, one function per tenant table and its triggers,
    /// which list the tenants that have capture state now (and so repair a list that misses one).
    /// Idempotent and safe to run concurrently (an advisory lock serialises it, and every change of
    /// the list). Run it again after a schema change.
    @discardableResult
    public func install() async throws -> InstallReport {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.captureInstall))", logger: logger)
                try await Catalog.requireTrustedSchemaOwner(on: connection, logger: logger)
                try await Database.execute(script: CaptureSQL.tables, on: connection, logger: logger)
                let plan = try await MovePlan.load(connection, schema: schema, discriminator: discriminator, logger: logger)
                let listing = CaptureSQL.Listing.of(try await Self.stateTenants(on: connection, logger: logger))
                for table in plan.tables {
                    do {
                        try await Database.execute(
                            script: try CaptureSQL.trigger(for: table, plan: plan, listing: listing), on: connection, logger: logger)
                    } catch {
                        throw Database.wrap(error, "installing capture on \(table.name)", table: table.name)
                    }
                }
                return InstallReport(tables: plan.tables.map(\.name))
            }
        }
    }

    /// Whether capture is installed in the unified database.
    public func isInstalled() async throws -> Bool {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            let rows = try await connection.query(
                "SELECT to_regclass('tenantry.changes') IS NOT NULL AND to_regclass('tenantry.capture_state') IS NOT NULL",
                logger: logger)
            return try await rows.decode(Bool.self).first(where: { _ in true }) ?? false
        }
    }

    /// Turns capture on for `tenant`, then waits until every transaction that began before that
    /// moment has ended. From then on, every write of the tenant is either visible to a snapshot
    /// taken now or captured in `tenantry.changes`: none can escape both.
    ///
    /// Throws ``TenantryError/Code/timeout`` naming the sessions still open after ``enableTimeout``
    /// (capture stays on: nothing is lost by retrying).
    public func enable(_ tenant: TenantID) async throws {
        try await Database.withConnection(unifiedURL, logger: logger) { try await enable(tenant, on: $0) }
    }

    /// ``enable(_:)`` on `connection`, a session of the unified database as an admin login outside a
    /// transaction (the copier's own unified session, before its snapshot).
    public func enable(_ tenant: TenantID, on connection: PostgresConnection) async throws {
        try await TenantryTracing.phase("capture", tenant: tenant) { _ in try await enableCapture(tenant, on: connection) }
    }

    private func enableCapture(_ tenant: TenantID, on connection: PostgresConnection) async throws {
        try await withListLock(connection) {
            // The triggers list the tenant (committed) before its state row exists: from the
            // row's commit on, every write of the tenant runs the capture function.
            let tenants = try await Self.stateTenants(on: connection, logger: logger)
            try await relist(tenants + [tenant.rawValue], growOnly: true, on: connection)
            try await connection.query("""
                INSERT INTO tenantry.capture_state (tenant_id, lock_key, capturing, capture_enabled_at)
                VALUES (\(tenant.rawValue), \(AdvisoryLock.tenant(tenant)), true, clock_timestamp())
                ON CONFLICT (tenant_id) DO UPDATE SET capturing = true, updated_at = now(),
                    capture_enabled_at = CASE WHEN tenantry.capture_state.capturing
                        THEN tenantry.capture_state.capture_enabled_at ELSE clock_timestamp() END
                """, logger: logger)
        }
        // Committed (autocommit). Transactions that started before now may still write
        // without seeing capture on (REPEATABLE READ snapshots); wait for them to end.
        // The transactions running now (their ids): a prepared (two-phase) transaction among them
        // has left pg_stat_activity but may still commit writes made without capture.
        var since = Date()
        var running: [String] = []
        for try await (now, xips) in try await connection.query(
            "SELECT clock_timestamp(), ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot())::text)", logger: logger
        ).decode((Date, [String]).self) {
            since = now
            running = xips
        }
        try await waitForOlderTransactions(than: since, running: running, connection: connection, tenant: tenant)
    }

    func waitForOlderTransactions(than since: Date, running: [String] = [], connection: PostgresConnection, tenant: TenantID) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + enableTimeout
        while true {
            var blockers: [String] = []
            let rows = try await connection.query("""
                SELECT pid, coalesce(usename::text, ''), coalesce(application_name, ''), coalesce(state, ''),
                       to_char(xact_start, 'YYYY-MM-DD HH24:MI:SS')
                FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start < \(since)
                  AND backend_type = 'client backend'
                  AND pid NOT IN (SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
                                  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                                  AND l.classid::bigint = (\(AdvisoryLock.copySnapshotNamespace)::bigint & 4294967295)
                                  AND l.objid = 0 AND l.objsubid = 2)
                ORDER BY xact_start
                """, logger: logger)
            for try await (pid, user, application, state, started) in rows.decode((Int, String, String, String, String).self) {
                blockers.append("pid \(pid) (user \(user)\(application.isEmpty ? "" : ", application '\(application)'"), \(state), transaction open since \(started))")
            }
            let prepared = try await connection.query("""
                SELECT gid, coalesce(owner::text, ''), to_char(prepared, 'YYYY-MM-DD HH24:MI:SS')
                FROM pg_prepared_xacts
                WHERE database = current_database()
                  AND transaction::text = ANY(ARRAY(SELECT (x::numeric % 4294967296)::text FROM unnest(\(running)::text[]) AS x))
                ORDER BY prepared
                """, logger: logger)
            for try await (gid, owner, prepared) in prepared.decode((String, String, String).self) {
                blockers.append("prepared transaction '\(gid)' (owner \(owner), prepared at \(prepared)): COMMIT PREPARED or ROLLBACK PREPARED it")
            }
            if blockers.isEmpty { return }
            if clock.now >= deadline {
                throw TenantryError(
                    code: .timeout,
                    message: "capture for tenant \(tenant) is on, but \(blockers.count) session(s) still have a transaction "
                        + "that began before it: \(blockers.prefix(5).joined(separator: "; ")). End them (or wait) and retry; "
                        + "nothing is lost meanwhile",
                    tenant: tenant.rawValue)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Turns capture off for `tenant`. The captured backlog stays in `tenantry.changes`.
    public func disable(_ tenant: TenantID) async throws {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await connection.query("""
                UPDATE tenantry.capture_state SET capturing = false, updated_at = now() WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
        }
    }

    /// Pauses or resumes the relay for `tenant` (capture goes on: nothing is lost).
    public func setSyncPaused(_ tenant: TenantID, _ paused: Bool, reason: String? = nil) async throws {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await connection.query("""
                UPDATE tenantry.capture_state SET sync_paused = \(paused), paused_reason = \(paused ? reason : nil),
                    pause_kind = \(paused ? PauseKind.operator.rawValue : nil), updated_at = now()
                WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
        }
    }

    /// Refuses `action` (one clear error) when a tenant's stream, in either direction, is paused or
    /// holds dead letters: a change that was not applied would be left behind.
    public func requireStreamsClear(_ tenants: [TenantID], before action: String) async throws {
        for state in try await states(tenants) where state.syncPaused || state.deadLetters > 0 {
            throw TenantryError(
                code: .conflict,
                message: "\(action) of tenant \(state.tenant) refused: its sync is paused with \(state.deadLetters) dead letter(s) "
                    + "(\(state.pausedReason ?? "paused")); see 'tenantry dlq list', fix the cause, then 'tenantry dlq replay --tenant \(state.tenant)'",
                tenant: state.tenant.rawValue)
        }
    }

    /// One tenant's capture state, as `tenantry status` shows it.
    public struct State: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// Whether its writes are captured.
        public var capturing: Bool
        /// Whether it has moved (writes in the unified database are rejected).
        public var moved: Bool
        /// Whether the relay is paused for it (a dead letter, or `dual-write disable`).
        public var syncPaused: Bool
        /// Why it is paused.
        public var pausedReason: String?
        /// Whether a copy snapshot is recorded.
        public var hasSnapshot: Bool
        /// Changes waiting for the relay.
        public var queueDepth: Int
        /// Age of the oldest waiting change, in seconds (0 when none wait).
        public var lagSeconds: Double
        /// Dead letters (both directions).
        public var deadLetters: Int
        /// A dedicated tenant's id headroom: the fewest ids any of its sequences can still hand out
        /// inside its reserved block (the relay extends a block when a quarter is left); nil when
        /// it has none.
        public var idHeadroom: Int64? = nil
    }

    /// The capture state of every tenant capture knows (or of `tenants`).
    public func states(_ tenants: [TenantID]? = nil) async throws -> [State] {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await Self.states(on: connection, tenants: tenants, logger: logger)
        }
    }

    /// ``states(_:)`` over a connection of `client` (a pool to the unified database, e.g. the
    /// catalog's when it lives there) instead of a new connection.
    public func states(using client: PostgresClient) async throws -> [State] {
        try await client.withConnection { connection in try await Self.states(on: connection, tenants: nil, logger: logger) }
    }

    static func states(on connection: PostgresConnection, tenants: [TenantID]?, logger: Logger) async throws -> [State] {
        let ids = tenants?.map(\.rawValue)
        let rows = try await connection.query("""
            SELECT s.tenant_id, s.capturing, s.moved, s.sync_paused, s.paused_reason, s.snapshot IS NOT NULL,
                   coalesce(c.depth, 0)::int, coalesce(extract(epoch FROM clock_timestamp() - c.oldest), 0)::float8,
                   (SELECT count(*)::int FROM tenantry.dead_letters d WHERE d.tenant_id = s.tenant_id), s.id_headroom
            FROM tenantry.capture_state s
            LEFT JOIN LATERAL (SELECT count(*) AS depth, min(captured_at) AS oldest
                               FROM tenantry.changes ch WHERE ch.tenant_id = s.tenant_id) c ON true
            WHERE \(ids == nil) OR s.tenant_id = ANY(\(ids ?? []))
            ORDER BY length(s.tenant_id), s.tenant_id
            """, logger: logger)
        var result: [State] = []
        for try await (id, capturing, moved, paused, reason, snapshot, depth, lag, dead, headroom) in rows.decode(
            (String, Bool, Bool, Bool, String?, Bool, Int, Double, Int, Int64?).self) {
            result.append(State(
                tenant: try TenantID(id), capturing: capturing, moved: moved, syncPaused: paused, pausedReason: reason,
                hasSnapshot: snapshot, queueDepth: depth, lagSeconds: max(0, lag), deadLetters: dead,
                idHeadroom: moved ? headroom : nil))
        }
        return result
    }
}
