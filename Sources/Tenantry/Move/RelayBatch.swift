import Foundation
import Logging
import Metrics
import PostgresNIO
import TenantryCore
import Tracing

/// One relay batch: read a tenant's changes from its route's source, apply them to the target,
/// record what was applied, and the retry and dead-letter policy for a change that fails.
extension Relay {
    /// One batch of `route`'s stream, read in a transaction on `source` that holds the tenant's
    /// relay lock; the changes applied are deleted from the stream in that same transaction, after
    /// the target committed them. On an error the source transaction is rolled back (a broken
    /// connection is discarded by the pool, which ends it too).
    func batch(
        _ route: MoveRoute, source: PostgresConnection, inUse: ConnectionsInUse, waitForLock: Bool
    ) async throws -> StepOutcome {
        // READ COMMITTED whatever the login's default: the consumer gate must read the state as of
        // after the relay lock was granted, not a snapshot taken while waiting for it.
        try await source.query("BEGIN ISOLATION LEVEL READ COMMITTED", logger: logger)
        do {
            return try await batchInTransaction(route, source: source, inUse: inUse, waitForLock: waitForLock)
        } catch {
            if !Database.isConnectionFailure(error) { _ = try? await source.queryIfOpen("ROLLBACK", logger: logger) }
            throw error
        }
    }

    private func batchInTransaction(
        _ route: MoveRoute, source: PostgresConnection, inUse: ConnectionsInUse, waitForLock: Bool
    ) async throws -> StepOutcome {
        let tenant = route.tenant
        let lockKey = AdvisoryLock.tenant(tenant)
        if waitForLock {
            try await source.query("SELECT pg_advisory_xact_lock(\(AdvisoryLock.relayNamespace), \(lockKey))", logger: logger)
        } else {
            let locked = try await source.query(
                "SELECT pg_try_advisory_xact_lock(\(AdvisoryLock.relayNamespace), \(lockKey))", logger: logger)
                .decode(Bool.self).first(where: { _ in true }) ?? false
            guard locked else {
                try await source.query("ROLLBACK", logger: logger)
                return .busy
            }
        }
        var snapshot: String?
        var paused = false
        var consumer: String?
        // forward_to through to_jsonb: a capture install older than the column still relays.
        for try await (value, isPaused, forwardTo) in try await source.query("""
            SELECT snapshot::text, sync_paused, to_jsonb(s) ->> 'forward_to' FROM tenantry.capture_state s
            WHERE tenant_id = \(tenant.rawValue)
            """, logger: logger).decode((String?, Bool, String?).self) {
            snapshot = value
            paused = isPaused
            consumer = forwardTo
        }
        // The stream has one consumer at a time (server moves): a batch for another does nothing.
        guard let snapshot, consumer == route.source.forwardTo else {
            try await source.query("COMMIT", logger: logger)
            return .notReady
        }
        if paused {
            try await source.query("COMMIT", logger: logger)
            return .paused
        }
        var changes: [CapturedChange] = []
        var oldestCapture: Date?
        for try await (id, table, op, oldKey, row, inCopy, attempts, captured) in try await source.query("""
            SELECT id, table_name, op::text, old_key::text, row_data::text,
                   pg_visible_in_snapshot(xid, \(snapshot)::pg_snapshot), attempts, captured_at
            FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue) ORDER BY id LIMIT \(configuration.batchSize)
            """, logger: logger).decode((Int64, String, String, String?, String?, Bool, Int, Date).self) {
            changes.append(CapturedChange(
                id: id, table: table, op: op.first ?? "U", oldKey: oldKey, row: row, inCopy: inCopy, attempts: attempts,
                capturedAt: captured))
            oldestCapture = min(oldestCapture ?? captured, captured)
        }
        guard !changes.isEmpty else {
            try await source.query("COMMIT", logger: logger)
            resetStream(tenant)
            return .idle
        }
        let (done, failure) = try await TenantryTracing.withSpan("relay.batch", tenant: tenant) { span in
            span?.attributes[TenantryTracing.Key.direction] = route.isServerLink ? "server-move" : route.isReverse ? "reverse" : "forward"
            span?.attributes[TenantryTracing.Key.changes] = changes.count
            let (done, failure) = try await apply(changes, route: route, inUse: inUse)
            span?.attributes["tenantry.relay.applied"] = done.count
            if let failure { span?.attributes["tenantry.relay.failed_change"] = failure.change.id }
            return (done, failure)
        }
        if !done.isEmpty {
            try await source.query(
                "DELETE FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue) AND id = ANY(\(done.map(\.id)))", logger: logger)
        }
        var outcome = StepOutcome.applied(done.count)
        if let failure {
            outcome = try await recordFailure(failure, route: route, on: source, inUse: inUse)
        }
        try await source.query("COMMIT", logger: logger)
        state.withLockedValue { state in
            for change in done {
                if change.inCopy {
                    state.statistics.skipped += 1
                } else {
                    state.statistics.applied += 1
                    state.statistics.appliedPerTable[change.table, default: 0] += 1
                }
            }
        }
        var perTable: [String: Int] = [:]
        for change in done where !change.inCopy { perTable[change.table, default: 0] += 1 }
        for (table, count) in perTable {
            Counter(label: MetricName.applied, dimensions: [("table", table)]).increment(by: count)
        }
        if let oldest = oldestCapture, !done.isEmpty {
            Timer(label: MetricName.lag).recordNanoseconds(Int64(max(0, Date().timeIntervalSince(oldest)) * 1e9))
        }
        if failure == nil { resetStream(tenant) }
        if case .applied(0) = outcome { return .waiting }
        return outcome
    }

