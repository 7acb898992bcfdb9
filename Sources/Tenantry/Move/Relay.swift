import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import PostgresNIO
import ServiceLifecycle
import TenantryCore

/// The sync relay (step 3 of a move; the seeds' DualWriteProxy): applies each syncing tenant's
/// captured changes to its tenant database, in capture order, skipping those the copy snapshot
/// already saw.
///
/// Guarantees:
/// - **nothing is dropped**: a change leaves `tenantry.changes` only in the same unified-side
///   transaction that records it applied (after the tenant-side commit) or moves it to
///   `tenantry.dead_letters`; a crash in between re-applies it, and applying is idempotent;
/// - **per-tenant order**: one relay at a time per tenant (an advisory lock in the unified
///   database), batches in id order; a failing change stops its tenant's stream until it applies;
/// - **retries**: a change that fails is retried after each of ``Configuration/retryDelays``
///   (1 s, 2 s, 4 s), then dead-lettered and its tenant paused; the others go on. A connection
///   failure is not the change's fault: it is retried with backoff for as long as it takes.
public final class Relay: Sendable {
    /// Relay settings.
    public struct Configuration: Sendable {
        /// Changes read and applied per tenant-side transaction.
        public var batchSize = 1_000
        /// Waits before each retry of a failing change; after the last, it becomes a dead letter.
        public var retryDelays: [Duration] = [.seconds(1), .seconds(2), .seconds(4)]
        /// How often an idle relay looks for new changes.
        public var pollInterval: Duration = .milliseconds(50)
        /// The longest wait between reconnect attempts.
        public var maxBackoff: Duration = .seconds(5)
        /// Tenants drained at once.
        public var concurrency = 8
        /// Tenant-database connections kept open between batches.
        public var cachedConnections = 32
        /// The longest one batch may take (read, apply, record); past it, its connections are
        /// abandoned and the batch is retried like a connection failure.
        public var batchTimeout: Duration = .seconds(60)
        /// How often a dedicated tenant's id blocks are checked, and extended when a quarter or
        /// less of a block is left.
        public var idBlockCheckInterval: Duration = .seconds(5)
        /// Creates the defaults.
        public init() {}
    }

    /// Counters since the relay started.
    public struct Statistics: Sendable, Codable, Equatable {
        /// Changes applied to tenant databases.
        public var applied = 0
        /// Changes skipped because the copy snapshot had them.
        public var skipped = 0
        /// Failed applies that will be retried.
        public var retried = 0
        /// Changes moved to the dead letter queue.
        public var deadLettered = 0
        /// Connection failures (retried with backoff).
        public var connectionFailures = 0
        /// Applied changes per table.
        public var appliedPerTable: [String: Int] = [:]
        /// Failed applies per table (retried or dead-lettered).
        public var failedPerTable: [String: Int] = [:]
        /// Dead letters per table.
        public var deadLetteredPerTable: [String: Int] = [:]
    }

    /// The swift-metrics names the relay reports under (dimension `table`).
    public enum MetricName {
        /// Changes applied to tenant databases.
        public static let applied = "tenantry_relay_applied_total"
        /// Failed applies (each retry counts).
        public static let failed = "tenantry_relay_failed_total"
        /// Changes moved to the dead letter queue.
        public static let deadLettered = "tenantry_relay_dead_letters_total"
        /// Connection failures, retried with backoff.
        public static let connectionFailures = "tenantry_relay_connection_failures_total"
        /// Seconds between a change's capture and its apply (dimension `tenant` omitted: unbounded).
        public static let lag = "tenantry_relay_lag_seconds"
    }

    /// What one pass over a tenant's stream found.
    public enum StepOutcome: Sendable, Equatable {
        /// Nothing waits.
        case idle
        /// `count` changes applied (or skipped); more may wait.
        case applied(Int)
        /// Another relay is applying this tenant's changes.
        case busy
        /// A failing change waits for its retry time.
        case waiting
        /// The stream is paused (a dead letter, or `dual-write disable`).
        case paused
        /// The tenant has no copy snapshot yet (not copied).
        case notReady
        /// A connection failed; retried after a backoff.
        case unreachable(String)
    }

