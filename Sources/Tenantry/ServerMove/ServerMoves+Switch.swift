import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension ServerMoves {
    /// Moves `tenant`'s writes to the target (phase `moving` → `switched`): the fence in the source,
    /// the last changes drained into the target, sequences and id blocks carried across, the source
    /// marked moved (its COMMIT decides), the link turned around (the target forwards to the source,
    /// which forwards to unified), the placement flipped (routers follow by NOTIFY). The pause is
    /// measured from the fence to the flip; past `maxPause` nothing changes and writes resume on the source.
    public func switchTraffic(_ tenant: TenantID, maxPause: Duration = .milliseconds(500)) async throws -> SwitchReport {
        try await flip(tenant, from: .moving, to: .switched, maxPause: maxPause, action: "move-switch")
    }

    /// Moves `tenant`'s writes back to the source after a switch (phase `switched` → `moving`), the
    /// same way: nothing is lost, the target keeps being kept current (switch again, or cancel).
    public func reverse(_ tenant: TenantID, maxPause: Duration = .milliseconds(500)) async throws -> SwitchReport {
        try await flip(tenant, from: .switched, to: .moving, maxPause: maxPause, action: "move-reverse")
    }

    private func flip(
        _ tenant: TenantID, from: ServerMoveRecord.Phase, to: ServerMoveRecord.Phase, maxPause: Duration, action: String
    ) async throws -> SwitchReport {
        guard let move = try await catalog.activeServerMove(tenant) else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant) is not moving between servers", tenant: tenant.rawValue)
        }
        guard move.phase == from else {
            throw TenantryError(
                code: .conflict,
                message: "the move of tenant \(tenant) is \(move.phase.rawValue): \(action == "move-switch" ? "switch" : "reverse") needs "
                    + "\(from.rawValue)", tenant: tenant.rawValue)
        }
        let liveURL = try servers.adminURL(server: move.liveServer, database: move.liveDatabase)
        let followerURL = try servers.adminURL(server: move.followerServer, database: move.followerDatabase)
        let liveName = ServerMoveRecord.streamName(server: move.liveServer, database: move.liveDatabase)
        do {
            var report = SwitchReport(tenant: tenant, from: move.liveServer, to: move.followerServer, pauseMilliseconds: 0, drained: 0)
            var fenced: ContinuousClock.Instant?
            let live = try await LinkState.read(liveURL, tenant: tenant, logger: logger)
            if live?.moved != true {
                try await relay.refresh()
                // Most of the backlog goes before the pause.
                await relay.drain(tenant, budget: .seconds(5), legs: .serverLink)
                (report.drained, fenced) = try await fencedSwitch(tenant, live: liveURL, follower: followerURL, maxPause: maxPause)
                try await faults.afterDecisiveCommit?()
            }
            // Decided (now or by an earlier run): the follower forwards to the old live database, and
            // takes the writes once the catalog says so.
            try await LinkState.update(followerURL, tenant: tenant, logger: logger) { follower in
                guard try await LinkState.read(on: follower, tenant: tenant, logger: logger)?.forwardTo != liveName else { return }
                try await follower.query("""
                    UPDATE tenantry.capture_state SET forward_to = \(liveName), snapshot = pg_current_snapshot(), moved = false,
                        sync_paused = false, paused_reason = NULL, pause_kind = NULL, updated_at = now()
                    WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
            }
            var record = try await catalog.requireTenant(tenant)
            let newServer: String? = move.followerServer == ServerDirectory.defaultServerName ? nil : move.followerServer
            record.serverName = newServer
            record.databaseName = move.followerDatabase
            try await catalog.upsertTenant(record)
            // The pause the application sees: from the fence until routers can learn the new placement.
            if let fenced { report.pauseMilliseconds = (ContinuousClock.now - fenced).totalMilliseconds }
            try await catalog.setServerMovePhase(move.id, from: from, to: to, pauseMilliseconds: report.pauseMilliseconds)
            try await relay.refresh()
            try? await catalog.audit(
                actor: operations.actor, action: action, tenant: tenant, outcome: .ok,
                detail: ["from": move.liveServer, "to": move.followerServer, "pause_ms": String(format: "%.1f", report.pauseMilliseconds),
                         "drained": "\(report.drained)"])
            return report
        } catch {
            try? await catalog.noteServerMoveError(move.id, Database.message(of: error))
            try? await catalog.audit(
                actor: operations.actor, action: action, tenant: tenant, outcome: .failed, detail: ["error": Database.message(of: error)])
            throw error
        }
    }

    /// The decisive part, under the fence in the live database: drain the link, carry sequences
    /// over, mark the live database moved with the follower's pause (the follower's stream to
    /// unified is held meanwhile by its relay lock), COMMIT. Anything before the COMMIT fails with
    /// nothing changed; a COMMIT whose outcome is unknown is read back.
    private func fencedSwitch(
        _ tenant: TenantID, live liveURL: PostgresURL, follower followerURL: PostgresURL, maxPause: Duration
    ) async throws -> (drained: Int, fenced: ContinuousClock.Instant) {
        let cutover = Cutover(
            catalog: catalog, servers: servers, unifiedURL: unifiedURL, plan: plan, relay: relay, actor: operations.actor, logger: logger)
        return try await Database.withConnection(followerURL, logger: logger) { follower in
            try await follower.query("BEGIN", logger: logger)
            do {
                try await LinkState.lockRelay(tenant, on: follower, logger: logger)
                guard let state = try await LinkState.read(on: follower, tenant: tenant, logger: logger) else {
                    throw TenantryError(code: .conflict, message: "the target of tenant \(tenant) has no capture state", tenant: tenant.rawValue)
                }
                guard state.deadLetters == 0, state.pauseKind != PauseKind.deadLetter.rawValue,
                      state.pauseKind != PauseKind.reverseDeadLetter.rawValue else {
                    throw TenantryError(
                        code: .conflict,
                        message: "switch of tenant \(tenant) aborted: its stream to unified has dead letters (tenantry dlq list); nothing changed",
                        tenant: tenant.rawValue)
                }
                let outcome = try await Database.withConnection(liveURL, logger: logger) { live in
                    try await live.query("BEGIN", logger: logger)
                    let started = ContinuousClock.now
                    var drained = 0
                    do {
                        try await cutover.takeFence(tenant, on: live, maxPause: maxPause, what: "switch")
                        drained = await relay.drain(tenant, budget: nil, legs: .serverLink)
                        try await cutover.requireDrained(tenant, on: live, what: "switch", direction: "applied on the target")
                        // On a connection of its own: the positions hold even if this switch is re-run
                        // after its COMMIT (and are harmless if it aborts: the follower takes no writes).
                        try await Database.withConnection(followerURL, logger: logger) { target in
                            try await mirrorSequences(from: live, to: target)
                        }
                        try await live.query("""
                            UPDATE tenantry.capture_state SET moved = true, forward_to = NULL, snapshot = pg_current_snapshot(),
                                sync_paused = \(state.paused), paused_reason = \(state.pausedReason), pause_kind = \(state.pauseKind),
                                updated_at = now()
                            WHERE tenant_id = \(tenant.rawValue)
                            """, logger: logger)
                        let elapsed = ContinuousClock.now - started
                        guard elapsed <= maxPause else {
                            throw TenantryError(
                                code: .timeout,
                                message: "switch of tenant \(tenant) aborted: the pause reached \(elapsed) (max \(maxPause)); nothing changed, retry",
                                tenant: tenant.rawValue)
                        }
                    } catch {
                        _ = try? await live.queryIfOpen("ROLLBACK", logger: logger)
                        throw error
                    }
                    do {
                        try await cutover.commitDecisive(live)
                    } catch {
                        guard try await cutover.decidedMoved(tenant, url: liveURL, error: error, what: "switch") else { throw error }
                    }
                    return (drained, started)
                }
                try await follower.query("COMMIT", logger: logger)
                return outcome
            } catch {
                _ = try? await follower.queryIfOpen("ROLLBACK", logger: logger)
                throw error
            }
        }
    }
}
