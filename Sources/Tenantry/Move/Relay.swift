import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import PostgresNIO
import ServiceLifecycle
import TenantryCore

/// The sync relay (step 3 of a move; the seeds' DualWriteProxy): applies each syncing tenant's
/// captured changes to its tenant database, in capture order, skipping those the copy snapshot
/// already saw; and, once a tenant is dedicated, its tenant database's changes back to unified.
///
/// Each tenant's stream runs on its ``MoveRoute``: read from the route's source (where the
/// capture trigger writes `tenantry.changes`), applied to its target. Syncing tenants use the
/// route unified → tenant database, dedicated ones the reversed route. The loop is here; one
/// batch (reading, applying, the retry and dead-letter policy) is in `RelayBatch.swift`; the
/// connections (pooled) in `RelayConnections.swift`; settings and reports in `Relay+Configuration.swift`.
///
/// Guarantees:
/// - **nothing is dropped**: a change leaves `tenantry.changes` only in the same source-side
///   transaction that records it applied (after the target's commit) or moves it to
///   `tenantry.dead_letters`; a crash in between re-applies it, and applying is idempotent;
/// - **per-tenant order**: one relay at a time per tenant (an advisory lock in the stream's
///   source database), batches in id order; a failing change stops its tenant's stream until it applies;
/// - **retries**: a change that fails is retried after each of ``Configuration/retryDelays``
///   (1 s, 2 s, 4 s), then dead-lettered and its tenant paused; the others go on. A connection
///   failure is not the change's fault: it is retried with backoff for as long as it takes.
public final class Relay: Sendable {
    let configuration: Configuration
    let catalog: Catalog
    let unifiedURL: PostgresURL
    let plan: MovePlan
    let logger: Logger
    let connections: RelayConnections
    let state: NIOLockedValueBox<State>

    struct Stream {
        var nextAttempt: ContinuousClock.Instant?
        var backoff: Duration = .zero
        var lastError: String?
    }

    struct State {
        var streams: [TenantID: Stream] = [:]
        var statistics = Statistics()
        /// Dedicated tenants: their tenant database's changes flow back to unified.
        var reverse: Set<TenantID> = []
        /// Each tenant's database, once read from the catalog (forgotten after a connection failure).
        var tenantURLs: [TenantID: PostgresURL] = [:]
        /// When each dedicated tenant's id blocks were last checked.
        var blockChecks: [TenantID: ContinuousClock.Instant] = [:]
        /// When idle connections were last closed.
        var idleSweep = ContinuousClock.now
        /// Tenants moving between servers (phase `moving` or `switched`): their streams are the
        /// link live → follower and, for a dedicated tenant, follower → unified.
        var serverMoves: [TenantID: ServerMoveRecord] = [:]
        /// Admin logins per server (re-read from the catalog when a move names a server it lacks).
        var servers: ServerDirectory
    }

    /// Which of a tenant's streams a step runs.
    enum Legs: Sendable {
        /// Every stream of the tenant.
        case all
        /// Only a server move's link from the live database to the follower.
        case serverLink
    }