    let configuration: Configuration
    let catalog: Catalog
    let servers: ServerDirectory
    let unifiedURL: PostgresURL
    let plan: MovePlan
    let applier: ChangeApplier
    let logger: Logger
    private let state = NIOLockedValueBox(State())

    private struct Stream {
        var nextAttempt: ContinuousClock.Instant?
        var backoff: Duration = .zero
        var lastError: String?
    }

    private struct State {
        var streams: [TenantID: Stream] = [:]
        var unifiedConnections: [PostgresConnection] = []
        var destinations: [TenantID: PostgresConnection] = [:]
        var destinationOrder: [TenantID] = []
        var statistics = Statistics()
        /// Dedicated tenants: their tenant database's changes flow back to unified.
        var reverse: Set<TenantID> = []
        /// When each dedicated tenant's id blocks were last checked.
        var blockChecks: [TenantID: ContinuousClock.Instant] = [:]
    }

    /// Creates a relay. `unifiedURL` is the unified database (where `tenantry.changes` lives);
    /// tenant databases are reached with the admin logins of `servers`.
    public init(configuration: Configuration = Configuration(), catalog: Catalog, servers: ServerDirectory,
                unifiedURL: PostgresURL, plan: MovePlan, logger: Logger) {
        self.configuration = configuration
        self.catalog = catalog
        self.servers = servers
        self.unifiedURL = unifiedURL
        self.plan = plan
        self.applier = ChangeApplier(plan: plan, logger: logger)
        self.logger = logger
    }

    /// Counters since the relay started.
    public var statistics: Statistics { state.withLockedValue { $0.statistics } }

    /// The phases whose changes the relay applies.
    public static let syncingPhases: [MovePhase] = [.syncing, .readsSwitched]
    /// The phases whose tenant-database changes the relay applies back to unified (reverse sync).
    public static let reversePhases: [MovePhase] = [.dedicated]

    // MARK: - Driving

