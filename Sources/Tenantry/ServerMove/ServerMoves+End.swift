import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension ServerMoves {
    /// Ends a switched move: the link to the source stops, what waits in the source's stream for
    /// unified is handed to the front of the target's stream, and the source database and role are
    /// dropped (after a `pg_dump` into `archiveDirectory` when given). No fence: the tenant's
    /// writes go on in the target throughout. Re-run after an interruption, it finishes.
    public func complete(_ tenant: TenantID, archiveDirectory: String? = nil) async throws -> EndReport {
        try await TenantryTracing.phase("server-move.complete", tenant: tenant) { _ in
            try await end(tenant, phase: .complete, archiveDirectory: archiveDirectory)
        }
    }

    /// Ends a move before its switch: the target is dropped and the source keeps the tenant, its
    /// stream to unified as before (what the target had not passed on yet is handed back first).
    public func cancel(_ tenant: TenantID) async throws -> EndReport {
        try await TenantryTracing.phase("server-move.cancel", tenant: tenant) { _ in
            try await end(tenant, phase: .cancelled, archiveDirectory: nil)
        }
    }

    private func end(_ tenant: TenantID, phase: ServerMoveRecord.Phase, archiveDirectory: String?) async throws -> EndReport {
        try await exclusively(tenant, phase == .complete ? "move complete" : "move cancel") {
            try await endLocked(tenant, phase: phase, archiveDirectory: archiveDirectory)
        }
    }

    private func endLocked(_ tenant: TenantID, phase: ServerMoveRecord.Phase, archiveDirectory: String?) async throws -> EndReport {
        guard let move = try await catalog.activeServerMove(tenant) else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant) is not moving between servers", tenant: tenant.rawValue)
        }
        let allowed: [ServerMoveRecord.Phase] = phase == .complete ? [.switched] : [.starting, .moving]
        guard allowed.contains(move.phase) else {
            throw TenantryError(
                code: .conflict,
                message: phase == .complete
                    ? "the move of tenant \(tenant) is \(move.phase.rawValue): complete needs switched (tenantry move switch first)"
                    : "the move of tenant \(tenant) is switched: its writes go to \(move.targetServer); reverse it first "
                        + "(tenantry move reverse), then cancel", tenant: tenant.rawValue)
        }
        let action = phase == .complete ? "move-complete" : "move-cancel"
        do {
            let liveURL = try servers.adminURL(server: move.liveServer, database: move.liveDatabase)
            let followerURL = try servers.adminURL(server: move.followerServer, database: move.followerDatabase)
            // A switch or reverse that committed in the live database but did not finish leaves it
            // refusing writes: finish that first, or the database that matters would be dropped.
            let placed = try await catalog.requireTenant(tenant).serverName ?? ServerDirectory.defaultServerName
            if try await LinkState.read(liveURL, tenant: tenant, logger: logger)?.moved == true || placed != move.liveServer {
                let verb = move.phase == .switched ? "reverse" : "switch"
                throw TenantryError(
                    code: .conflict,
                    message: "a \(verb) of tenant \(tenant) committed but did not finish: run 'tenantry move \(verb) --tenant \(tenant)' "
                        + "again first; nothing changed", tenant: tenant.rawValue)
            }
            let handedOver = try await handOver(tenant, live: liveURL, follower: followerURL, move: move)
            let role = try await catalog.requireTenant(tenant).roleName
            let archive = try await dropDatabase(
                tenant, server: move.followerServer, database: move.followerDatabase, role: role, archiveDirectory: archiveDirectory)
            try await catalog.setServerMovePhase(move.id, from: move.phase, to: phase)
            try await relay.refresh()
            var detail = ["dropped": "\(move.followerServer)/\(move.followerDatabase)", "handed_over": "\(handedOver)"]
            if let archive { detail["archive"] = archive }
            try? await catalog.audit(actor: operations.actor, action: action, tenant: tenant, outcome: .ok, detail: detail)
            return EndReport(
                tenant: tenant, phase: phase, server: move.liveServer, droppedServer: move.followerServer,
                droppedDatabase: move.followerDatabase, archive: archive, handedOver: handedOver)
        } catch {
            try? await catalog.noteServerMoveError(move.id, Database.message(of: error))
            try? await catalog.audit(
                actor: operations.actor, action: action, tenant: tenant, outcome: .failed, detail: ["error": Database.message(of: error)])
            throw error
        }
    }

    /// Turns `live → follower → unified` into `live → unified` without a fence:
    /// 1. the live database's link stops (its stream waits, no consumer);
    /// 2. the follower's stream to unified stops (the follower takes no writes: its queue is final);
    /// 3. the follower's queue goes to the front of the live one (ids below every id there, in
    ///    order), in the transaction that names unified the live stream's consumer again and carries
    ///    the follower's pause (retirement) back.
    /// Each step is idempotent; the states in between tell a re-run where it stopped. Returns the
    /// changes handed over.
    private func handOver(_ tenant: TenantID, live liveURL: PostgresURL, follower followerURL: PostgresURL, move: ServerMoveRecord) async throws -> Int {
        let followerName = move.followerStreamName
        let liveState = try await LinkState.read(liveURL, tenant: tenant, logger: logger)
        guard let liveState else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant)'s database has no capture state", tenant: tenant.rawValue)
        }
        if liveState.forwardTo == nil { return 0 }  // handed over before (or never started)
        // A start that stopped before its hand-over ('starting') left the pause in the live
        // database; once the link ran, the follower's stream to unified holds it.
        let pauseInFollower = liveState.forwardTo != "starting"
        guard liveState.deadLetters == 0 else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) has \(liveState.deadLetters) dead letter(s) on its link between servers (tenantry dlq list): "
                    + "resolve them first; nothing changed", tenant: tenant.rawValue)
        }
        if liveState.forwardTo == followerName {
            try await LinkState.update(liveURL, tenant: tenant, logger: logger) { connection in
                try await connection.query(
                    "UPDATE tenantry.capture_state SET forward_to = 'stopped', updated_at = now() WHERE tenant_id = \(tenant.rawValue)",
                    logger: logger)
            }
        }
        try await faults.afterLinkStopped?()
        // The follower's queue: final once its stream stops (nothing writes the follower now).
        let followerState: LinkState?
        do {
            followerState = try await LinkState.update(followerURL, tenant: tenant, logger: logger) { connection in
                let installed = try await connection.query("SELECT to_regclass('tenantry.capture_state') IS NOT NULL", logger: logger)
                    .decode(Bool.self).first(where: { _ in true }) ?? false
                guard installed, let state = try await LinkState.read(on: connection, tenant: tenant, logger: logger) else { return nil }
                if state.forwardTo == nil {
                    try await connection.query(
                        "UPDATE tenantry.capture_state SET forward_to = 'handed-over', updated_at = now() WHERE tenant_id = \(tenant.rawValue)",
                        logger: logger)
                }
                return state
            }
        } catch where move.phase == .starting && Database.isConnectionFailure(error) == false {
            followerState = nil  // a start that failed before the target existed: nothing waits there
        }
        if let followerState, followerState.deadLetters > 0 {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) has \(followerState.deadLetters) dead letter(s) in its database on \(move.followerServer) "
                    + "(tenantry dlq list): resolve them first; the move stays as it is", tenant: tenant.rawValue)
        }
        try await faults.afterFollowerStopped?()
        let changes = followerState == nil ? [] : try await queue(followerURL, tenant: tenant)
        try await LinkState.update(liveURL, tenant: tenant, logger: logger) { connection in
            guard try await LinkState.read(on: connection, tenant: tenant, logger: logger)?.forwardTo != nil else { return }
            if !changes.isEmpty {
                let base = try await connection.query(
                    "SELECT least(coalesce(min(id), 1), 1)::int8 FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                    .decode(Int64.self).first(where: { _ in true }) ?? 1
                try await ChangeApplier.insertRecords(
                    changes, tenant: tenant, firstID: base - Int64(changes.count), on: connection, logger: logger)
            }
            // Unified is the consumer again: everything in the queue is applied there (no snapshot
            // of unified ever held a tenant database's change), the handed-over ones first.
            let pause = pauseInFollower ? followerState ?? liveState : liveState
            try await connection.query("""
                UPDATE tenantry.capture_state SET forward_to = NULL, snapshot = '1:1:'::pg_snapshot, sync_paused = \(pause.paused),
                    paused_reason = \(pause.pausedReason), pause_kind = \(pause.pauseKind), updated_at = now()
                WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
        }
        return changes.count
    }

    /// A tenant's whole stream in `url`'s database, in order.
    private func queue(_ url: PostgresURL, tenant: TenantID) async throws -> [CapturedChange] {
        try await Database.withConnection(url, logger: logger) { connection in
            var changes: [CapturedChange] = []
            let rows = try await connection.query("""
                SELECT id, table_name, op::text, old_key::text, row_data::text, captured_at
                FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue) ORDER BY id
                """, logger: logger)
            for try await (id, table, op, oldKey, row, captured) in rows.decode((Int64, String, String, String?, String?, Date).self) {
                changes.append(CapturedChange(
                    id: id, table: table, op: op.first ?? "U", oldKey: oldKey, row: row, inCopy: false, attempts: 0, capturedAt: captured))
            }
            return changes
        }
    }
}
