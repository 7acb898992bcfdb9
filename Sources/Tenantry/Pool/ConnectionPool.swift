import DequeModule
import Logging
import Metrics
import TenantryCore

/// One server's multi-tenant connection pool: a hard cap of open connections across every tenant
/// database of the server, a per-tenant (per-key) maximum, lazy opening, idle closing, eviction of
/// the least recently used idle connection of another tenant when the cap is reached, fair waiting
/// across tenants (round-robin), lease timeouts with a clear error, health checks, and reconnecting
/// with backoff.
///
/// PostgresNIO's `PostgresClient` pools per database with no cap across databases; PgBouncer, PgCat
/// and Odyssey cap per (database, user) pool. This pool caps the server. It is generic over the
/// connection (``PooledConnection``) so that its rules are tested without a server; the router
/// uses ``TenantPool``, the pool of `PostgresConnection`s.
///
/// Use a connection with ``withConnection(_:_:)``. Closing is awaited where it happens: a discarded
/// connection is closed before its caller's `withConnection` returns, an evicted one before the
/// connection that replaces it opens, idle ones by ``closeIdle(olderThan:)`` (the router's run
/// loop calls it), the rest by ``close()``. A waiting lease's timer is a child task of the
/// waiting call. Metrics are emitted as events happen (``TenantRouter/MetricName``).
public actor ConnectionPool<Connection: PooledConnection> {
    /// Opens a connection for a key.
    public typealias Connector = @Sendable (Key) async throws -> Connection

    /// A leased connection, given back with ``release(_:discard:)``.
    struct Lease: Sendable {
        let key: Key
        let connection: Connection
        let id: Int
    }

    /// What a waiter is granted: an idle connection (with how long it was idle), or the right to
    /// open one after closing `evicted` (another key's idle connection, closed to make room).
    enum Grant: Sendable { case connection(Int, Connection, Duration), open(evicted: Connection?) }
    struct Waiter { var id: Int; var slot: DeadlineRace<Grant> }
    struct Idle { var id: Int; var connection: Connection; var since: ContinuousClock.Instant }

    /// The pool's name (the server's).
    public nonisolated let name: String
    /// Its limits.
    public nonisolated let configuration: Configuration
    let connector: Connector
    let logger: Logger
    let metrics: PoolInstruments

    /// Idle connections per key, most recently released last.
    var idle: [Key: [Idle]] = [:]
    /// Connections leased or being opened, per key.
    var held: [Key: Int] = [:]
    /// Open connections (idle + held), never above `configuration.maxConnections`.
    var openTotal = 0
    /// Connections being opened (counted in `held` and `openTotal`).
    var opening = 0
    /// Connections being opened by ``warm(_:idle:)``, per key (counted in `opening` too).
    var warming: [Key: Int] = [:]
    /// The sums of `idle`, `held` and `waiters`, kept as they change (the gauges' values).
    var idleCount = 0
    var heldTotal = 0
    var waitingCount = 0
    /// Callers waiting, per key, first come first served within a key.
    var waiters: [Key: Deque<Waiter>] = [:]
    /// Keys with waiters, in turn order: a served key goes to the back (round-robin).
    var rotation: Deque<Key> = []
    var stats = Statistics()
    var nextID = 0
    var isClosed = false

    /// Creates a pool; connections open lazily through `connector`. Metrics go to `metricsFactory`
    /// (`nil`: the process's bootstrapped factory), labelled `server` = `name`.
    public init(
        name: String, configuration: Configuration, logger: Logger, metricsFactory: (any MetricsFactory)? = nil,
        connector: @escaping Connector
    ) {
        self.name = name
        self.configuration = configuration
        self.logger = logger
        self.connector = connector
        self.metrics = PoolInstruments(server: name, factory: metricsFactory ?? MetricsSystem.factory)
    }

    /// Leases a connection for `key`, waiting (fairly, up to the lease timeout) when the server cap
    /// or the key's maximum is reached. Connect failures are retried with backoff until the deadline.
    func lease(_ key: Key) async throws -> Lease {
        let start = ContinuousClock.now
        let deadline = start + configuration.leaseTimeout
        var backoff = configuration.connectBackoff
        var lastError: (any Error)?
        while true {
            let grant: Grant
            do {
                grant = try await acquire(key, deadline: deadline)
            } catch let error as TenantryError where error.code == .timeout {
                if let lastError {
                    throw TenantryError(
                        code: .timeout, message: "\(error.message); last connect error: \(Database.message(of: lastError))",
                        underlying: lastError)
                }
                throw error
            }
            switch grant {
            case .connection(let id, let connection, let idleFor):
                if connection.isClosed {
                    forget(key, discarded: true)
                    continue
                }
                if idleFor > configuration.healthCheckAfter {
                    // A caller cancelled while it waited gives the healthy-until-proven-otherwise
                    // connection back rather than closing it in a failed check.
                    if Task.isCancelled {
                        await release(Lease(key: key, connection: connection, id: id))
                        throw CancellationError()
                    }
                    // Bounded by the lease deadline: a server that accepts but never answers
                    // cannot hold the caller.
                    let logger = self.logger
                    let healthy = (try? await Deadline.run(until: deadline, timeout: { CancellationError() }) {
                        await connection.isHealthy(logger: logger)
                    }) ?? false
                    if !healthy {
                        try? await connection.close()
                        forget(key, discarded: true)
                        continue
                    }
                }
                countLease(waited: .now - start)
                return Lease(key: key, connection: connection, id: id)
            case .open(let evicted):
                // The evicted connection's slot is this one's: close it first, so the server
                // never sees more than the cap.
                if let evicted { try? await evicted.close() }
                let connection: Connection
                do {
                    let connector = self.connector
                    connection = try await Deadline.run(
                        until: deadline,
                        timeout: { [name, configuration] in
                            TenantryError(
                                code: .timeout,
                                message: "pool \(name): connecting to \(key) took longer than \(Self.describe(configuration.leaseTimeout))")
                        },
                        onLate: { late in try? await late.close() },
                        { try await connector(key) })
                } catch {
                    opening -= 1
                    forget(key, discarded: false)
                    // A cancelled caller (or a closed pool) is not a failure of the server.
                    if isClosed || error is CancellationError || Task.isCancelled { throw error }
                    stats.connectFailures += 1
                    metrics.connectFailures.increment()
                    lastError = error
                    if ContinuousClock.now + backoff >= deadline {
                        countLeaseTimeout()
                        throw TenantryError(
                            code: .timeout,
                            message: "pool \(name): cannot connect to \(key) within \(Self.describe(configuration.leaseTimeout)): "
                                + Database.message(of: error), underlying: error)
                    }
                    try await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(2))
                    continue
                }
                opening -= 1
                if isClosed {
                    // Closed while connecting: nobody would ever release this one.
                    try? await connection.close()
                    forget(key, discarded: false)
                    throw TenantryError(code: .conflict, message: "pool \(name) is closed")
                }
                stats.connects += 1
                metrics.connects.increment()
                nextID += 1
                recordGauges()
                countLease(waited: .now - start)
                return Lease(key: key, connection: connection, id: nextID)
            }
        }
    }

    /// Returns a leased connection. `discard` closes it (a broken connection) instead of keeping
    /// it idle; the close is awaited before its slot is freed, so the server never sees more
    /// connections than the cap.
    func release(_ lease: Lease, discard: Bool = false) async {
        if discard || isClosed || lease.connection.isClosed {
            try? await lease.connection.close()
            releaseHold(lease.key)
            openTotal -= 1
            if discard { countDiscarded() }
        } else {
            releaseHold(lease.key)
            idle[lease.key, default: []].append(Idle(id: lease.id, connection: lease.connection, since: .now))
            idleCount += 1
        }
        dispatch()
        recordGauges()
    }

    /// The pool's counters now (idle connections the server closed are dropped first, so `open`
    /// counts live connections).
    public func statistics() -> Statistics {
        dropClosedIdle()
        assert(idleCount == idle.values.reduce(0) { $0 + $1.count }, "idle count")
        assert(heldTotal == held.values.reduce(0, +), "held count")
        assert(waitingCount == waiters.values.reduce(0) { $0 + $1.count }, "waiting count")
        var current = stats
        current.open = openTotal
        current.idle = idleCount
        current.leased = heldTotal - opening
        current.waiting = waitingCount
        recordGauges()
        return current
    }

    /// Closes idle connections unused for longer than `age` (default: the idle timeout) and
    /// returns how many, after they are closed. Idle connections the server already closed (a
    /// restart) are dropped too, counted as discarded.
    @discardableResult
    public func closeIdle(olderThan age: Duration? = nil) async -> Int {
        dropClosedIdle()
        let limit = ContinuousClock.now - (age ?? configuration.idleTimeout)
        var old: [Connection] = []
        for (key, list) in idle where list.contains(where: { $0.since <= limit }) {
            let young = list.filter { $0.since > limit }
            old += list.filter { $0.since <= limit }.map(\.connection)
            idle[key] = young.isEmpty ? nil : young
        }
        guard !old.isEmpty else { return 0 }
        idleCount -= old.count
        // Still counted as open until closed, so no one opens in their place before.
        await Self.closeAll(old)
        openTotal -= old.count
        stats.idleClosed += old.count
        metrics.idleClosed.increment(by: old.count)
        dispatch()
        recordGauges()
        return old.count
    }

    /// Closes every idle connection of `key` and returns how many: the server ended a session of
    /// its database (a restore ends them all), so the idle ones may be ended too without this
    /// process having noticed yet. Counted as discarded.
    @discardableResult
    public func closeIdle(of key: Key) async -> Int {
        guard let list = idle.removeValue(forKey: key), !list.isEmpty else { return 0 }
        idleCount -= list.count
        // Still counted as open until closed, so no one opens in their place before.
        await Self.closeAll(list.map(\.connection))
        openTotal -= list.count
        countDiscarded(list.count)
        dispatch()
        recordGauges()
        return list.count
    }

    /// Fails every waiter and closes every idle connection, returning when they are closed; later
    /// leases fail, and leased connections are closed when given back.
    public func close() async {
        isClosed = true
        for queue in waiters.values {
            for waiter in queue {
                waiter.slot.finish(.failure(TenantryError(code: .conflict, message: "pool \(name) is closed")))
            }
        }
        waiters.removeAll()
        rotation.removeAll()
        waitingCount = 0
        let connections = idle.values.flatMap { $0.map(\.connection) }
        idle.removeAll()
        idleCount = 0
        await Self.closeAll(connections)
        openTotal -= connections.count
        recordGauges()
    }

    /// One connection of `key` less in use; keys holding none are forgotten, so that a pool that
    /// served 10,000 tenants does not keep an entry for each.
    func releaseHold(_ key: Key) {
        let count = (held[key] ?? 1) - 1
        held[key] = count > 0 ? count : nil
        heldTotal -= 1
    }

    /// Forgets idle connections whose server side is gone (after a server restart they all are;
    /// a connection closed from the other side needs no close).
    func dropClosedIdle() {
        var dropped = 0
        for (key, list) in idle where list.contains(where: { $0.connection.isClosed }) {
            let alive = list.filter { !$0.connection.isClosed }
            dropped += list.count - alive.count
            idle[key] = alive.isEmpty ? nil : alive
        }
        guard dropped > 0 else { return }
        idleCount -= dropped
        openTotal -= dropped
        countDiscarded(dropped)
        dispatch()
        recordGauges()
    }

    /// Closes `connections` concurrently and returns when all are closed.
    static func closeAll(_ connections: [Connection]) async {
        await withTaskGroup(of: Void.self) { group in
            for connection in connections { group.addTask { try? await connection.close() } }
        }
    }

    /// `10 s`, or `250 ms` when not whole seconds.
    static func describe(_ duration: Duration) -> String {
        let ms = Int64(duration.totalMilliseconds.rounded())
        return ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}
