import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// Switches a synced tenant's writes to its tenant database (step 6 of a move), and back
/// (rollback), losing nothing.
///
/// Cutover: reverse capture is installed in the tenant database; then the tenant's fence is taken
/// exclusively in the unified database (in-flight writes finish, new ones wait in their capture
/// trigger), the relay drains the last changes, sequences are moved past every id in use, reverse
/// capture starts, the tenant is marked moved (waiting and later direct writes to unified are
/// rejected by the guard), the catalog placement flips (epoch + 1, NOTIFY: routers send writes to
/// the tenant database), and the fence is released. A pause longer than `maxPause` aborts cleanly.
public struct Cutover: Sendable {
    /// What one cutover or rollback did.
    public struct Report: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// How long the tenant's writes were paused, in milliseconds.
        public var pauseMilliseconds: Double
        /// Changes drained during the pause.
        public var drained: Int
    }

    let catalog: Catalog
    let servers: ServerDirectory
    let unifiedURL: PostgresURL
    let plan: MovePlan
    let relay: Relay
    let actor: String
    let logger: Logger

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

    private func tenantURL(_ tenant: TenantID) async throws -> PostgresURL {
        try servers.adminURL(of: try await catalog.requireTenant(tenant))
    }

    /// Installs reverse capture in a tenant database (idle until turned on).
    private func installReverseCapture(_ tenant: TenantID, on connection: PostgresConnection) async throws {
        try await Database.withTransaction(connection, logger: logger) { connection in
            try await connection.query(
                "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.captureInstall))", logger: logger)
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
    /// and free of dead letters.
    public func cutover(_ tenant: TenantID, maxPause: Duration = .milliseconds(500)) async throws -> Report {
        let phase = try await catalog.move(tenant)?.phase ?? .shared
        guard phase == .syncing || phase == .readsSwitched else {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) is in phase \(phase): cutover needs syncing (run migrate-data first)",
                tenant: tenant.rawValue)
        }
        let capture = Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, logger: logger)
        guard let state = try await capture.states([tenant]).first, state.capturing, state.hasSnapshot else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant) is not being captured", tenant: tenant.rawValue)
        }
        guard state.deadLetters == 0, !state.syncPaused else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant)'s sync is paused (\(state.pausedReason ?? "dead letters")): fix and replay first",
                tenant: tenant.rawValue)
        }
        // Most of the backlog goes before the pause (writes may keep coming: a bounded drain).
        try await relay.refresh()
        await relay.drain(tenant, budget: .seconds(5))
        let tenantURL = try await tenantURL(tenant)
        return try await Database.withConnection(tenantURL, logger: logger) { tenantDatabase in
            try await installReverseCapture(tenant, on: tenantDatabase)
            return try await Database.withConnection(unifiedURL, logger: logger) { unified in
                try await pauseAndSwitch(tenant, unified: unified, tenantDatabase: tenantDatabase, maxPause: maxPause)
            }
        }
    }

    private func pauseAndSwitch(
        _ tenant: TenantID, unified: PostgresConnection, tenantDatabase: PostgresConnection, maxPause: Duration
    ) async throws -> Report {
        try await unified.query("BEGIN", logger: logger)
        let started = ContinuousClock.now
        var flipped = false
        do {
            try await takeFence(tenant, on: unified, maxPause: maxPause, what: "cutover")
            let drained = await relay.drain(tenant)
            let waiting = try await unified.query(
                "SELECT count(*)::int FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                .decode(Int.self).first(where: { _ in true }) ?? 0
            guard waiting == 0 else {
                throw TenantryError(
                    code: .conflict,
                    message: "cutover of tenant \(tenant) aborted: \(waiting) change(s) could not be applied (see tenantry status); nothing changed",
                    tenant: tenant.rawValue)
            }
            try await SequenceSync(plan: plan, logger: logger).reserveBlock(tenantDatabase: tenantDatabase, unified: unified)
            try await tenantDatabase.query("""
                UPDATE tenantry.capture_state SET capturing = true, moved = false, sync_paused = false, paused_reason = NULL,
                    snapshot = pg_current_snapshot(), capture_enabled_at = clock_timestamp(), updated_at = now()
                WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
            try await unified.query("""
                UPDATE tenantry.capture_state SET moved = true, capturing = false, updated_at = now() WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
            let elapsed = ContinuousClock.now - started
            guard elapsed <= maxPause else {
                throw TenantryError(
                    code: .timeout,
                    message: "cutover of tenant \(tenant) aborted: the pause reached \(elapsed) (max \(maxPause)); nothing changed, retry",
                    tenant: tenant.rawValue)
            }
            // The route flips while the fence is held: writers rejected after the release find the new route.
            try await flipPlacement(tenant, to: .dedicated)
            flipped = true
            try await unified.query("COMMIT", logger: logger)
            let pause = (ContinuousClock.now - started).seconds * 1000
            try? await catalog.audit(
                actor: actor, action: "cutover", tenant: tenant, outcome: .ok,
                detail: ["pause_ms": String(format: "%.1f", pause), "drained": "\(drained)"])
            return Report(tenant: tenant, pauseMilliseconds: pause, drained: drained)
        } catch {
            _ = try? await unified.query("ROLLBACK", logger: logger)
            _ = try? await tenantDatabase.query(
                "UPDATE tenantry.capture_state SET capturing = false WHERE tenant_id = \(tenant.rawValue)", logger: logger)
            if flipped { try? await flipPlacement(tenant, to: .shared) }
            try? await catalog.audit(
                actor: actor, action: "cutover", tenant: tenant, outcome: .failed, detail: ["error": Database.message(of: error)])
            throw error
        }
    }

    /// Takes the tenant's fence exclusively in the open transaction on `connection`, waiting at
    /// most `maxPause` for in-flight writes (then one clear error; nothing has changed yet).
    private func takeFence(_ tenant: TenantID, on connection: PostgresConnection, maxPause: Duration, what: String) async throws {
        try await connection.query(
            PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(Self.milliseconds(maxPause))ms'"), logger: logger)
        do {
            try await connection.query(
                "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.tenant(tenant)))", logger: logger)
        } catch where Database.sqlState(of: error) == "55P03" {
            throw TenantryError(
                code: .timeout,
                message: "\(what) of tenant \(tenant) aborted: in-flight writes did not finish within \(maxPause); nothing changed, retry",
                tenant: tenant.rawValue)
        }
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        max(1, duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }

    private func flipPlacement(_ tenant: TenantID, to placement: TenantRecord.Placement) async throws {
        var record = try await catalog.requireTenant(tenant)
        record.placement = placement
        try await catalog.upsertTenant(record)
        if placement == .dedicated {
            let phase = try await catalog.move(tenant)?.phase ?? .shared
            if phase != .cutover { try await catalog.setPhase(tenant, to: .cutover) }
            try await catalog.setPhase(tenant, to: .dedicated)
        } else {
            try await catalog.setPhase(tenant, to: .shared)
        }
    }

    /// Rolls `tenant` back to `shared`, losing nothing. Before cutover: capture stops and every
    /// read and write is the unified database's again (the tenant database is left as it is; a
    /// later `migrate-data` copies afresh). After cutover: a cutover in the other direction — the
    /// fence is taken in the tenant database, reverse sync drains, the tenant database is marked
    /// moved (its writes rejected), unified accepts the tenant's writes again, the placement flips.
    public func rollback(_ tenant: TenantID, maxPause: Duration = .seconds(5)) async throws -> Report {
        let phase = try await catalog.move(tenant)?.phase ?? .shared
        let started = ContinuousClock.now
        switch phase {
        case .shared:
            return Report(tenant: tenant, pauseMilliseconds: 0, drained: 0)
        case .provisioned, .copying, .syncing, .readsSwitched:
            try await Database.withConnection(unifiedURL, logger: logger) { unified in
                try await Database.withTransaction(unified, logger: logger) { unified in
                    try await unified.query("""
                        UPDATE tenantry.capture_state SET capturing = false, snapshot = NULL, sync_paused = false,
                            paused_reason = NULL, updated_at = now()
                        WHERE tenant_id = \(tenant.rawValue)
                        """, logger: logger)
                    try await unified.query("DELETE FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                    try await unified.query("DELETE FROM tenantry.dead_letters WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                }
            }
            try await catalog.setPhase(tenant, to: .shared)
            try? await catalog.audit(actor: actor, action: "rollback", tenant: tenant, outcome: .ok, detail: ["from": phase.rawValue])
            return Report(tenant: tenant, pauseMilliseconds: (ContinuousClock.now - started).seconds * 1000, drained: 0)
        case .cutover, .dedicated:
            let report = try await reverseCutover(tenant, maxPause: maxPause)
            try? await catalog.audit(
                actor: actor, action: "rollback", tenant: tenant, outcome: .ok,
                detail: ["from": phase.rawValue, "pause_ms": String(format: "%.1f", report.pauseMilliseconds)])
            return report
        default:
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) is \(phase): its unified rows are gone (restore-legacy first)",
                tenant: tenant.rawValue)
        }
    }

    private func reverseCutover(_ tenant: TenantID, maxPause: Duration) async throws -> Report {
        try await relay.refresh()
        await relay.drain(tenant, budget: .seconds(5))
        let tenantURL = try await tenantURL(tenant)
        return try await Database.withConnection(tenantURL, logger: logger) { tenantDatabase in
            try await Database.withConnection(unifiedURL, logger: logger) { unified in
                try await tenantDatabase.query("BEGIN", logger: logger)
                let started = ContinuousClock.now
                do {
                    try await takeFence(tenant, on: tenantDatabase, maxPause: maxPause, what: "rollback")
                    let drained = await relay.drain(tenant)
                    let waiting = try await tenantDatabase.query(
                        "SELECT count(*)::int FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                        .decode(Int.self).first(where: { _ in true }) ?? 0
                    guard waiting == 0 else {
                        throw TenantryError(
                            code: .conflict,
                            message: "rollback of tenant \(tenant) aborted: \(waiting) change(s) could not be synced back; nothing changed",
                            tenant: tenant.rawValue)
                    }
                    try await tenantDatabase.query("""
                        UPDATE tenantry.capture_state SET moved = true, capturing = false, updated_at = now() WHERE tenant_id = \(tenant.rawValue)
                        """, logger: logger)
                    try await unified.query("""
                        UPDATE tenantry.capture_state SET moved = false, capturing = false, snapshot = NULL, updated_at = now()
                        WHERE tenant_id = \(tenant.rawValue)
                        """, logger: logger)
                    try await flipPlacement(tenant, to: .shared)
                    try await tenantDatabase.query("COMMIT", logger: logger)
                    return Report(tenant: tenant, pauseMilliseconds: (ContinuousClock.now - started).seconds * 1000, drained: drained)
                } catch {
                    _ = try? await tenantDatabase.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        }
    }
}
