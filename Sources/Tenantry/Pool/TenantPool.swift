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

    private var idle: [Key: [Idle]] = [:]
    private var held: [Key: Int] = [:]
    private var openTotal = 0
    private var opening = 0
    private var waiters: [Key: Deque<Waiter>] = [:]
    private var rotation: Deque<Key> = []
    private var stats = Statistics()
    private var nextID = 0
    private var isClosed = false

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
                    do {
                        try await connection.query("SELECT 1", logger: logger)
                    } catch {
                        Self.closeQuietly(connection)
                        forget(key, discarded: true)
                        continue
                    }
                }
                return granted(Lease(key: key, connection: connection, id: id), since: start)
            case .open:
                do {
                    let connection = try await connector(key)
                    opening -= 1
                    stats.connects += 1
                    nextID += 1
                    return granted(Lease(key: key, connection: connection, id: nextID), since: start)
                } catch {
                    opening -= 1
                    stats.connectFailures += 1
                    lastError = error
                    forget(key, discarded: false)
                    if isClosed { throw error }
                    if ContinuousClock.now + backoff >= deadline {
                        stats.leaseTimeouts += 1
                        throw TenantryError(
                            code: .timeout,
                            message: "pool \(name): cannot connect to \(key) within \(Self.seconds(configuration.leaseTimeout)): "
                                + Database.message(of: error), underlying: error)
                    }
                    try await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(2))
                }
            }
        }
    }

    /// Returns a leased connection. `discard` closes it (a broken connection) instead of keeping it idle.
    public func release(_ lease: Lease, discard: Bool = false) {
        held[lease.key, default: 1] -= 1
        if discard || isClosed || lease.connection.isClosed {
            Self.closeQuietly(lease.connection)
            openTotal -= 1
            if discard { stats.discarded += 1 }
        } else {
            idle[lease.key, default: []].append(Idle(id: lease.id, connection: lease.connection, since: .now))
        }
        dispatch()
    }

    /// The pool's counters now.
    public func statistics() -> Statistics {
        var current = stats
        current.open = openTotal
        current.idle = idle.values.reduce(0) { $0 + $1.count }
        current.leased = held.values.reduce(0, +) - opening
        current.waiting = waiters.values.reduce(0) { $0 + $1.count }
        return current
    }

    /// Closes idle connections unused for longer than the idle timeout; returns how many.
    @discardableResult
    public func closeIdle(olderThan age: Duration? = nil) -> Int {
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

    // MARK: - Granting

    private func acquire(_ key: Key, deadline: ContinuousClock.Instant) async throws -> Grant {
        if isClosed { throw TenantryError(code: .conflict, message: "pool \(name) is closed") }
        // Nobody waits: serve at once. Otherwise queue behind the others, so that a flooding
        // tenant cannot take every freed slot.
        if rotation.isEmpty, let grant = grantNow(key) { return grant }
        nextID += 1
        let id = nextID
        let timer = Task { [weak self] in
            try await Task.sleep(until: deadline)
            await self?.expire(key, id: id)
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters[key, default: []].append(Waiter(id: id, continuation: continuation))
                if !rotation.contains(key) { rotation.append(key) }
                dispatch()
            }
        } onCancel: {
            Task { await self.expire(key, id: id, cancelled: true) }
        }
    }

    /// A grant for `key` without waiting, if capacity allows; reserves it.
    private func grantNow(_ key: Key) -> Grant? {
        if held[key, default: 0] >= (key.limit ?? configuration.maxPerKey) { return nil }
        if let entry = idle[key]?.popLast() {
            if idle[key]?.isEmpty == true { idle[key] = nil }
            held[key, default: 0] += 1
            return .connection(entry.id, entry.connection, .now - entry.since)
        }
        if openTotal < configuration.maxConnections || evictLeastRecentlyUsed(except: key) {
            openTotal += 1
            opening += 1
            held[key, default: 0] += 1
            stats.peakOpen = max(stats.peakOpen, openTotal)
            return .open
        }
        return nil
    }

    /// Serves waiting keys round-robin while capacity allows. A key at its own maximum is skipped;
    /// when the server cap stops the front key, it keeps its place for the next free slot.
    private func dispatch() {
        var served = true
        while served, !rotation.isEmpty {
            served = false
            for _ in 0..<rotation.count {
                let key = rotation.removeFirst()
                guard var queue = waiters[key], !queue.isEmpty else { waiters[key] = nil; continue }
                if held[key, default: 0] >= (key.limit ?? configuration.maxPerKey) {
                    rotation.append(key)
                    continue
                }
                guard let grant = grantNow(key) else { rotation.append(key); continue }
                let waiter = queue.removeFirst()
                waiters[key] = queue.isEmpty ? nil : queue
                if !queue.isEmpty { rotation.append(key) }
                waiter.continuation.resume(returning: grant)
                served = true
            }
        }
    }

    /// Closes the least recently used idle connection of another key, making room at the cap.
    private func evictLeastRecentlyUsed(except key: Key) -> Bool {
        var victim: (Key, Int, ContinuousClock.Instant)?
        for (other, list) in idle where other != key {
            for (index, entry) in list.enumerated() where victim == nil || entry.since < victim!.2 {
                victim = (other, index, entry.since)
            }
        }
        guard let (other, index, _) = victim, var list = idle[other] else { return false }
        let entry = list.remove(at: index)
        idle[other] = list.isEmpty ? nil : list
        Self.closeQuietly(entry.connection)
        openTotal -= 1
        stats.evictions += 1
        return true
    }

    private func expire(_ key: Key, id: Int, cancelled: Bool = false) {
        guard var queue = waiters[key], let index = queue.firstIndex(where: { $0.id == id }) else { return }
        let waiter = queue.remove(at: index)
        waiters[key] = queue.isEmpty ? nil : queue
        if cancelled {
            waiter.continuation.resume(throwing: CancellationError())
            return
        }
        stats.leaseTimeouts += 1
        let leased = held.values.reduce(0, +)
        waiter.continuation.resume(throwing: TenantryError(
            code: .timeout,
            message: "no connection for \(key) within \(Self.seconds(configuration.leaseTimeout)) "
                + "(pool \(name): \(leased) of \(configuration.maxConnections) connections in use, "
                + "\(held[key, default: 0]) of \(key.limit ?? configuration.maxPerKey) for this tenant)"))
    }

    /// Drops a reservation or a broken connection of `key`.
    private func forget(_ key: Key, discarded: Bool) {
        held[key, default: 1] -= 1
        openTotal -= 1
        if discarded { stats.discarded += 1 }
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