    /// Creates a relay. `unifiedURL` is the unified database (where `tenantry.changes` lives);
    /// tenant databases are reached with the admin logins of `servers`.
    public init(configuration: Configuration = Configuration(), catalog: Catalog, servers: ServerDirectory,
                unifiedURL: PostgresURL, plan: MovePlan, logger: Logger) {
        self.configuration = configuration
        self.catalog = catalog
        self.state = NIOLockedValueBox(State(servers: servers))
        self.unifiedURL = unifiedURL
        self.plan = plan
        self.logger = logger
        self.connections = RelayConnections(configuration: configuration, logger: logger)
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
        var deadLettered: [TenantID] = []
        if !paused.isEmpty {
            let states = try await Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, logger: logger).states(paused)
            for state in states {
                reasons[state.tenant.rawValue] = state.pausedReason ?? "paused"
                if state.deadLetters > 0 { deadLettered.append(state.tenant) }
            }
        }
        let after = statistics.applied + statistics.skipped
        return CatchUpReport(applied: after - before, paused: reasons, tenants: ids, deadLettered: deadLettered)
    }

    /// Applies `tenant`'s waiting changes now (used right after a routed write commits, so a read
    /// switched to the tenant database sees it). Waits for another relay holding the stream.
    /// Failures are left to the background relay's retries; returns the changes applied.
    /// With `budget`, stops after that long even if writes keep coming.
    @discardableResult
    public func drain(_ tenant: TenantID, budget: Duration? = nil) async -> Int {
        await drain(tenant, budget: budget, legs: .all)
    }

    /// ``drain(_:budget:)`` of the streams `legs` names (a server move drains its link alone).
    @discardableResult
    func drain(_ tenant: TenantID, budget: Duration?, legs: Legs) async -> Int {
        let deadline = budget.map { ContinuousClock.now + $0 }
        var total = 0
        while true {
            switch await step(tenant, waitForLock: true, legs: legs) {
            case .applied(let count):
                total += count
                if let deadline, ContinuousClock.now >= deadline { break }
                continue
            default: break
            }
            await sweepIdleConnections()
            return total
        }
    }

    /// Learns which tenants are dedicated (their streams flow back to unified).
    func refresh() async throws { _ = try await refreshDirections() }

    /// The tenants with a stream: syncing ones (forward), dedicated ones (reverse sync), and
    /// those moving between servers.
    private func refreshDirections() async throws -> [TenantID] {
        let forward = try await catalog.tenants(inPhases: Self.syncingPhases)
        let reverse = try await catalog.tenants(inPhases: Self.reversePhases)
        let moves = try await catalog.activeServerMoves().filter { $0.phase == .moving || $0.phase == .switched }
        let known = Set(state.withLockedValue { $0.servers.servers.map(\.name) } + [ServerDirectory.defaultServerName])
        if moves.contains(where: { !known.contains($0.sourceServer) || !known.contains($0.targetServer) }) {
            let records = try await catalog.servers()
            state.withLockedValue { $0.servers.servers = records }
        }
        let moving = Dictionary(moves.map { ($0.tenant, $0) }, uniquingKeysWith: { first, _ in first })
        let active = Set(forward + reverse + moving.keys)
        state.withLockedValue { state in
            state.serverMoves = moving
            state.reverse = Set(reverse)
            // A tenant that left both directions (retired, rolled back and re-placed, removed) is
            // forgotten, its database's address included: if it comes back, the catalog says where.
            state.tenantURLs = state.tenantURLs.filter { active.contains($0.key) && moving[$0.key] == nil }
            state.streams = state.streams.filter { active.contains($0.key) }
            state.blockChecks = state.blockChecks.filter { active.contains($0.key) }
        }
        let reverseSet = Set(reverse)
        return forward + reverse + moving.keys.filter { !reverseSet.contains($0) }.sorted()
    }

    /// One pass: up to a few batches per tenant, `concurrency` tenants at a time.
    private func pass(_ tenants: [TenantID]) async -> [TenantID: StepOutcome] {
        var outcomes: [TenantID: StepOutcome] = [:]
        // The work never throws (a failure is an outcome), so neither does the loop.
        try? await forEachConcurrently(tenants, concurrency: configuration.concurrency) { tenant in
            var last = StepOutcome.idle
            for _ in 0..<8 {
                last = await self.step(tenant, waitForLock: false)
                guard case .applied = last else { break }
            }
            return last
        } finished: { index, result, _ in
            if case .success(let outcome) = result { outcomes[tenants[index]] = outcome }
        }
        await sweepIdleConnections()
        return outcomes
    }

    // MARK: - One step

    /// `tenant`'s route: unified → its tenant database while it syncs, the reverse once it is
    /// dedicated. The tenant database's address is read from the catalog once, and again after a
    /// connection failure.
    func route(for tenant: TenantID) async throws -> MoveRoute {
        let (cached, reverse, servers) = state.withLockedValue { ($0.tenantURLs[tenant], $0.reverse.contains(tenant), $0.servers) }
        let tenantURL: PostgresURL
        if let cached {
            tenantURL = cached
        } else {
            tenantURL = try servers.adminURL(of: try await catalog.requireTenant(tenant))
            state.withLockedValue { $0.tenantURLs[tenant] = tenantURL }
        }
        let route = MoveRoute.toDedicated(tenant, unified: unifiedURL, tenantDatabase: tenantURL, plan: plan)
        return reverse ? route.reversed : route
    }

    /// `tenant`'s streams, in the order a step runs them: its one route, or — while it moves
    /// between servers — the link live → follower, then (dedicated tenants) follower → unified.
    func routes(for tenant: TenantID, legs: Legs) async throws -> [MoveRoute] {
        let (move, reverse, servers) = state.withLockedValue { ($0.serverMoves[tenant], $0.reverse.contains(tenant), $0.servers) }
        guard let move else { return legs == .all ? [try await route(for: tenant)] : [] }
        let live = try servers.adminURL(server: move.liveServer, database: move.liveDatabase)
        let follower = try servers.adminURL(server: move.followerServer, database: move.followerDatabase)
        var routes = [MoveRoute.serverLink(tenant, live: live, follower: follower, followerName: move.followerStreamName)]
        if legs == .all, reverse {
            routes.append(MoveRoute.toDedicated(tenant, unified: unifiedURL, tenantDatabase: follower, plan: plan).reversed)
        }
        return routes
    }

    /// Applies one batch of each of `tenant`'s streams (``routes(for:legs:)``), and combines the
    /// outcomes: anything applied, else the first stream still busy, else paused, not ready, idle.
    ///
    /// A server move's own drain of its link (`legs: .serverLink`, under a switch's fence or while
    /// catching up) goes ahead even while the tenant's backoff runs (the other stream's retry must
    /// not make a switch give up), and leaves id blocks alone (that ALTER SEQUENCE would wait for
    /// the writers parked at the fence).
    func step(_ tenant: TenantID, waitForLock: Bool, legs: Legs = .all) async -> StepOutcome {
        if legs == .all, let next = state.withLockedValue({ $0.streams[tenant]?.nextAttempt }), next > .now {
            return .waiting
        }
        let routes: [MoveRoute]
        do {
            routes = try await self.routes(for: tenant, legs: legs)
        } catch {
            return unreachable(tenant, error)
        }
        var outcomes: [StepOutcome] = []
        for route in routes {
            let outcome = await step(
                route, waitForLock: waitForLock, serverMove: routes.count > 1 || route.isServerLink, maintainBlocks: legs == .all)
            if case .unreachable = outcome { return outcome }
            outcomes.append(outcome)
        }
        return Self.combine(outcomes)
    }

    static func combine(_ outcomes: [StepOutcome]) -> StepOutcome {
        let applied = outcomes.reduce(0) { total, outcome in
            if case .applied(let count) = outcome { return total + count }
            return total
        }
        if outcomes.contains(where: { if case .applied = $0 { return true } else { return false } }) { return .applied(applied) }
        for wanted in [StepOutcome.waiting, .busy, .paused, .notReady] where outcomes.contains(wanted) { return wanted }
        return .idle
    }

    /// One batch of one stream. Id blocks are kept ahead on the database that takes the tenant's
    /// writes: the reverse stream's source, or a server move's live database.
    private func step(_ route: MoveRoute, waitForLock: Bool, serverMove: Bool, maintainBlocks: Bool) async -> StepOutcome {
        let tenant = route.tenant
        let inUse = ConnectionsInUse()
        let limit = configuration.batchTimeout
        do {
            return try await Deadline.run(until: .now + limit, timeout: {
                inUse.markTimedOut()
                return TenantryError(code: .timeout, message: "a relay batch for tenant \(tenant) took longer than \(limit)")
            }) {
                // The stream lives where the writes happen: the route's source.
                try await self.connections.withConnection(route.source, tenant: tenant, tracking: inUse) { source in
                    let outcome = try await self.batch(route, source: source, inUse: inUse, waitForLock: waitForLock)
                    if route.isReverse && !serverMove {
                        await self.maintainIdBlocks(tenant, unified: route.target, tenantDatabase: source, inUse: inUse)
                    } else if route.isServerLink, maintainBlocks, self.state.withLockedValue({ $0.reverse.contains(tenant) }) {
                        await self.maintainIdBlocks(
                            tenant, unified: .shared(self.unifiedURL, plan: self.plan, tenant: tenant), tenantDatabase: source, inUse: inUse)
                    }
                    return outcome
                }
            }
        } catch {
            if inUse.timedOut || error is CancellationError {
                // A connection is stuck (or the relay is stopping): close the batch's connections.
                await inUse.closeAll()
                return unreachable(tenant, error)
            }
            if Database.isConnectionFailure(error) {
                state.withLockedValue { _ = $0.tenantURLs.removeValue(forKey: tenant) }
                return unreachable(tenant, error)
            }
            logger.error("relay step failed", metadata: [LogMetadataKey.tenant: "\(tenant)", "error": "\(Database.message(of: error))"])
            return unreachable(tenant, error)
        }
    }

    /// Schedules the retry of a stream whose database could not be reached, with backoff.
    func unreachable(_ tenant: TenantID, _ error: any Error) -> StepOutcome {
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
        logger.warning("relay: cannot reach a database; retrying", metadata: [LogMetadataKey.tenant: "\(tenant)", "error": "\(message)"])
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

    func resetStream(_ tenant: TenantID) {
        state.withLockedValue { _ = $0.streams.removeValue(forKey: tenant) }
    }

    // MARK: - Connections

    /// Closes connections idle for longer than the relay pools' idle timeout (at most every half
    /// second; run after each pass and drain).
    private func sweepIdleConnections() async {
        let due = state.withLockedValue { state in
            guard ContinuousClock.now - state.idleSweep >= .milliseconds(500) else { return false }
            state.idleSweep = .now
            return true
        }
        if due { await connections.closeIdle() }
    }

    /// Closes every pooled connection (the relay opens new ones if used again).
    public func close() async {
        await connections.close()
    }
}

extension Relay: Service {}
