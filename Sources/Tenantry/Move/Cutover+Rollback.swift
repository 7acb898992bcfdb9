import Foundation
import Logging
import PostgresNIO
import TenantryCore
import Tracing

extension Cutover {
    /// Rolls `tenant` back to `shared`, losing nothing. Before cutover: capture stops and every
    /// read and write is the unified database's again (the tenant database is left as it is; a
    /// later `migrate-data` copies afresh). After cutover: a cutover in the other direction — the
    /// fence is taken in the tenant database, reverse sync drains, the tenant database is marked
    /// moved (its writes rejected; this COMMIT decides), unified accepts the tenant's writes again,
    /// the placement flips. Refused while reverse sync is paused or holds dead letters. A rollback
    /// that committed in the tenant database but did not finish is finished by running it again.
    public func rollback(_ tenant: TenantID, maxPause: Duration = .seconds(5)) async throws -> Report {
        try await TenantryTracing.phase("rollback", tenant: tenant) { span in
            let report = try await rollbackTenant(tenant, maxPause: maxPause)
            span?.attributes["tenantry.pause_ms"] = report.pauseMilliseconds
            span?.attributes["tenantry.drained"] = report.drained
            return report
        }
    }

    private func rollbackTenant(_ tenant: TenantID, maxPause: Duration) async throws -> Report {
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
                            paused_reason = NULL, pause_kind = NULL, updated_at = now()
                        WHERE tenant_id = \(tenant.rawValue)
                        """, logger: logger)
                    try await unified.query("DELETE FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                    try await unified.query("DELETE FROM tenantry.dead_letters WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                }
            }
            try await catalog.setPhase(tenant, to: .shared)
            try? await catalog.audit(actor: actor, action: "rollback", tenant: tenant, outcome: .ok, detail: ["from": phase.rawValue])
            return Report(tenant: tenant, pauseMilliseconds: (ContinuousClock.now - started).totalMilliseconds, drained: 0)
        case .cutover, .dedicated:
            try await catalog.requireNoServerMove([tenant], before: "a rollback")
            // The switch back runs on the reversed route: the tenant database is its source.
            let back = try await route(tenant).reversed
            let committed = try await Database.withConnection(back.source.url, logger: logger) { connection in
                try await connection.query(
                    "SELECT coalesce((SELECT moved FROM tenantry.capture_state WHERE tenant_id = \(tenant.rawValue)), false)",
                    logger: logger).decode(Bool.self).first(where: { _ in true }) ?? false
            }
            var report = Report(tenant: tenant, pauseMilliseconds: 0, drained: 0)
            if committed {
                try await reopenUnified(tenant, at: back.target.url)
            } else {
                try await Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, logger: logger)
                    .requireStreamsClear([tenant], before: "rollback")
                await announceSwitch(tenant)
                // The connection that reopens unified is opened before the pause: between the
                // decisive COMMIT and the reopening both sides refuse the tenant's writes.
                report = try await reopening(tenant, at: back.target.url) { unified in
                    let report = try await reverseCutover(back, maxPause: maxPause)
                    try await reopenUnified(tenant, at: back.target.url, on: unified)
                    return report
                }
            }
            try await finish(tenant, to: .shared, action: "rollback")
            try? await catalog.audit(
                actor: actor, action: "rollback", tenant: tenant, outcome: .ok,
                detail: ["from": phase.rawValue, "pause_ms": String(format: "%.1f", report.pauseMilliseconds),
                         "resumed": "\(committed)"])
            return report
        default:
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) is \(phase): its unified rows are gone (restore-legacy first)",
                tenant: tenant.rawValue)
        }
    }

    /// The switch back under the fence of `route`'s source (the tenant database); its COMMIT (the
    /// tenant database marked moved) decides. Until the target (unified) is reopened, both sides
    /// refuse the tenant's writes: loud, and nothing lands where it would be lost.
    private func reverseCutover(_ route: MoveRoute, maxPause: Duration) async throws -> Report {
        let tenant = route.tenant
        return try await Database.withConnection(route.source.url, logger: logger) { tenantDatabase in
            // Most of the backlog goes before the pause, once connected (a bounded drain).
            try await relay.refresh()
            await relay.drain(tenant, budget: .seconds(5))
            try await tenantDatabase.query("BEGIN", logger: logger)
            let started = ContinuousClock.now
            var parts = PauseClock()
            var drained = 0
            do {
                try await takeFence(tenant, on: tenantDatabase, maxPause: maxPause, what: "rollback")
                parts.lap("fence")
                drained = await relay.drain(tenant)
                parts.lap("drain")
                try await requireDrained(tenant, on: tenantDatabase, what: "rollback", direction: "synced back")
                parts.lap("check")
                try await tenantDatabase.query("""
                    UPDATE tenantry.capture_state SET moved = true, capturing = false, updated_at = now() WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
                parts.lap("flags")
                try await faults.beforeDecisiveCommit?()
            } catch {
                _ = try? await tenantDatabase.queryIfOpen("ROLLBACK", logger: logger)
                throw error
            }
            do {
                try await commitDecisive(tenantDatabase)
                try await faults.afterDecisiveCommit?()
            } catch {
                guard try await decidedMoved(tenant, url: route.source.url, error: error, what: "rollback") else { throw error }
            }
            parts.lap("commit")
            return Report(
                tenant: tenant, pauseMilliseconds: (ContinuousClock.now - started).totalMilliseconds, drained: drained,
                pauseParts: parts.milliseconds)
        }
    }

    /// Lets the unified database take the tenant's writes again (after the tenant database
    /// refuses them). Idempotent.
    private func reopenUnified(_ tenant: TenantID, at url: PostgresURL, on connection: PostgresConnection? = nil) async throws {
        do {
            let reopen: (PostgresConnection) async throws -> Void = { [logger] unified in
                try await unified.query("""
                    UPDATE tenantry.capture_state SET moved = false, capturing = false, snapshot = NULL, updated_at = now()
                    WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
            }
            if let connection, !connection.isClosed {
                try await reopen(connection)
            } else {
                try await Database.withConnection(url, logger: logger) { try await reopen($0) }
            }
        } catch {
            throw TenantryError(
                code: .database,
                message: "rollback of tenant \(tenant) is committed in its database but the unified database was not reopened "
                    + "(\(Database.message(of: error))); its writes are refused meanwhile, none is lost: "
                    + "run 'tenantry rollback --tenant \(tenant)' again to finish",
                tenant: tenant.rawValue, underlying: error)
        }
    }

    /// Runs `body` with a connection to the unified database opened beforehand (`nil` when it
    /// cannot be opened: ``reopenUnified(_:at:on:)`` then opens its own).
    private func reopening<T: Sendable>(
        _ tenant: TenantID, at url: PostgresURL, _ body: (PostgresConnection?) async throws -> T
    ) async throws -> T {
        guard let connection = try? await Database.connect(url, logger: logger) else { return try await body(nil) }
        return try await Database.closing(connection) { try await body($0) }
    }

    /// Takes the tenant's fence exclusively in the open transaction on `connection`, waiting at
    /// most `maxPause` for in-flight writes (then one clear error; nothing has changed yet).
    func takeFence(_ tenant: TenantID, on connection: PostgresConnection, maxPause: Duration, what: String) async throws {
        try await TenantryTracing.withSpan("move.fence", tenant: tenant, phase: what) { _ in
            try await takeFenceUntraced(tenant, on: connection, maxPause: maxPause, what: what)
        }
    }

    private func takeFenceUntraced(_ tenant: TenantID, on connection: PostgresConnection, maxPause: Duration, what: String) async throws {
        try await connection.query(
            PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(Self.milliseconds(maxPause))ms'"), logger: logger)
        do {
            // Read to the end: a lock timeout arrives after the row description, as a row error.
            _ = try await connection.query(Self.fenceStatement(tenant), logger: logger).collect()
        } catch where Database.sqlState(of: error) == "55P03" {
            throw TenantryError(
                code: .timeout,
                message: "\(what) of tenant \(tenant) aborted: in-flight writes did not finish within \(maxPause); nothing changed, retry",
                tenant: tenant.rawValue)
        }
    }

    /// Takes `tenant`'s write fence exclusively, both keys in one statement: the key the capture
    /// functions lock, `(fenceNamespace, hashtext(id))`, computed by this server as they compute it;
    /// and the legacy key `(namespace, AdvisoryLock.tenant(id))`, which functions installed before
    /// 2026-12-01 read from `capture_state.lock_key` (still written): a database whose functions an
    /// older Tenantry installed is fenced until `capture install` replaces them. Writers take one
    /// key (shared), so the two cannot deadlock with them; a key shared by two tenants only makes
    /// one wait for the other's switch.
    static func fenceStatement(_ tenant: TenantID) -> PostgresQuery {
        "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.tenant(tenant))), pg_advisory_xact_lock(\(AdvisoryLock.fenceNamespace), hashtext(\(tenant.rawValue)))"
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        max(1, duration.wholeMilliseconds)
    }

    func flipPlacement(_ tenant: TenantID, to placement: TenantRecord.Placement) async throws {
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

}

/// Laps of a switch's pause, for ``Cutover/Report/pauseParts``.
struct PauseClock {
    private var last = ContinuousClock.now
    /// Milliseconds per step.
    private(set) var milliseconds: [String: Double] = [:]

    /// Ends the step `name` (begun at the previous lap).
    mutating func lap(_ name: String) {
        let now = ContinuousClock.now
        milliseconds[name, default: 0] += (now - last).totalMilliseconds
        last = now
    }
}