    /// Applies a batch in one transaction on the route's target; on a data error, re-applies it
    /// change by change (savepoints) to commit everything before the failing change. Returns the
    /// changes done and the first failure.
    private func apply(
        _ changes: [CapturedChange], route: MoveRoute, inUse: ConnectionsInUse
    ) async throws -> ([CapturedChange], Failure?) {
        logger.trace("relay: applying", metadata: [
            "tenant": "\(route.tenant)", "changes": "\(changes.count)", "reverse": "\(route.isReverse)"])
        let applier = ChangeApplier(plan: plan, target: route.target, logger: logger)
        let recording = route.target.recordsChanges
        return try await connections.withConnection(route.target, tenant: route.tenant, tracking: inUse) { destination in
            let applied = try await Database.withTransaction(destination, logger: logger) { connection in
                try await prepare(connection, recording: recording)
                do {
                    if recording {
                        try await applier.applyRecording(changes, tenant: route.tenant, grouped: true, on: connection)
                    } else {
                        try await applier.applyGrouped(changes, on: connection)
                    }
                    return true
                } catch {
                    if Database.isConnectionFailure(error) { throw error }
                    return false
                }
            }
            if applied { return (changes, nil) }
            let result = try await Database.withTransaction(destination, logger: logger) { connection in
                try await prepare(connection, recording: recording)
                var done: [CapturedChange] = []
                for change in changes {
                    if change.inCopy {
                        if recording { try await applier.forward([change], tenant: route.tenant, on: connection) }
                        done.append(change)
                        continue
                    }
                    try await connection.query("SAVEPOINT tenantry_change", logger: logger)
                    do {
                        try await applier.apply(change, on: connection)
                        try await connection.query("RELEASE SAVEPOINT tenantry_change", logger: logger)
                        done.append(change)
                    } catch {
                        if Database.isConnectionFailure(error) { throw error }
                        try await connection.query("ROLLBACK TO SAVEPOINT tenantry_change", logger: logger)
                        let permanent = (error as? TenantryError)?.code == .crossTenantChange
                        return (done, Failure?.some(Failure(change: change, message: Database.message(of: error), permanent: permanent)))
                    }
                }
                // Each change applied alone: only the deferred constraints at COMMIT can fail.
                return (done, Failure?.none)
            }
            return result
        }
    }

    /// Deferred constraints, and capture skipped — or, into a target that records what it applies
    /// (a server move's follower), captured with the moved guard passed.
    private func prepare(_ connection: PostgresConnection, recording: Bool) async throws {
        try await connection.query("SET CONSTRAINTS ALL DEFERRED", logger: logger)
        if recording {
            try await connection.query("SET LOCAL tenantry.applying = 'relay'", logger: logger)
        } else {
            try await connection.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
        }
    }

    /// The first change of a batch that failed to apply.
    private struct Failure: Sendable {
        var change: CapturedChange
        var message: String
        /// A failure no retry can mend (a change that would touch another tenant's row).
        var permanent: Bool
    }

