import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension ServerMoves {
    /// Every active move (with `tenant`: its latest move, active or ended), with what waits in each
    /// database's stream. A database that cannot be reached leaves its figures nil.
    public func status(_ tenant: TenantID? = nil) async throws -> [Status] {
        var moves: [ServerMoveRecord]
        if let tenant {
            _ = try await catalog.requireTenant(tenant)
            moves = try await catalog.latestServerMove(tenant).map { [$0] } ?? []
        } else {
            moves = try await catalog.activeServerMoves()
        }
        var result: [Status] = []
        for move in moves {
            var status = Status(
                tenant: move.tenant, phase: move.phase, sourceServer: move.sourceServer, sourceDatabase: move.sourceDatabase,
                targetServer: move.targetServer, targetDatabase: move.targetDatabase, liveServer: move.liveServer,
                rowsCopied: move.rowsCopied, queueDepth: nil, lagSeconds: nil, unifiedQueueDepth: nil, deadLetters: nil,
                lastPauseMilliseconds: move.lastPauseMilliseconds, switches: move.switches, reason: move.reason,
                lastError: move.lastError, startedAt: move.startedAt)
            if move.phase.isActive {
                // nil: not reachable; .some(nil): reachable, no state.
                func read(_ server: String, _ database: String) async -> LinkState?? {
                    do {
                        return .some(try await LinkState.read(
                            try servers.adminURL(server: server, database: database), tenant: move.tenant, logger: logger))
                    } catch {
                        return nil
                    }
                }
                let live = await read(move.liveServer, move.liveDatabase)
                let follower = await read(move.followerServer, move.followerDatabase)
                status.queueDepth = live.map { $0?.waiting ?? 0 }
                status.lagSeconds = live.map { $0?.oldestSeconds ?? 0 }
                status.unifiedQueueDepth = follower.map { $0?.waiting ?? 0 }
                if let live, let follower { status.deadLetters = (live?.deadLetters ?? 0) + (follower?.deadLetters ?? 0) }
            }
            result.append(status)
        }
        return result
    }

    /// Compares `tenant`'s rows in its two databases (source and target, chunk checksums, differing
    /// rows named); differences are re-checked after the link drains, so changes in flight are not
    /// reported. In the report, `unifiedRows` are the live database's rows and `tenantRows` the
    /// other's.
    public func verify(_ tenant: TenantID, chunkSize: Int = 10_000) async throws -> Verifier.Report {
        guard let move = try await catalog.activeServerMove(tenant), move.phase != .starting else {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) has no server move past its copy to verify (tenantry move status)",
                tenant: tenant.rawValue)
        }
        let live = try servers.adminURL(server: move.liveServer, database: move.liveDatabase)
        let follower = try servers.adminURL(server: move.followerServer, database: move.followerDatabase)
        try await relay.refresh()
        let relay = relay
        return try await Verifier(plan: plan, chunkSize: chunkSize, logger: logger).verify(
            tenant, source: .dedicated(live), target: .dedicated(follower),
            settle: { _ = await relay.drain(tenant, budget: .seconds(30), legs: .serverLink) })
    }

    /// Waits until everything written to `tenant`'s live database before the call is applied in
    /// the other one (the relay applies it meanwhile; writes go on); throws
    /// ``TenantryError/Code/timeout`` after `timeout`, and a conflict when a dead letter pauses the link.
    public func catchUp(_ tenant: TenantID, timeout: Duration = .seconds(300)) async throws {
        guard let move = try await catalog.activeServerMove(tenant), move.phase == .moving || move.phase == .switched else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant) has no server move to catch up", tenant: tenant.rawValue)
        }
        let live = try servers.adminURL(server: move.liveServer, database: move.liveDatabase)
        try await relay.refresh()
        let deadline = ContinuousClock.now + timeout
        let logger = logger
        try await Database.withConnection(live, logger: logger) { connection in
            // The mark: the newest change now; later ones are not waited for (the load goes on).
            let mark = try await connection.query(
                "SELECT coalesce(max(id), 0)::int8 FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue)", logger: logger)
                .decode(Int64.self).first(where: { _ in true }) ?? 0
            while true {
                await relay.drain(tenant, budget: .seconds(5), legs: .serverLink)
                let rows = try await connection.query("""
                    SELECT (SELECT count(*)::int FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue) AND id <= \(mark)),
                           (SELECT count(*)::int FROM tenantry.dead_letters WHERE tenant_id = \(tenant.rawValue))
                    """, logger: logger)
                var (waiting, dead) = (0, 0)
                for try await (count, letters) in rows.decode((Int, Int).self) { (waiting, dead) = (count, letters) }
                if waiting == 0 { return }
                if dead > 0 {
                    throw TenantryError(
                        code: .conflict,
                        message: "the link of tenant \(tenant) is paused by \(dead) dead letter(s) in its database on \(move.liveServer) "
                            + "(tenantry move status)", tenant: tenant.rawValue)
                }
                guard ContinuousClock.now < deadline else {
                    throw TenantryError(
                        code: .timeout,
                        message: "tenant \(tenant)'s target did not catch up within \(timeout): \(waiting) change(s) still waiting",
                        tenant: tenant.rawValue)
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}
