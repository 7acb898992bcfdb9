import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import PostgresNIO
import ServiceLifecycle
import TenantryCore
import Tracing

/// Routes a tenant's reads and writes (the seeds' DataSourceManager, TenantRouter and
/// ReadPathSwitcher): resolves the route from a cached catalog (invalidated by LISTEN/NOTIFY, so
/// every router follows a change within a second), leases a connection from the server's
/// multi-tenant ``TenantPool``, and measures every query.
///
/// ```swift
/// let count = try await router.withConnection(tenant: try TenantID("42"), intent: .read) { connection in
///     try await connection.query("SELECT count(*) FROM customers").first?.decode(Int.self)
/// }
/// ```
/// Run it (``run()``) under ServiceLifecycle or in a task group: it listens for route changes and
/// closes idle connections.
public final class TenantRouter: Service, Sendable {
    /// Read or write.
    public enum Intent: String, Sendable { case read, write }

    /// Router settings.
    public struct Configuration: Sendable {
        /// The unified database (all tenants not yet dedicated).
        public var unifiedURL: PostgresURL
        /// Pool limits, applied to each server.
        public var pool: TenantPool.Configuration
        /// Per-server connection caps that differ from `pool.maxConnections` (registered servers).
        public var serverCaps: [String: Int] = [:]
        /// Cached routes are re-read after this even without a notification (a safety net).
        public var routeTTL: Duration = .seconds(30)
        /// Where every query through ``RoutedConnection/query(_:)`` is recorded (`nil`: not
        /// measured, no cost). One monitor may serve several routers.
        public var monitor: PerformanceMonitor?
        /// Where the pool and read-path metrics go (``MetricName``); `nil`: the factory
        /// bootstrapped for the process (swift-metrics' no-op one when none was).
        public var metricsFactory: (any MetricsFactory)?
        /// Called after a write for a tenant whose data is being synced (phase `syncing` or
        /// `reads_switched`) has committed on the unified database, before the write returns: wire
        /// it to ``Relay/drain(_:)`` so that reads switched to the tenant database see the write.
        public var afterSyncedWrite: (@Sendable (TenantID) async -> Void)?
        /// The longest one query through ``RoutedConnection/query(_:)`` may take; past it the
        /// connection is closed (the server ends its statement) and the query fails with
        /// ``TenantryError/Code/timeout``. A guard against a query that would wait forever for a
        /// reply on a connection the server has just closed (a PostgresNIO race around server
        /// restarts). `nil` (the default): no limit.
        public var queryTimeout: Duration?
        /// Connections opened ahead of a switch in the pool of the side a tenant is about to be
        /// switched to, when a cutover or rollback announces itself (``warm(tenant:)``), so the
        /// writers its fence releases do not each open one. `0`: no warm-up. Default 10.
        public var warmConnections = 10
        /// `lock_timeout` of every connection the router opens to a tenant database
        /// (`TENANT_DB_LOCK_TIMEOUT`): a statement that waits longer for a lock fails with
        /// SQLSTATE 55P03. A write transaction that fails so while its tenant was switched away
        /// (the lock was a re-copy's) runs again where the catalog now routes it; any other lock
        /// timeout is the application's error. Longer than a rollback's default fence limit (5 s),
        /// so a write that waits out a fence is not failed by it. `nil`: the server's setting.
        /// Default 6 s.
        public var tenantLockTimeout: Duration? = .seconds(6)
        /// Creates settings.
        public init(unifiedURL: PostgresURL, pool: TenantPool.Configuration) {
            self.unifiedURL = unifiedURL
            self.pool = pool
        }
    }

    /// Counters of the read path.
    public struct ReadStatistics: Sendable, Codable, Equatable {
        /// Reads served from tenant databases.
        public var tenantReads = 0
        /// Reads served from the unified database.
        public var unifiedReads = 0
        /// Tenant reads that failed and were served from unified instead.
        public var fallbacks = 0
        /// Shadow reads compared (consistency verification).
        public var consistencyChecks = 0
        /// Shadow reads whose results differed.
        public var inconsistencies = 0
        /// The latest differences (tenant ids), newest last, at most 100.
        public var recentInconsistencies: [String] = []
    }

