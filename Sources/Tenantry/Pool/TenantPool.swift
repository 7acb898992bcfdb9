import DequeModule
import Logging
import NIOCore
import PostgresNIO
import TenantryCore

/// One server's multi-tenant connection pool: a hard cap of open connections across every tenant
/// database of the server, a per-tenant (per-key) maximum, lazy opening, idle closing, eviction of
/// the least recently used idle connection of another tenant when the cap is reached, fair waiting
/// across tenants (round-robin), lease timeouts with a clear error, health checks, and reconnecting
/// with backoff.
///
/// PostgresNIO's `PostgresClient` pools per database with no cap across databases; PgBouncer, PgCat
/// and Odyssey cap per (database, user) pool. This pool caps the server.
public actor TenantPool {
    /// Opens a connection for a key.
    public typealias Connector = @Sendable (Key) async throws -> PostgresConnection

    /// A leased connection; give it back with ``release(_:discard:)``.
    public struct Lease: Sendable {
        /// The key it belongs to.
        public let key: Key
        /// The connection.
        public let connection: PostgresConnection
        let id: Int
    }

    enum Grant { case connection(Int, PostgresConnection, Duration), open }
    struct Waiter { var id: Int; var continuation: CheckedContinuation<Grant, any Error> }
    struct Idle { var id: Int; var connection: PostgresConnection; var since: ContinuousClock.Instant }

    /// The pool's name (the server's).
    public nonisolated let name: String
    /// Its limits.
    public nonisolated let configuration: Configuration
    private let connector: Connector
    private let logger: Logger

    /// Idle connections per key, most recently released last.
    var idle: [Key: [Idle]] = [:]
    /// Connections leased or being opened, per key.
    var held: [Key: Int] = [:]
    /// Open connections (idle + held), never above `configuration.maxConnections`.
    var openTotal = 0
    /// Connections being opened (counted in `held` and `openTotal`).
    var opening = 0
    /// Callers waiting, per key, first come first served within a key.
    var waiters: [Key: Deque<Waiter>] = [:]
    /// Keys with waiters, in turn order: a served key goes to the back (round-robin).
    var rotation: Deque<Key> = []
    var stats = Statistics()
    var nextID = 0
    var isClosed = false

    /// Creates a pool; connections open lazily through `connector`.
    public init(name: String, configuration: Configuration, logger: Logger, connector: @escaping Connector) {
        self.name = name
        self.configuration = configuration
        self.logger = logger
        self.connector = connector
    }

    /// Leases a connection for `key`, waiting (fairly, up to the lease timeout) when the server cap
    /// or the key's maximum is reached. Connect failures are retried with backoff until the deadline.
    public func lease(_ key: Key) async throws -> Lease {
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
                    // Bounded by the lease deadline: a server that accepts but never answers
                    // cannot hold the caller.
                    let logger = self.logger
                    let healthy = (try? await Self.withDeadline(deadline, timeout: { CancellationError() }, {
                        try await connection.query("SELECT 1", logger: logger)
                        return true
                    }, onLate: { _ in })) ?? false
                    if !healthy {
                        Self.closeQuietly(connection)
                        forget(key, discarded: true)
                        continue
                    }
                }
                return granted(Lease(key: key, connection: connection, id: id), since: start)
            case .open:
                let connection: PostgresConnection
                do {
                    let connector = self.connector
                    connection = try await Self.withDeadline(deadline, timeout: { [name, configuration] in
                        TenantryError(
                            code: .timeout,
                            message: "pool \(name): connecting to \(key) took longer than \(Self.seconds(configuration.leaseTimeout))")
                    }, { try await connector(key) }, onLate: { Self.closeQuietly($0) })
                } catch {
                    opening -= 1
                    stats.connectFailures += 1
                    lastError = error
                    forget(key, discarded: false)
                    if isClosed || error is CancellationError || Task.isCancelled { throw error }
                    if ContinuousClock.now + backoff >= deadline {
                        stats.leaseTimeouts += 1
                        throw TenantryError(
                            code: .timeout,
                            message: "pool \(name): cannot connect to \(key) within \(Self.seconds(configuration.leaseTimeout)): "
                                + Database.message(of: error), underlying: error)
                    }
                    try await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(2))
                    continue
                }
                opening -= 1
                if isClosed {
                    // Closed while connecting: nobody would ever release this one.
                    Self.closeQuietly(connection)
                    forget(key, discarded: false)
                    throw TenantryError(code: .conflict, message: "pool \(name) is closed")
                }
                stats.connects += 1
                nextID += 1
                return granted(Lease(key: key, connection: connection, id: nextID), since: start)
            }
        }
    }

    /// Returns a leased connection. `discard` closes it (a broken connection) instead of keeping it idle.
    public func release(_ lease: Lease, discard: Bool = false) {
        releaseHold(lease.key)
        if discard || isClosed || lease.connection.isClosed {
            Self.closeQuietly(lease.connection)
            openTotal -= 1
            if discard { stats.discarded += 1 }
        } else {
            idle[lease.key, default: []].append(Idle(id: lease.id, connection: lease.connection, since: .now))
        }
        dispatch()
    }

    /// The pool's counters now (idle connections the server closed are dropped first, so `open`
    /// counts live connections).
    public func statistics() -> Statistics {
        dropClosedIdle()
        var current = stats
        current.open = openTotal
        current.idle = idle.values.reduce(0) { $0 + $1.count }
        current.leased = held.values.reduce(0, +) - opening
        current.waiting = waiters.values.reduce(0) { $0 + $1.count }
        return current
    }

    /// Closes idle connections unused for longer than the idle timeout; returns how many. Idle
    /// connections the server already closed (a restart) are dropped too, counted as discarded.
    @discardableResult
    public func closeIdle(olderThan age: Duration? = nil) -> Int {
        dropClosedIdle()
        let limit = ContinuousClock.now - (age ?? configuration.idleTimeout)
        var closed = 0
        for (key, list) in idle {
            let (old, young) = (list.filter { $0.since <= limit }, list.filter { $0.since > limit })
            for entry in old { Self.closeQuietly(entry.connection) }
            closed += old.count
            idle[key] = young.isEmpty ? nil : young
        }
        openTotal -= closed
        stats.idleClosed += closed
        if closed > 0 { dispatch() }
        return closed
    }

    /// Closes every connection and fails every waiter; later leases fail.
    public func close() {
        isClosed = true
        for list in idle.values { for entry in list { Self.closeQuietly(entry.connection) } }
        openTotal -= idle.values.reduce(0) { $0 + $1.count }
        idle.removeAll()
        for queue in waiters.values {
            for waiter in queue {
                waiter.continuation.resume(throwing: TenantryError(code: .conflict, message: "pool \(name) is closed"))
            }
        }
        waiters.removeAll()
        rotation.removeAll()
    }

    /// Closes idle connections on the idle timeout until cancelled, then closes the pool.
    public func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(500))
            closeIdle()
        }
        close()
    }

    /// One connection of `key` less in use; keys holding none are forgotten, so that a pool that
    /// served 10,000 tenants does not keep an entry for each.
    func releaseHold(_ key: Key) {
        let count = (held[key] ?? 1) - 1
        held[key] = count > 0 ? count : nil
    }

    /// Forgets idle connections whose server side is gone (after a server restart they all are).
    func dropClosedIdle() {
        var dropped = 0
        for (key, list) in idle where list.contains(where: { $0.connection.isClosed }) {
            let alive = list.filter { !$0.connection.isClosed }
            for entry in list where entry.connection.isClosed { Self.closeQuietly(entry.connection) }
            dropped += list.count - alive.count
            idle[key] = alive.isEmpty ? nil : alive
        }
        guard dropped > 0 else { return }
        openTotal -= dropped
        stats.discarded += dropped
        dispatch()
    }

    private func granted(_ lease: Lease, since start: ContinuousClock.Instant) -> Lease {
        let waited = ContinuousClock.now - start
        let ms = Double(waited.components.seconds) * 1000 + Double(waited.components.attoseconds) / 1e15
        stats.leases += 1
        stats.leaseWaitTotalMs += ms
        stats.leaseWaitMaxMs = max(stats.leaseWaitMaxMs, ms)
        return lease
    }

    /// Closes a connection without waiting, keeping it alive until the close completes
    /// (PostgresNIO requires a connection to be closed before it is released).
    static func closeQuietly(_ connection: PostgresConnection) {
        let future: EventLoopFuture<Void> = connection.close()
        future.whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    static func seconds(_ duration: Duration) -> String {
        let ms = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
}
