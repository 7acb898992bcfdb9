import Foundation
import Logging
import PostgresNIO
import TenantryCore
import Tracing

/// Switches a synced tenant's writes to its tenant database (step 6 of a move), and back
/// (rollback), losing nothing.
///
/// Cutover: reverse capture is installed in the tenant database; then the tenant's fence is taken
/// exclusively in the unified database (in-flight writes finish, new ones wait in their capture
/// trigger), the relay drains the last changes, sequences are moved past every id in use, reverse
/// capture starts, the tenant is marked moved (waiting and later direct writes to unified are
/// rejected by the guard), the catalog placement flips (epoch + 1, NOTIFY: routers send writes to
/// the tenant database), and the fence is released. A pause longer than `maxPause` aborts cleanly.
///
/// Both switches run on the tenant's ``MoveRoute``: cutover takes the fence and decides in the
/// route's source (unified) and turns capture on in its target (the tenant database); rollback
/// does the same on the reversed route.
public struct Cutover: Sendable {
    /// What one cutover or rollback did.
    public struct Report: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// How long the tenant's writes were paused, in milliseconds.
        public var pauseMilliseconds: Double
        /// Changes drained during the pause.
        public var drained: Int
        /// Where the pause went, in milliseconds per step: `fence` (waiting for in-flight
        /// writes), `drain` (the last changes), `check` (nothing left, no dead letter), `flags`
        /// (capture turned around), `commit` (the decisive COMMIT). Empty when nothing paused.
        public var pauseParts: [String: Double] = [:]
        /// What came before the pause, in milliseconds per step (writes were not held up):
        /// `install` (reverse capture), `block` (the id block), `drain` (most of the backlog).
        public var preparationParts: [String: Double] = [:]
    }

    let catalog: Catalog
    let servers: ServerDirectory
    let unifiedURL: PostgresURL
    let plan: MovePlan
    let relay: Relay
    /// Test hooks: faults injected at the decisive points of a switch.
    var faults = Faults()
    let actor: String
    let logger: Logger

    /// Faults a test injects: each hook runs at its point of a cutover or rollback and may throw.
    struct Faults: Sendable {
        /// Just before the COMMIT that decides the switch.
        var beforeDecisiveCommit: (@Sendable () async throws -> Void)?
        /// Just after that COMMIT succeeded (an error here looks like a lost COMMIT reply).
        var afterDecisiveCommit: (@Sendable () async throws -> Void)?
        /// Before the catalog flip that follows a committed switch.
        var beforeCatalogFlip: (@Sendable () async throws -> Void)?
    }

    /// Creates a cutover handle; `relay` drains the last changes during the pause.
    public init(catalog: Catalog, servers: ServerDirectory, unifiedURL: PostgresURL, plan: MovePlan, relay: Relay,
                actor: String, logger: Logger) {
        self.catalog = catalog
        self.servers = servers
        self.unifiedURL = unifiedURL
        self.plan = plan
        self.relay = relay
        self.actor = actor
        self.logger = logger
    }

    /// `tenant`'s move: from the unified database (filtered to the tenant) to its tenant database.
    func route(_ tenant: TenantID) async throws -> MoveRoute {
        .toDedicated(
            tenant, unified: unifiedURL, tenantDatabase: try servers.adminURL(of: try await catalog.requireTenant(tenant)),
            plan: plan)
    }

    /// Installs reverse capture in a tenant database (idle until turned on). The relay applies the
    /// tenant's changes into that database meanwhile, and after an earlier cutover its triggers
    /// read the capture state: an apply transaction (table, then capture state) and the install
    /// (capture state, then each table) can deadlock (SQLSTATE 40P01, seen under load in
    /// `tenantry-bench cutover`). So its lock waits are bounded (250 ms, under the server's
    /// `deadlock_timeout`: the relay is not the one failed) and, nothing having changed yet, the
    /// install is run again (five times at most; the last one waits as long as it takes).
    private func installReverseCapture(_ tenant: TenantID, on connection: PostgresConnection) async throws {
        for attempt in 1... {
            do {
                return try await Self.installReverseCapture(
                    tenant, plan: plan, on: connection, lockTimeout: attempt < 5 ? .milliseconds(250) : nil, logger: logger)
            } catch where attempt < 5 && TenantRouter.isLockTimeout(error) {
                logger.debug("installing reverse capture met a lock conflict; retrying", metadata: [
                    LogMetadataKey.tenant: "\(tenant)", "error": "\(Database.message(of: error))"])
                try await Task.sleep(for: .milliseconds(50 * attempt))
            }
        }
        throw TenantryError(code: .database, message: "unreachable: install retries ended")
    }

    /// Brings the capture functions of a tenant database that already captures up to date without
    /// locking its tables (it is under load): the functions are replaced, and `forward_to` is added
    /// when an older install lacks it (a lock on the capture state alone).
    static func refreshCaptureFunctions(
        _ tenant: TenantID, plan: MovePlan, on connection: PostgresConnection, logger: Logger
    ) async throws {
        let hasColumn = try await connection.query("""
            SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'tenantry.capture_state'::regclass AND attname = 'forward_to')
            """, logger: logger).decode(Bool.self).first(where: { _ in true }) ?? false
        if !hasColumn {
            try await connection.query("ALTER TABLE tenantry.capture_state ADD COLUMN IF NOT EXISTS forward_to text", logger: logger)
        }
        try await Database.withTransaction(connection, logger: logger) { connection in
            try await Catalog.requireTrustedSchemaOwner(on: connection, logger: logger)
            for table in plan.tables {
                try await Database.execute(
                    script: try CaptureSQL.trigger(for: table, plan: plan, tenant: tenant, functionOnly: true), on: connection, logger: logger)
            }
        }
    }

    /// Installs (or refreshes: idempotent) reverse capture in `tenant`'s database: the capture
    /// tables, one trigger per tenant table, the tenant's state row (kept when present).
    static func installReverseCapture(
        _ tenant: TenantID, plan: MovePlan, on connection: PostgresConnection, lockTimeout: Duration? = nil, logger: Logger
    ) async throws {
        try await Database.withTransaction(connection, logger: logger) { connection in
            if let lockTimeout {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(Self.milliseconds(lockTimeout))ms'"), logger: logger)
            }
            try await connection.query(
                "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.captureInstall))", logger: logger)
            try await Catalog.requireTrustedSchemaOwner(on: connection, logger: logger)
            try await Database.execute(script: CaptureSQL.tables, on: connection, logger: logger)
            for table in plan.tables {
                try await Database.execute(script: try CaptureSQL.trigger(for: table, plan: plan, tenant: tenant), on: connection, logger: logger)
            }
            try await connection.query("""
                INSERT INTO tenantry.capture_state (tenant_id, lock_key) VALUES (\(tenant.rawValue), \(AdvisoryLock.tenant(tenant)))
                ON CONFLICT (tenant_id) DO NOTHING
                """, logger: logger)
        }
    }

    /// Cuts `tenant` over. Refuses unless it is syncing (or reads switched), caught up enough,
    /// and free of dead letters. A cutover whose switch committed but whose catalog flip did not
    /// happen (a crash, a lost connection) is finished by running it again.
    public func cutover(_ tenant: TenantID, maxPause: Duration = .milliseconds(500)) async throws -> Report {
        try await TenantryTracing.phase("cutover", tenant: tenant) { span in
            let report = try await cutoverTenant(tenant, maxPause: maxPause)
            span?.attributes["tenantry.pause_ms"] = report.pauseMilliseconds
            span?.attributes["tenantry.drained"] = report.drained
            return report
        }
    }

    private func cutoverTenant(_ tenant: TenantID, maxPause: Duration) async throws -> Report {
        let phase = try await catalog.move(tenant)?.phase ?? .shared
        guard phase == .syncing || phase == .readsSwitched || phase == .cutover else {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) is in phase \(phase): cutover needs syncing (run migrate-data first)",
                tenant: tenant.rawValue)
        }
        let capture = Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, logger: logger)
        let state = try await capture.states([tenant]).first
        if let state, state.moved {
            // The switch committed in the unified database before: only the catalog flip is left.
            try await finish(tenant, to: .dedicated, action: "cutover")
            return Report(tenant: tenant, pauseMilliseconds: 0, drained: 0)
        }
        guard let state, state.capturing, state.hasSnapshot else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant) is not being captured", tenant: tenant.rawValue)
        }
        try await capture.requireStreamsClear([tenant], before: "cutover")
        await announceSwitch(tenant)
        let route = try await route(tenant)
        var preparation = PauseClock()
        var report = try await Database.withConnection(route.target.url, logger: logger) { target in
            try await installReverseCapture(tenant, on: target)
            preparation.lap("install")
            return try await Database.withConnection(route.source.url, logger: logger) { source in
                // Before the pause: the tenant database's id block (ids the unified database hands
                // out from now on are past it), and most of the backlog (writes keep coming: a
                // bounded drain, after the slow set-up above so little is left for the fence).
                let headroom = try await SequenceSync(plan: plan, logger: logger).reserveBlock(tenantDatabase: target, unified: source)
                preparation.lap("block")
                try await relay.refresh()
                await relay.drain(tenant, budget: .seconds(5))
                preparation.lap("drain")
                return try await TenantryTracing.withSpan("move.pause", tenant: tenant, phase: "cutover") { _ in
                    try await pauseAndSwitch(route, source: source, target: target, headroom: headroom, maxPause: maxPause)
                }
            }
        }
        report.preparationParts = preparation.milliseconds
        try await finish(tenant, to: .dedicated, action: "cutover")
        try? await catalog.audit(
            actor: actor, action: "cutover", tenant: tenant, outcome: .ok,
            detail: ["pause_ms": String(format: "%.1f", report.pauseMilliseconds), "drained": "\(report.drained)"])
        return report
    }

    /// The switch under the fence, taken in the route's source. The source's COMMIT (the tenant
    /// marked moved) is the one point that decides: before it nothing has changed for the
    /// application (the catalog still routes to the source); after it the source refuses the
    /// tenant's writes, and the catalog flip follows (``finish(_:to:action:)``). A COMMIT whose
    /// outcome is unknown is decided by reading the state again on a new connection, never by
    /// guessing.
    ///
    /// The tenant database's id block was reserved before the fence (`headroom`): the unified
    /// sequences were pushed past it then, so every id the unified database gives the tenant's rows
    /// afterwards (and the relay brings over) lies beyond the block, as it does when reserved inside.
    private func pauseAndSwitch(
        _ route: MoveRoute, source unified: PostgresConnection, target tenantDatabase: PostgresConnection, headroom: Int64?,
        maxPause: Duration
    ) async throws -> Report {
        let tenant = route.tenant
        try await unified.query("BEGIN", logger: logger)
        let started = ContinuousClock.now
        var parts = PauseClock()
        var drained = 0
        do {
            try await takeFence(tenant, on: unified, maxPause: maxPause, what: "cutover")
            parts.lap("fence")
            drained = await relay.drain(tenant)
            parts.lap("drain")
            try await requireDrained(tenant, on: unified, what: "cutover", direction: "synced")
            parts.lap("check")
            try await tenantDatabase.query("""
                UPDATE tenantry.capture_state SET capturing = true, moved = false, sync_paused = false, paused_reason = NULL, pause_kind = NULL,
                    snapshot = pg_current_snapshot(), capture_enabled_at = clock_timestamp(), updated_at = now()
                WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
            try await unified.query("""
                UPDATE tenantry.capture_state SET moved = true, capturing = false, id_headroom = \(headroom), updated_at = now()
                WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
            parts.lap("flags")
            let elapsed = ContinuousClock.now - started
            guard elapsed <= maxPause else {
                throw TenantryError(
                    code: .timeout,
                    message: "cutover of tenant \(tenant) aborted: the pause reached \(elapsed) (max \(maxPause)); nothing changed, retry",
                    tenant: tenant.rawValue)
            }
            try await faults.beforeDecisiveCommit?()
        } catch {
            _ = try? await unified.queryIfOpen("ROLLBACK", logger: logger)
            await undoReverseCapture(tenant, on: tenantDatabase)
            try? await catalog.audit(
                actor: actor, action: "cutover", tenant: tenant, outcome: .failed, detail: ["error": Database.message(of: error)])
            throw error
        }
        do {
            try await commitDecisive(unified)
            try await faults.afterDecisiveCommit?()
        } catch {
            guard try await decidedMoved(tenant, url: route.source.url, error: error, what: "cutover") else {
                // It did not commit: nothing was switched, and no write reached the tenant database
                // (the catalog never routed there).
                await undoReverseCapture(tenant, on: tenantDatabase)
                try? await catalog.audit(
                    actor: actor, action: "cutover", tenant: tenant, outcome: .failed, detail: ["error": Database.message(of: error)])
                throw error
            }
            logger.warning("cutover: the COMMIT reported an error but had committed", metadata: [
                LogMetadataKey.tenant: "\(tenant)", "error": "\(Database.message(of: error))"])
        }
        parts.lap("commit")
        return Report(
            tenant: tenant, pauseMilliseconds: (ContinuousClock.now - started).totalMilliseconds, drained: drained,
            pauseParts: parts.milliseconds)
    }

    /// Announces a switch of `tenant` to routers before anything else happens (`warm:<tenant>` on
    /// `tenantry_routes`): each router opens connections to the side the tenant's writes are about
    /// to go to (``TenantRouter/warm(tenant:)``), so the writers the fence releases find them open.
    /// Best effort: a failure only costs the warm-up.
    func announceSwitch(_ tenant: TenantID) async {
        do {
            try await catalog.client.query(
                "SELECT pg_notify('tenantry_routes', \(TenantRouter.warmPrefix + tenant.rawValue))", logger: logger)
        } catch {
            logger.debug("could not announce a switch to routers", metadata: [
                LogMetadataKey.tenant: "\(tenant)", "error": "\(Database.message(of: error))"])
        }
    }

    /// COMMITs the transaction that decides a switch: at once an error on a connection the server
    /// already closed, and bounded in time (PostgresNIO can wait forever for a reply on such a
    /// connection); on any error the connection is closed, so the outcome is read back elsewhere.
    func commitDecisive(_ connection: PostgresConnection) async throws {
        let logger = logger
        do {
            try await withDeadline(.seconds(30), "the COMMIT of a switch") {
                try await connection.queryIfOpen("COMMIT", logger: logger)
            }
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Turns the tenant database's reverse capture off again after a switch that did not happen.
    private func undoReverseCapture(_ tenant: TenantID, on tenantDatabase: PostgresConnection) async {
        _ = try? await tenantDatabase.query(
            "UPDATE tenantry.capture_state SET capturing = false WHERE tenant_id = \(tenant.rawValue)", logger: logger)
    }

    /// Fails unless the stream that the open transaction on `connection` fences is empty and has no
    /// dead letter (letters made by the last drain included).
    func requireDrained(_ tenant: TenantID, on connection: PostgresConnection, what: String, direction: String) async throws {
        let rows = try await connection.query("""
            SELECT (SELECT count(*)::int FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue)),
                   (SELECT count(*)::int FROM tenantry.dead_letters WHERE tenant_id = \(tenant.rawValue))
            """, logger: logger)
        for try await (waiting, dead) in rows.decode((Int, Int).self) where waiting > 0 || dead > 0 {
            throw TenantryError(
                code: .conflict,
                message: "\(what) of tenant \(tenant) aborted: \(waiting) change(s) could not be \(direction) and \(dead) are dead letters "
                    + "(see tenantry status and tenantry dlq list); nothing changed",
                tenant: tenant.rawValue)
        }
    }

    /// After a COMMIT that reported `error`: waits for the tenant's fence on a new connection to
    /// `url` (so the transaction has ended, one way or the other) and reads whether the tenant is
    /// marked moved there. When that cannot be read, one error says how to finish.
    func decidedMoved(_ tenant: TenantID, url: PostgresURL, error: any Error, what: String) async throws -> Bool {
        do {
            return try await Database.withConnection(url, logger: logger) { connection in
                try await Database.withTransaction(connection, logger: logger) { connection in
                    try await connection.query("SET LOCAL lock_timeout = '30s'", logger: logger)
                    _ = try await connection.query(Self.fenceStatement(tenant), logger: logger).collect()
                    return try await connection.query(
                        "SELECT moved FROM tenantry.capture_state WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                        .decode(Bool.self).first(where: { _ in true }) ?? false
                }
            }
        } catch let failure {
            throw TenantryError(
                code: .database,
                message: "\(what) of tenant \(tenant): the outcome of its COMMIT is unknown (\(Database.message(of: error))) and could not be "
                    + "read back (\(Database.message(of: failure))); no write is lost (both sides refuse or capture the tenant's writes): "
                    + "run '\(what == "cutover" || what == "rollback" ? "tenantry \(what)" : "tenantry move \(what)") --tenant \(tenant)' again to finish",
                tenant: tenant.rawValue, underlying: error)
        }
    }

    /// Flips the catalog after a committed switch: the placement (epoch + 1, NOTIFY) and the phase.
    /// A failure here leaves the switch committed: running the same command again finishes it.
    func finish(_ tenant: TenantID, to placement: TenantRecord.Placement, action: String) async throws {
        do {
            try await faults.beforeCatalogFlip?()
            try await flipPlacement(tenant, to: placement)
        } catch {
            throw TenantryError(
                code: .database,
                message: "\(action) of tenant \(tenant) is committed in the databases but the catalog was not updated "
                    + "(\(Database.message(of: error))); the tenant's writes are refused meanwhile, none is lost: "
                    + "run 'tenantry \(action) --tenant \(tenant)' again to finish",
                tenant: tenant.rawValue, underlying: error)
        }
    }
}
