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
        try await TenantryTracing.phase("server-move.switch", tenant: tenant) { _ in
            try await flip(tenant, from: .moving, to: .switched, maxPause: maxPause, action: "move-switch")
        }
    }

    /// Moves `tenant`'s writes back to the source after a switch (phase `switched` → `moving`), the
    /// same way: nothing is lost, the target keeps being kept current (switch again, or cancel).
    public func reverse(_ tenant: TenantID, maxPause: Duration = .milliseconds(500)) async throws -> SwitchReport {
        try await TenantryTracing.phase("server-move.reverse", tenant: tenant) { _ in
            try await flip(tenant, from: .switched, to: .moving, maxPause: maxPause, action: "move-reverse")
        }
    }

    private func flip(
        _ tenant: TenantID, from: ServerMoveRecord.Phase, to: ServerMoveRecord.Phase, maxPause: Duration, action: String
    ) async throws -> SwitchReport {
        try await exclusively(tenant, action.replacingOccurrences(of: "-", with: " ")) {
            try await flipLocked(tenant, from: from, to: to, maxPause: maxPause, action: action)
        }
    }

    private func flipLocked(
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
                // The backlog goes before the pause: drain until a few changes remain (writes go on),
                // for at most 30 s; what is left is drained under the fence.
                let catchingUp = ContinuousClock.now + .seconds(30)
                try await Database.withConnection(liveURL, logger: logger) { live in
                    repeat {
                        await relay.drain(tenant, budget: .seconds(2), legs: .serverLink)
                    } while (try await LinkState.read(on: live, tenant: tenant, logger: logger)?.waiting ?? 0) > 50
                        && ContinuousClock.now < catchingUp
                }
                (report.drained, fenced) = try await fencedSwitch(
                    tenant, live: liveURL, follower: followerURL, names: (liveName, move.followerStreamName), maxPause: maxPause)
                try await faults.afterDecisiveCommit?()
            }
            // Decided by an earlier run that stopped before the follower took over: it does now.
            try await LinkState.update(followerURL, tenant: tenant, logger: logger) { follower in
                guard let state = try await LinkState.read(on: follower, tenant: tenant, logger: logger), state.forwardTo != liveName else {
                    return
                }
                try requireNoDeadLetter(state, tenant)
                try await takeOver(follower, tenant: tenant, forwardingTo: liveName)
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
        _ tenant: TenantID, live liveURL: PostgresURL, follower followerURL: PostgresURL, names: (live: String, follower: String),
        maxPause: Duration
    ) async throws -> (drained: Int, fenced: ContinuousClock.Instant) {
        let cutover = Cutover(
            catalog: catalog, servers: servers, unifiedURL: unifiedURL, plan: plan, relay: relay, actor: operations.actor, logger: logger)
        return try await Database.withConnection(followerURL, logger: logger) { follower in
            try await follower.query("BEGIN ISOLATION LEVEL READ COMMITTED", logger: logger)
            do {
                try await LinkState.lockRelay(tenant, on: follower, logger: logger)
                guard let state = try await LinkState.read(on: follower, tenant: tenant, logger: logger) else {
                    throw TenantryError(code: .conflict, message: "the target of tenant \(tenant) has no capture state", tenant: tenant.rawValue)
                }
                try requireNoDeadLetter(state, tenant)
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
                        // Only from the state this switch started from: a concurrent command changed nothing.
                        let decided = try await live.query("""
                            UPDATE tenantry.capture_state SET moved = true, forward_to = NULL, snapshot = pg_current_snapshot(),
                                sync_paused = \(state.paused), paused_reason = \(state.pausedReason), pause_kind = \(state.pauseKind),
                                updated_at = now()
                            WHERE tenant_id = \(tenant.rawValue) AND NOT moved AND forward_to = \(names.follower)
                            RETURNING 1
                            """, logger: logger)
                        var rows = 0
                        for try await _ in decided { rows += 1 }
                        guard rows == 1 else {
                            throw TenantryError(
                                code: .conflict,
                                message: "switch of tenant \(tenant) aborted: its database no longer forwards to the other one "
                                    + "(another command changed the move); nothing changed", tenant: tenant.rawValue)
                        }
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
                // Still under the follower's relay lock: its stream to unified has stood still
                // since before the fence, so nothing overtakes what waits in it.
                try await takeOver(follower, tenant: tenant, forwardingTo: names.live)
                try await follower.query("COMMIT", logger: logger)
                return outcome
            } catch {
                _ = try? await follower.queryIfOpen("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// The follower takes the writes once the catalog says so: it forwards to the old live
    /// database from now on (its snapshot taken now: what waits in its stream is forwarded as it
    /// is, not applied there again), and stops refusing writes.
    private func takeOver(_ follower: PostgresConnection, tenant: TenantID, forwardingTo liveName: String) async throws {
        try await follower.query("""
            UPDATE tenantry.capture_state SET forward_to = \(liveName), snapshot = pg_current_snapshot(), moved = false,
                sync_paused = false, paused_reason = NULL, pause_kind = NULL, updated_at = now()
            WHERE tenant_id = \(tenant.rawValue)
            """, logger: logger)
    }

    private func requireNoDeadLetter(_ state: LinkState, _ tenant: TenantID) throws {
        guard state.deadLetters == 0, state.pauseKind != PauseKind.deadLetter.rawValue,
              state.pauseKind != PauseKind.reverseDeadLetter.rawValue else {
            throw TenantryError(
                code: .conflict,
                message: "switch of tenant \(tenant) stopped: its stream to unified has dead letters (tenantry dlq list); resolve them, "
                    + "then run the command again", tenant: tenant.rawValue)
        }
    }
}