    struct CachedRoute { var route: Route; var loaded: ContinuousClock.Instant }
    struct State {
        var routes: [TenantID: CachedRoute] = [:]
        var policy: ReadPolicy?
        var pools: [String: TenantPool] = [:]
        var reads = ReadStatistics()
        var shadowCounter: UInt64 = 0
    }

    /// The configuration.
    public let configuration: Configuration
    let catalog: Catalog
    let registry: CredentialRegistry
    let servers: ServerDirectory
    let logger: Logger
    let observer: (@Sendable (ObservedQuery) -> Void)?
    let state = NIOLockedValueBox(State())
    /// Set while the route listener's `LISTEN` is in place (``waitUntilListening()``).
    let listening = ReadySignal()
    let readMetrics: ReadInstruments

    /// Creates a router. `observer` receives every query (wire it to a ``PerformanceMonitor``).
    public init(
        configuration: Configuration, catalog: Catalog, registry: CredentialRegistry, servers: ServerDirectory,
        logger: Logger, observer: (@Sendable (ObservedQuery) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.catalog = catalog
        self.registry = registry
        self.servers = servers
        self.logger = logger
        self.observer = observer
        self.readMetrics = ReadInstruments(factory: configuration.metricsFactory ?? MetricsSystem.factory)
    }

    // MARK: - Public API

    /// Runs `body` with a connection for `tenant`: writes go where the tenant's data is
    /// authoritative; reads follow the read policy, falling back to unified when a tenant read fails
    /// (and fallback is on). A broken connection is discarded and the lease retried once.
    public func withConnection<Result: Sendable>(
        tenant: TenantID, intent: Intent, _ body: (RoutedConnection) async throws -> Result
    ) async throws -> Result {
        try await traced(tenant, intent) { span in try await routedConnection(tenant, intent, span, body) }
    }

    private func routedConnection<Result: Sendable>(
        _ tenant: TenantID, _ intent: Intent, _ span: (any Span)?, _ body: (RoutedConnection) async throws -> Result
    ) async throws -> Result {
        let (route, resolvedPolicy) = try await resolve(tenant, policy: true, parent: span)
        guard let policy = resolvedPolicy else { throw TenantryError(code: .database, message: "unreachable: no read policy") }
        let source = intent == .write ? route.writeSource : route.readSource(policy)
        guard intent == .read, source == .tenant, route.writeSource == .unified else {
            countRead(intent, source)
            let result: Result
            do {
                result = try await run(on: source, route: route, retrySafe: intent == .read, transaction: false, body)
            } catch where intent == .read && source == .tenant && Self.mayHaveLeftDatabase(error) {
                // A read on a database just swapped out (a restore) runs again where the catalog says.
                guard let current = (try? await rerouted(tenant, from: route, after: error)) ?? nil else { throw error }
                result = try await run(on: .tenant, route: current, retrySafe: true, transaction: false, body)
            }
            if intent == .write { await syncedWrite(route, source) }
            return result
        }
        do {
            let result = try await run(on: .tenant, route: route, retrySafe: true, transaction: false, body)
            countRead(intent, .tenant)
            return result
        } catch where policy.enableFallback && !(error is CancellationError) {
            state.withLockedValue { $0.reads.fallbacks += 1 }
            readMetrics.fallbacks.increment()
            logger.warning("tenant read failed; served from unified", metadata: [
                LogMetadataKey.tenant: "\(tenant)", "error": "\(Database.message(of: error))"])
            countRead(intent, .unified)
            return try await run(on: .unified, route: route, retrySafe: true, transaction: false, body)
        }
    }

    /// Like ``withConnection(tenant:intent:_:)`` inside a transaction (`BEGIN` … `COMMIT`; on the
    /// unified database `tenantry.tenant` is set with `SET LOCAL` semantics).
    ///
    /// With `isolation` `.repeatableRead` or `.serializable`, a write whose snapshot predates a
    /// cutover or rollback of its tenant fails with SQLSTATE 40001 (retry it, as for any
    /// serialization failure); it never lands on the side that no longer serves the tenant.
    public func withTransaction<Result: Sendable>(
        tenant: TenantID, intent: Intent, isolation: Isolation = .readCommitted, _ body: (RoutedConnection) async throws -> Result
    ) async throws -> Result {
        try await traced(tenant, intent) { span in try await routedTransaction(tenant, intent, isolation, span, body) }
    }

    /// `again`: this is the one more run after the server ended the first run's sessions (see the
    /// last `catch` below).
    private func routedTransaction<Result: Sendable>(
        _ tenant: TenantID, _ intent: Intent, _ isolation: Isolation, _ span: (any Span)?,
        _ body: (RoutedConnection) async throws -> Result, again: Bool = false
    ) async throws -> Result {
        let (route, policy) = try await resolve(tenant, policy: intent == .read, parent: span)
        var source = route.writeSource
        if intent == .read, let policy { source = route.readSource(policy) }
        countRead(intent, source)
        do {
            let result = try await run(
                on: source, route: route, retrySafe: true, transaction: true, isolation: isolation, recheck: intent == .write, body)
            if intent == .write { await syncedWrite(route, source) }
            return result
        } catch where error is RouteChanged {
            // Switched while this write waited for a connection: nothing ran; it runs where writes go now.
            let current = try await self.route(for: tenant)
            return try await run(on: current.writeSource, route: current, retrySafe: true, transaction: true, isolation: isolation, body)
        } catch where intent == .write && Self.isMovedRejection(error) {
            // The tenant was cut over (or rolled back) while this write waited on its fence: the
            // transaction was rolled back; run it again on the new route once the catalog has it
            // (the databases switch first, the catalog right after).
            let moved = try await newRoute(for: tenant, leaving: route, source: source, rejection: error)
            return try await run(on: moved.writeSource, route: moved, retrySafe: true, transaction: true, isolation: isolation, body)
        } catch where intent == .write && source == .tenant && Database.isIntegrityViolation(error) {
            // An integrity error the server reported (the transaction rolled back) on a tenant
            // database the tenant may just have left for another server: there its sequences lag
            // behind the rows the relay brings, so an insert can fail on a key before the moved
            // guard (an AFTER trigger) refuses it. When the catalog names another database now,
            // the write runs there; otherwise the error is the application's.
            invalidateRoutes(tenant)
            let current = try await self.route(for: tenant)
            guard current.writeSource == .tenant, current.server != route.server || current.database != route.database else { throw error }
            return try await run(on: current.writeSource, route: current, retrySafe: true, transaction: true, isolation: isolation, body)
        } catch where intent == .write && source == .tenant && Self.isLockTimeout(error) {
            // A lock wait on the tenant database outlasted `tenantLockTimeout` (the transaction
            // rolled back): when the tenant was switched away meanwhile (a write that reached its
            // old database while a re-copy holds its tables), it runs where the catalog routes it
            // now; otherwise the lock timeout is the application's.
            let current = try await loadRoute(tenant)
            guard Self.leaves(route, source: .tenant, for: current) else { throw error }
            return try await run(on: current.writeSource, route: current, retrySafe: true, transaction: true, isolation: isolation, body)
        } catch where source == .tenant && Self.mayHaveLeftDatabase(error) {
            // The tenant's database was swapped for another (a restore): its sessions were ended
            // and it no longer takes connections. The transaction did not commit (a COMMIT in
            // flight is never run again); when the catalog names another database now, it runs there.
            if let current = (try? await rerouted(tenant, from: route, after: error)) ?? nil {
                return try await run(on: current.writeSource, route: current, retrySafe: true, transaction: true, isolation: isolation, body)
            }
            // The server ended the session (the lease's one retry too) and the catalog still names
            // this database: a restore ends every session of the old database just before the
            // catalog names the new one, and the pool may still hold idle connections it ended
            // without this process having noticed. Once more from the start on new connections:
            // where the database refuses them now (55000), the catalog is awaited as above. Not
            // after a refusal already awaited (55000, 3D000): that would only wait twice.
            let state = Self.serverState(of: error)
            guard !again, state != "55000", state != "3D000" else { throw error }
            if let (pool, key) = try? poolAndKey(.tenant, route: route) { await pool.closeIdle(of: key) }
            return try await routedTransaction(tenant, intent, isolation, span, body, again: true)
        }
    }

    /// The SQLSTATE the server gave for `error`, also when a ``TenantryError`` wraps it.
    static func serverState(of error: any Error) -> String? {
        Database.sqlState(of: (error as? TenantryError)?.underlying ?? error)
    }

    /// Whether `error` may come from a tenant database that was just swapped out: its session was
    /// ended, or connecting failed because it no longer takes connections or no longer exists
    /// under that name. Never the unknown outcome of a COMMIT.
    static func mayHaveLeftDatabase(_ error: any Error) -> Bool {
        if let error = error as? TenantryError, error.message.contains(commitOutcomeUnknown) { return false }
        let state = Self.serverState(of: error)
        return state == "55000" || state == "3D000" || Database.isConnectionFailure(error)
    }

    /// The route the catalog gives `tenant`, if it names another tenant database than `old`. When
    /// `error` says the old database no longer takes connections or no longer exists (a restore
    /// closes it just before the catalog names the new one), waits for the catalog up to the lease
    /// timeout; otherwise looks once.
    func rerouted(_ tenant: TenantID, from old: Route, after error: any Error) async throws -> Route? {
        let state = Self.serverState(of: error)
        let deadline = ContinuousClock.now + (state == "55000" || state == "3D000" ? configuration.pool.leaseTimeout : .zero)
        while true {
            invalidateRoutes(tenant)
            let current = try await route(for: tenant)
            if current.writeSource == .tenant, current.server != old.server || current.database != old.database { return current }
            guard ContinuousClock.now < deadline else { return nil }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits (up to the lease timeout) until the catalog routes `tenant`'s writes elsewhere than
    /// `source` of `old` (another side, or — a move between servers — another tenant database),
    /// then returns that route; past the timeout, throws ``TenantryError/Code/tenantMoved`` (the
    /// guard's message, `rejection` underlying).
    ///
    /// While the router listens, the switch usually reaches it as a notification on which the
    /// listener reads the new route once: the cache is watched every 2 ms and the catalog read at
    /// most every 50 ms, so writers released by a fence do not queue on the catalog.
    private func newRoute(for tenant: TenantID, leaving old: Route, source: Route.Source, rejection: any Error) async throws -> Route {
        let deadline = ContinuousClock.now + configuration.pool.leaseTimeout
        var nextRead = ContinuousClock.now
        while true {
            if let cached = cachedRoute(tenant), Self.leaves(old, source: source, for: cached) { return cached }
            if ContinuousClock.now >= nextRead || !isListening {
                let route = try await loadRoute(tenant)
                if Self.leaves(old, source: source, for: route) { return route }
                nextRead = ContinuousClock.now + .milliseconds(50)
            }
            guard ContinuousClock.now < deadline else {
                throw TenantryError(
                    code: .tenantMoved, message: Database.message(of: rejection), tenant: tenant.rawValue, underlying: rejection)
            }
            try await Task.sleep(for: .milliseconds(isListening ? 2 : 10))
        }
    }

    /// Whether `error` is the capture guard's rejection of a write for a tenant that has moved
    /// (``Database/isTenantMoved(_:)``: SQLSTATE 25006 with the guard's fixed hint, never message text).
    static func isMovedRejection(_ error: any Error) -> Bool {
        Database.isTenantMoved(error)
    }

    /// Read-your-writes while a tenant syncs: its write committed on unified is applied to its
    /// tenant database before the caller goes on.
    private func syncedWrite(_ route: Route, _ source: Route.Source) async {
        guard source == .unified, route.phase == .syncing || route.phase == .readsSwitched,
              let hook = configuration.afterSyncedWrite else { return }
        await hook(route.tenant)
    }

    /// Runs `body` on the given side for `tenant`, whatever the read policy says: to measure or
    /// compare both sides (`tenantry performance`). `.tenant` needs a provisioned database. A
    /// broken connection is discarded and `body` retried once, so use it for reads.
    public func withConnection<Result: Sendable>(
        tenant: TenantID, source: Route.Source, _ body: (RoutedConnection) async throws -> Result
    ) async throws -> Result {
        try await traced(tenant, .read) { span in
            let (route, _) = try await resolve(tenant, policy: false, parent: span)
            return try await run(on: source, route: route, retrySafe: true, transaction: false, body)
        }
    }

    /// A read with consistency verification: like `withConnection(intent: .read)`, and for a sampled
    /// share of reads (policy `verifyConsistency`, `verifySampleRate`) the same body also runs on the
    /// other side and the results are compared; differences are counted and logged.
    public func read<Result: Sendable & Equatable>(
        tenant: TenantID, _ body: (RoutedConnection) async throws -> Result
    ) async throws -> Result {
        let result = try await withConnection(tenant: tenant, intent: .read, body)
        let route = try await route(for: tenant)
        let policy = try await readPolicy()
        guard policy.verifyConsistency, route.database != nil, route.phase >= .syncing, shouldSample(policy.verifySampleRate) else {
            return result
        }
        let primary = route.readSource(policy)
        let other: Route.Source = primary == .tenant ? .unified : .tenant
        do {
            let shadow = try await run(on: other, route: route, retrySafe: true, transaction: false, body)
            let differs = shadow != result
            state.withLockedValue {
                $0.reads.consistencyChecks += 1
                if differs {
                    $0.reads.inconsistencies += 1
                    $0.reads.recentInconsistencies.append(tenant.rawValue)
                    if $0.reads.recentInconsistencies.count > 100 { $0.reads.recentInconsistencies.removeFirst() }
                }
            }
            readMetrics.consistencyChecks.increment()
            if differs { readMetrics.inconsistencies.increment() }
            if differs && policy.logInconsistencies {
                logger.warning("read inconsistency between unified and tenant database", metadata: [
                    LogMetadataKey.tenant: "\(tenant)", "read.primary": "\(primary.rawValue)"])
            }
        } catch {
            logger.debug("shadow read failed", metadata: [LogMetadataKey.tenant: "\(tenant)", "error": "\(Database.message(of: error))"])
        }
        return result
    }

    /// The read-path counters.
    public var readStatistics: ReadStatistics { state.withLockedValue { $0.reads } }

    /// Each server pool's counters.
    public func poolStatistics() async -> [String: TenantPool.Statistics] {
        var result: [String: TenantPool.Statistics] = [:]
        for (name, pool) in state.withLockedValue({ $0.pools }) { result[name] = await pool.statistics() }
        return result
    }

    /// Forgets cached routes and the read policy (the next call reads the catalog).
    public func invalidateRoutes(_ tenant: TenantID? = nil) {
        state.withLockedValue {
            if let tenant { $0.routes[tenant] = nil } else { $0.routes.removeAll(); $0.policy = nil }
        }
    }

    // MARK: - Routing

    /// The tenant's route, from the cache while fresh.
    public func route(for tenant: TenantID) async throws -> Route {
        if let cached = cachedRoute(tenant) { return cached }
        return try await loadRoute(tenant)
    }

    /// Reads `tenant`'s route from the catalog and caches it (unless a newer epoch is cached): the
    /// tenant's record and its move phase in one query on the catalog's lookup connections
    /// (``Catalog/lookup(_:)``: nothing of it outlives the query, unlike a pool lease's timers).
    func loadRoute(_ tenant: TenantID) async throws -> Route {
        var route = Route.shared(tenant)
        let rows = try await catalog.lookup("""
            SELECT t.status, t.placement, t.epoch, t.server_name, t.database_name, t.role_name, m.phase
            FROM tenantry.tenants t LEFT JOIN tenantry.moves m ON m.tenant_id = t.id
            WHERE t.id = \(tenant.rawValue)
            """)
        for row in rows {
            let (status, placement, epoch, server, database, role, phase) = try row.decode(
                (String, String, Int64, String?, String?, String?, String?).self)
            route.placement = TenantRecord.Placement(rawValue: placement) ?? .shared
            route.epoch = epoch
            if TenantRecord.Status(rawValue: status) == .active, let database {
                route.database = database
                route.server = server
                route.role = role
            }
            route.phase = phase.flatMap { MovePhase($0) } ?? .shared
        }
        return storeRoute(route)
    }

    /// The read policy, cached until a notification.
    public func readPolicy() async throws -> ReadPolicy {
        if let policy = state.withLockedValue({ $0.policy }) { return policy }
        let policy = try await catalog.readPolicy()
        state.withLockedValue { $0.policy = policy }
        return policy
    }

    private func countRead(_ intent: Intent, _ source: Route.Source) {
        guard intent == .read else { return }
        state.withLockedValue {
            if source == .tenant { $0.reads.tenantReads += 1 } else { $0.reads.unifiedReads += 1 }
        }
        (source == .tenant ? readMetrics.tenantReads : readMetrics.unifiedReads).increment()
    }

    private func shouldSample(_ rate: Double) -> Bool {
        guard rate > 0 else { return false }
        if rate >= 1 { return true }
        let n = state.withLockedValue { $0.shadowCounter += 1; return $0.shadowCounter }
        let every = UInt64((1 / rate).rounded())
        return n % max(1, every) == 0
    }
}