    /// Runs until cancelled or shut down gracefully: every syncing tenant's stream is applied as
    /// changes arrive.
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let tenants = (try? await self.refreshDirections()) ?? []
                let outcomes = await self.pass(tenants)
                if !outcomes.values.contains(where: { if case .applied = $0 { return true } else { return false } }) {
                    try? await Task.sleep(for: self.configuration.pollInterval)
                }
            }
        }
        await close()
    }

    /// What ``catchUp(_:timeout:)`` found.
    public struct CatchUpReport: Sendable, Codable, Equatable {
        /// Changes applied during the call.
        public var applied: Int
        /// Tenants whose stream is paused (dead letters or `dual-write disable`), with why.
        public var paused: [String: String]
        /// Tenants drained.
        public var tenants: [TenantID]
    }

    /// Applies everything captured so far for `tenants` (default: every syncing tenant), waiting
    /// out retries and reconnects, and returns when each stream is empty or paused. Throws
    /// ``TenantryError/Code/timeout`` naming the tenants still behind after `timeout`.
    public func catchUp(_ tenants: [TenantID]? = nil, timeout: Duration = .seconds(300)) async throws -> CatchUpReport {
        let deadline = ContinuousClock.now + timeout
        let before = statistics.applied + statistics.skipped
        let all = try await refreshDirections()
        let ids = tenants ?? all
        var behind = ids
        var paused: [TenantID] = []
        while !behind.isEmpty {
            let outcomes = await pass(behind)
            paused += outcomes.filter { $0.value == .paused }.map(\.key)
            behind = outcomes.filter { outcome in
                switch outcome.value {
                case .idle, .notReady, .paused: return false
                default: return true
                }
            }.map(\.key).sorted()
            guard !behind.isEmpty else { break }
            if ContinuousClock.now >= deadline {
                let reasons = behind.prefix(5).map { tenant in
                    "\(tenant)\(state.withLockedValue { $0.streams[tenant]?.lastError }.map { " (\($0))" } ?? "")"
                }
                throw TenantryError(
                    code: .timeout,
                    message: "the relay did not catch up within \(timeout): \(behind.count) tenant(s) still have changes waiting: "
                        + reasons.joined(separator: ", "))
            }
            if !outcomes.values.contains(where: { if case .applied = $0 { return true } else { return false } }) {
                try await Task.sleep(for: configuration.pollInterval)
            }
        }
        var reasons: [String: String] = [:]
        if !paused.isEmpty {
            let states = try await Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, logger: logger).states(paused)
            for state in states { reasons[state.tenant.rawValue] = state.pausedReason ?? "paused" }
        }
        let after = statistics.applied + statistics.skipped
        return CatchUpReport(applied: after - before, paused: reasons, tenants: ids)
    }

    /// Applies `tenant`'s waiting changes now (used right after a routed write commits, so a read
    /// switched to the tenant database sees it). Waits for another relay holding the stream.
    /// Failures are left to the background relay's retries; returns the changes applied.
    /// With `budget`, stops after that long even if writes keep coming.
    @discardableResult
    public func drain(_ tenant: TenantID, budget: Duration? = nil) async -> Int {
        let deadline = budget.map { ContinuousClock.now + $0 }
        var total = 0
        while true {
            switch await step(tenant, waitForLock: true) {
            case .applied(let count):
                total += count
                if let deadline, ContinuousClock.now >= deadline { return total }
            default: return total
            }
        }
    }

    /// Learns which tenants are dedicated (their streams flow back to unified).
    func refresh() async throws { _ = try await refreshDirections() }

    /// The tenants with a stream: syncing ones (forward) and dedicated ones (reverse sync).
    private func refreshDirections() async throws -> [TenantID] {
        let forward = try await catalog.tenants(inPhases: Self.syncingPhases)
        let reverse = try await catalog.tenants(inPhases: Self.reversePhases)
        state.withLockedValue { $0.reverse = Set(reverse) }
        return forward + reverse
    }

    /// One pass: up to a few batches per tenant, `concurrency` tenants at a time.
    private func pass(_ tenants: [TenantID]) async -> [TenantID: StepOutcome] {
        await withTaskGroup(of: (TenantID, StepOutcome).self) { group in
            var outcomes: [TenantID: StepOutcome] = [:]
            var iterator = tenants.makeIterator()
            func next() -> Bool {
                guard let tenant = iterator.next() else { return false }
                group.addTask {
                    var last = StepOutcome.idle
                    for _ in 0..<8 {
                        last = await self.step(tenant, waitForLock: false)
                        guard case .applied = last else { break }
                    }
                    return (tenant, last)
                }
                return true
            }
            for _ in 0..<max(1, configuration.concurrency) where next() {}
            while let (tenant, outcome) = await group.next() {
                outcomes[tenant] = outcome
                _ = next()
            }
            return outcomes
        }
    }

    // MARK: - One batch

    /// Applies one batch of `tenant`'s changes.
    func step(_ tenant: TenantID, waitForLock: Bool) async -> StepOutcome {
        if let next = state.withLockedValue({ $0.streams[tenant]?.nextAttempt }), next > .now {
            return .waiting
        }
        let reverse = state.withLockedValue { $0.reverse.contains(tenant) }
        // The stream lives where the writes happen: unified (forward) or the tenant database (reverse).
        let source: PostgresConnection
        do {
            source = reverse ? try await checkoutDestination(tenant) : try await checkoutUnified()
        } catch {
            return unreachable(tenant, error)
        }
        do {
            let outcome = try await withDeadline(configuration.batchTimeout, "a relay batch for tenant \(tenant)") {
                let outcome = try await self.step(tenant, unified: source, waitForLock: waitForLock, reverse: reverse)
                if reverse { await self.maintainIdBlocks(tenant, tenantDatabase: source) }
                return outcome
            }
            if reverse { checkinDestination(tenant, source) } else { checkinUnified(source) }
            return outcome
        } catch let error as TenantryError where error.code == .timeout {
            // A connection is stuck: abandon it (closing ends the source transaction and its lock).
            dropDestination(tenant)
            Task { try? await source.close() }
            return unreachable(tenant, error)
        } catch {
            _ = try? await source.query("ROLLBACK", logger: logger)
            if Database.isConnectionFailure(error) {
                try? await source.close()
                return unreachable(tenant, error)
            }
            if reverse { checkinDestination(tenant, source) } else { checkinUnified(source) }
            logger.error("relay step failed", metadata: ["tenant": "\(tenant)", "error": "\(Database.message(of: error))"])
            return unreachable(tenant, error)
        }
    }

    private func step(_ tenant: TenantID, unified: PostgresConnection, waitForLock: Bool, reverse: Bool) async throws -> StepOutcome {
        try await unified.query("BEGIN", logger: logger)
        let lockKey = AdvisoryLock.tenant(tenant)
        if waitForLock {
            try await unified.query("SELECT pg_advisory_xact_lock(\(AdvisoryLock.relayNamespace), \(lockKey))", logger: logger)
        } else {
            let locked = try await unified.query(
                "SELECT pg_try_advisory_xact_lock(\(AdvisoryLock.relayNamespace), \(lockKey))", logger: logger)
                .decode(Bool.self).first(where: { _ in true }) ?? false
            guard locked else {
                try await unified.query("ROLLBACK", logger: logger)
                return .busy
            }
        }
        var snapshot: String?
        var paused = false
        for try await (value, isPaused) in try await unified.query("""
            SELECT snapshot::text, sync_paused FROM tenantry.capture_state WHERE tenant_id = \(tenant.rawValue)
            """, logger: logger).decode((String?, Bool).self) {
            snapshot = value
            paused = isPaused
        }
        guard let snapshot else {
            try await unified.query("COMMIT", logger: logger)
            return .notReady
        }
        if paused {
            try await unified.query("COMMIT", logger: logger)
            return .paused
        }
        var changes: [CapturedChange] = []
        var oldestCapture: Date?
        for try await (id, table, op, oldKey, row, inCopy, attempts, captured) in try await unified.query("""
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
            try await unified.query("COMMIT", logger: logger)
            resetStream(tenant)
            return .idle
        }
        let (done, failure) = try await applyBatch(changes, tenant: tenant, reverse: reverse)
        if !done.isEmpty {
            try await unified.query(
                "DELETE FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue) AND id = ANY(\(done.map(\.id)))", logger: logger)
        }
        var outcome = StepOutcome.applied(done.count)
        if let failure {
            outcome = try await recordFailure(
                failure.change, message: failure.message, permanent: failure.permanent, tenant: tenant, on: unified,
                reverse: reverse)
        }
        try await unified.query("COMMIT", logger: logger)
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

    /// Applies a batch in one tenant-side transaction; on a data error, re-applies it change by
    /// change (savepoints) to commit everything before the failing change. Returns the changes
    /// done and the first failure.
    private func applyBatch(
        _ changes: [CapturedChange], tenant: TenantID, reverse: Bool
    ) async throws -> ([CapturedChange], Failure?) {
        logger.trace("relay: applying", metadata: ["tenant": "\(tenant)", "changes": "\(changes.count)", "reverse": "\(reverse)"])
        let destination = reverse ? try await checkoutUnified() : try await checkoutDestination(tenant)
        let applier = reverse ? ChangeApplier(plan: plan, logger: logger, reverseTenant: tenant) : self.applier
        func checkin() {
            if reverse { checkinUnified(destination) } else { checkinDestination(tenant, destination) }
        }
        do {
            let applied = try await Database.withTransaction(destination, logger: logger) { connection in
                try await prepare(connection)
                do {
                    try await applier.applyGrouped(changes, on: connection)
                    return true
                } catch {
                    if Database.isConnectionFailure(error) { throw error }
                    return false
                }
            }
            if applied {
                checkin()
                return (changes, nil)
            }
            let result = try await Database.withTransaction(destination, logger: logger) { connection in
                try await prepare(connection)
                var done: [CapturedChange] = []
                for change in changes {
                    if change.inCopy { done.append(change); continue }
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
            checkin()
            return result
        } catch {
            try? await destination.close()
            throw error
        }
    }

    private func prepare(_ connection: PostgresConnection) async throws {
        try await connection.query("SET CONSTRAINTS ALL DEFERRED", logger: logger)
        try await connection.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
    }

    /// The first change of a batch that failed to apply.
    private struct Failure: Sendable {
        var change: CapturedChange
        var message: String
        /// A failure no retry can mend (a change that would touch another tenant's row).
        var permanent: Bool
    }

    /// Counts a failed attempt: schedules the retry, or moves the change to the dead letters and
    /// pauses the tenant when the retries are spent (at once for a permanent failure). `source` is
    /// the database the stream comes from: unified (forward) or the tenant database (reverse).
    private func recordFailure(
        _ change: CapturedChange, message: String, permanent: Bool, tenant: TenantID, on source: PostgresConnection,
        reverse: Bool
    ) async throws -> StepOutcome {
        let attempts = change.attempts + 1
        if permanent || attempts > configuration.retryDelays.count {
            let reason = "\(reverse ? "reverse " : "")dead letter \(change.id) (\(change.table)): \(message)"
            if reverse {
                // The stream lives in the tenant database; the unified database gets a copy of the
                // letter and the pause first (status, dlq, rollback and retirement read them there).
                // A crash before the source commits leaves the change in its stream: it fails again
                // and the copy is written again (idempotent).
                try await mirrorReverseDeadLetter(change, attempts: attempts, message: message, reason: reason, tenant: tenant)
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
                UPDATE tenantry.capture_state SET sync_paused = true, paused_reason = \(reason), updated_at = now()
                WHERE tenant_id = \(tenant.rawValue)
                """, logger: logger)
            logger.error("relay: change dead-lettered; tenant paused", metadata: [
                "tenant": "\(tenant)", "change": "\(change.id)", "table": "\(change.table)", "error": "\(message)"])
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
            "tenant": "\(tenant)", "change": "\(change.id)", "attempt": "\(attempts)", "retryIn": "\(delay)", "error": "\(message)"])
        state.withLockedValue { state in
            state.statistics.retried += 1
            state.statistics.failedPerTable[change.table, default: 0] += 1
            state.streams[tenant] = Stream(nextAttempt: .now + delay, lastError: message)
        }
        Counter(label: MetricName.failed, dimensions: [("table", change.table)]).increment()
        return .waiting
    }

    /// Copies a reverse-sync dead letter (read from the tenant database) into the unified
    /// database's dead letters, direction `reverse`, and pauses the tenant there too.
    private func mirrorReverseDeadLetter(
        _ change: CapturedChange, attempts: Int, message: String, reason: String, tenant: TenantID
    ) async throws {
        let unified = try await checkoutUnified()
        do {
            try await Database.withTransaction(unified, logger: logger) { unified in
                try await unified.query("""
                    INSERT INTO tenantry.dead_letters
                        (id, tenant_id, table_name, op, old_key, row_data, xid, captured_at, attempts, error, direction)
                    VALUES (\(change.id), \(tenant.rawValue), \(change.table), \(String(change.op)), \(change.oldKey)::jsonb,
                            \(change.row)::jsonb, pg_current_xact_id(), \(change.capturedAt), \(attempts), \(message), 'reverse')
                    ON CONFLICT (tenant_id, direction, id) DO UPDATE SET attempts = EXCLUDED.attempts, error = EXCLUDED.error
                    """, logger: logger)
                try await unified.query("""
                    UPDATE tenantry.capture_state SET sync_paused = true, paused_reason = \(reason), updated_at = now()
                    WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
            }
            checkinUnified(unified)
        } catch {
            try? await unified.close()
            throw error
        }
    }

    private func unreachable(_ tenant: TenantID, _ error: any Error) -> StepOutcome {
        let message = Database.message(of: error)
        state.withLockedValue { state in
            var stream = state.streams[tenant] ?? Stream()
            stream.backoff = min(max(stream.backoff * 2, .milliseconds(100)), configuration.maxBackoff)
            stream.nextAttempt = .now + stream.backoff
            stream.lastError = message
            state.streams[tenant] = stream
            state.statistics.connectionFailures += 1
        }
        Counter(label: MetricName.connectionFailures).increment()
        logger.warning("relay: cannot reach a database; retrying", metadata: ["tenant": "\(tenant)", "error": "\(message)"])
        return .unreachable(message)
    }

    /// Whether `tenant`'s id blocks are due for a check (at most every ``Configuration/idBlockCheckInterval``); marks it checked.
    func takeBlockCheck(_ tenant: TenantID) -> Bool {
        state.withLockedValue { state in
            if let last = state.blockChecks[tenant], ContinuousClock.now - last < configuration.idBlockCheckInterval { return false }
            state.blockChecks[tenant] = .now
            return true
        }
    }

    private func resetStream(_ tenant: TenantID) {
        state.withLockedValue { _ = $0.streams.removeValue(forKey: tenant) }
    }

    // MARK: - Connections

    func checkoutUnified() async throws -> PostgresConnection {
        if let connection = state.withLockedValue({ $0.unifiedConnections.popLast() }), !connection.isClosed {
            return connection
        }
        return try await Database.connect(unifiedURL, logger: logger)
    }

    func checkinUnified(_ connection: PostgresConnection) {
        let surplus: PostgresConnection? = state.withLockedValue { state in
            guard state.unifiedConnections.count < max(1, configuration.concurrency) else { return connection }
            state.unifiedConnections.append(connection)
            return nil
        }
        if let surplus { Task { try? await surplus.close() } }
    }

    private func checkoutDestination(_ tenant: TenantID) async throws -> PostgresConnection {
        if let connection = state.withLockedValue({ state -> PostgresConnection? in
            state.destinationOrder.removeAll { $0 == tenant }
            return state.destinations.removeValue(forKey: tenant)
        }), !connection.isClosed {
            return connection
        }
        logger.trace("relay: connecting", metadata: ["tenant": "\(tenant)"])
        return try await Database.connect(try servers.adminURL(of: try await catalog.requireTenant(tenant)), logger: logger)
    }

    private func dropDestination(_ tenant: TenantID) {
        let connection = state.withLockedValue { state -> PostgresConnection? in
            state.destinationOrder.removeAll { $0 == tenant }
            return state.destinations.removeValue(forKey: tenant)
        }
        if let connection { Task { try? await connection.close() } }
    }

    private func checkinDestination(_ tenant: TenantID, _ connection: PostgresConnection) {
        let evicted: [PostgresConnection] = state.withLockedValue { state in
            if let old = state.destinations.updateValue(connection, forKey: tenant) { return [old] }
            state.destinationOrder.append(tenant)
            var evicted: [PostgresConnection] = []
            while state.destinationOrder.count > configuration.cachedConnections {
                let oldest = state.destinationOrder.removeFirst()
                if let old = state.destinations.removeValue(forKey: oldest) { evicted.append(old) }
            }
            return evicted
        }
        for connection in evicted { Task { try? await connection.close() } }
    }

    /// Closes every cached connection.
    public func close() async {
        let connections = state.withLockedValue { state in
            let all = state.unifiedConnections + Array(state.destinations.values)
            state.unifiedConnections = []
            state.destinations = [:]
            state.destinationOrder = []
            return all
        }
        for connection in connections { try? await connection.close() }
    }
}

extension Relay: Service {}