    /// The dead-letter and retry policy. Counts a failed attempt: schedules the retry (after each
    /// of ``Configuration/retryDelays``), or moves the change to the dead letters and pauses the
    /// tenant when the retries are spent (at once for a permanent failure). `source` holds the
    /// stream (the route's source, in the batch's open transaction).
    private func recordFailure(
        _ failure: Failure, route: MoveRoute, on source: PostgresConnection, inUse: ConnectionsInUse
    ) async throws -> StepOutcome {
        let (change, message, tenant) = (failure.change, failure.message, route.tenant)
        let attempts = change.attempts + 1
        if failure.permanent || attempts > configuration.retryDelays.count {
            let reason = "\(route.isReverse ? "reverse " : "")dead letter \(change.id) (\(change.table)): \(message)"
            if route.isReverse {
                // The stream lives in the tenant database; the unified database (the route's
                // target) gets a copy of the letter and the pause first (status, dlq, rollback and
                // retirement read them there). A crash before the source commits leaves the change
                // in its stream: it fails again and the copy is written again (idempotent).
                try await mirrorReverseDeadLetter(
                    change, attempts: attempts, message: message, reason: reason, route: route, inUse: inUse)
            }
            try await source.query("""
                INSERT INTO tenantry.dead_letters (id, tenant_id, table_name, op, old_key, row_data, xid, captured_at, attempts, error)
                SELECT id, tenant_id, table_name, op, old_key, row_data, xid, captured_at, \(attempts), \(message)
                FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue) AND id = \(change.id)
                ON CONFLICT DO NOTHING
                """, logger: logger)
            try await source.query(
                "DELETE FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue) AND id = \(change.id)", logger: logger)
            try await source.query("""
                UPDATE tenantry.capture_state SET sync_paused = true, paused_reason = \(reason),
                    pause_kind = \(PauseKind.deadLetter.rawValue), updated_at = now()
                WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
            logger.error("relay: change dead-lettered; tenant paused", metadata: [
                LogMetadataKey.tenant: "\(tenant)", "change": "\(change.id)", "table": "\(change.table)", "error": "\(message)"])
            state.withLockedValue { state in
                state.statistics.deadLettered += 1
                state.statistics.failedPerTable[change.table, default: 0] += 1
                state.statistics.deadLetteredPerTable[change.table, default: 0] += 1
                state.streams[tenant] = Stream(lastError: message)
            }
            Counter(label: MetricName.failed, dimensions: [("table", change.table)]).increment()
            Counter(label: MetricName.deadLettered, dimensions: [("table", change.table)]).increment()
            return .paused
        }
        try await source.query("""
            UPDATE tenantry.changes SET attempts = \(attempts), last_error = \(message)
            WHERE tenant_id = \(tenant.rawValue) AND id = \(change.id)
            """, logger: logger)
        let delay = configuration.retryDelays[attempts - 1]
        logger.warning("relay: change failed; retrying", metadata: [
            LogMetadataKey.tenant: "\(tenant)", "change": "\(change.id)", "attempt": "\(attempts)", "retryIn": "\(delay)", "error": "\(message)"])
        state.withLockedValue { state in
            state.statistics.retried += 1
            state.statistics.failedPerTable[change.table, default: 0] += 1
            state.streams[tenant] = Stream(nextAttempt: .now + delay, lastError: message)
        }
        Counter(label: MetricName.failed, dimensions: [("table", change.table)]).increment()
        return .waiting
    }

    /// Copies a reverse-sync dead letter (read from the tenant database) into the unified
    /// database's dead letters (the route's target), direction `reverse`, and pauses the tenant
    /// there too.
    private func mirrorReverseDeadLetter(
        _ change: CapturedChange, attempts: Int, message: String, reason: String, route: MoveRoute, inUse: ConnectionsInUse
    ) async throws {
        let tenant = route.tenant
        try await connections.withConnection(route.target, tenant: tenant, tracking: inUse) { unified in
            try await Database.withTransaction(unified, logger: logger) { unified in
                try await unified.query("""
                    INSERT INTO tenantry.dead_letters
                        (id, tenant_id, table_name, op, old_key, row_data, xid, captured_at, attempts, error, direction)
                    VALUES (\(change.id), \(tenant.rawValue), \(change.table), \(String(change.op)), \(change.oldKey)::jsonb,
                            \(change.row)::jsonb, pg_current_xact_id(), \(change.capturedAt), \(attempts), \(message), 'reverse')
                    ON CONFLICT (tenant_id, direction, id) DO UPDATE SET attempts = EXCLUDED.attempts, error = EXCLUDED.error
                    """, logger: logger)
                try await unified.query("""
                    UPDATE tenantry.capture_state SET sync_paused = true, paused_reason = \(reason),
                        pause_kind = \(PauseKind.reverseDeadLetter.rawValue), updated_at = now()
                    WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
            }
        }
    }
}
