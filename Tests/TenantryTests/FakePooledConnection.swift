import Logging
import Metrics
import NIOConcurrencyHelpers
@testable import Tenantry
import TenantryCore

/// A connection of ``FakeServer``: no socket, only the state the pool looks at. The pool's rules
/// (cap, fairness, eviction) are unit-tested with it; its PostgreSQL behaviour is tested against
/// a real server in the router suites.
final class FakeConnection: PooledConnection {
    /// A failure a body reports as a broken connection.
    struct Failure: Error {}

    let key: String
    let number: Int
    let server: FakeServer
    private let state = NIOLockedValueBox((closed: false, closeCalls: 0, healthy: true))

    init(key: String, number: Int, server: FakeServer) {
        self.key = key
        self.number = number
        self.server = server
    }

    var isClosed: Bool { state.withLockedValue { $0.closed } }
    /// How often the pool called `close()`.
    var closeCalls: Int { state.withLockedValue { $0.closeCalls } }

    func close() async throws {
        let wasOpen = state.withLockedValue { state in
            defer { state.closed = true; state.closeCalls += 1 }
            return !state.closed
        }
        if wasOpen { server.ended() }
    }

    func isHealthy(logger: Logger) async -> Bool { state.withLockedValue { $0.healthy } }

    static func isConnectionFailure(_ error: any Error) -> Bool { error is Failure }

    /// The server ends the connection (a restart).
    func endFromServer() {
        let wasOpen = state.withLockedValue { state in
            defer { state.closed = true }
            return !state.closed
        }
        if wasOpen { server.ended() }
    }

    /// From now on the connection no longer answers a health check.
    func makeUnhealthy() { state.withLockedValue { $0.healthy = false } }
}

/// Counts what a real server would see: live sessions (and their peak), connects, and refuses
/// the next `failNext` connects.
final class FakeServer: Sendable {
    private struct State {
        var live = 0
        var peakLive = 0
        var connects: [String] = []
        var failNext = 0
        var connections: [FakeConnection] = []
        var holdConnects = false
        var heldConnects: [CheckedContinuation<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    /// Sessions open now.
    var live: Int { state.withLockedValue { $0.live } }
    /// The most sessions ever open at once.
    var peakLive: Int { state.withLockedValue { $0.peakLive } }
    /// The keys of every successful connect, in order.
    var connects: [String] { state.withLockedValue { $0.connects } }
    /// Every connection made, in order.
    var connections: [FakeConnection] { state.withLockedValue { $0.connections } }

    /// Refuses the next `count` connects.
    func failNext(_ count: Int) { state.withLockedValue { $0.failNext = count } }

    /// Connects wait (ignoring cancellation, like a server that accepted the socket and never
    /// answers) until ``answerHeldConnects()``.
    func holdConnects() { state.withLockedValue { $0.holdConnects = true } }
    /// Connects waiting now.
    var heldConnects: Int { state.withLockedValue { $0.heldConnects.count } }
    /// Lets the waiting connects (and later ones) through.
    func answerHeldConnects() {
        let held = state.withLockedValue { state in
            defer { state.heldConnects = []; state.holdConnects = false }
            return state.heldConnects
        }
        for continuation in held { continuation.resume() }
    }

    func connect(_ key: TenantPool.Key) async throws -> FakeConnection {
        try await Task.sleep(for: .milliseconds(1))
        await withCheckedContinuation { continuation in
            let hold = state.withLockedValue { state in
                if state.holdConnects { state.heldConnects.append(continuation) }
                return state.holdConnects
            }
            if !hold { continuation.resume() }
        }
        return try state.withLockedValue { state in
            if state.failNext > 0 {
                state.failNext -= 1
                throw TenantryError(code: .database, message: "connection refused")
            }
            state.live += 1
            state.peakLive = max(state.peakLive, state.live)
            state.connects.append(key.database)
            let connection = FakeConnection(key: key.database, number: state.connections.count, server: self)
            state.connections.append(connection)
            return connection
        }
    }

    func ended() { state.withLockedValue { $0.live -= 1 } }
}

/// The pool of fake connections.
typealias FakePool = ConnectionPool<FakeConnection>

extension FakePool {
    /// A pool named `unit` over `server`.
    static func make(
        _ server: FakeServer, cap: Int, perKey: Int = 20, leaseTimeout: Duration = .seconds(5),
        metricsFactory: (any MetricsFactory)? = nil,
        configure: (inout Configuration) -> Void = { _ in }
    ) -> FakePool {
        var configuration = Configuration()
        configuration.maxConnections = cap
        configuration.maxPerKey = perKey
        configuration.leaseTimeout = leaseTimeout
        configuration.connectBackoff = .milliseconds(5)
        configure(&configuration)
        return FakePool(
            name: "unit", configuration: configuration, logger: Logger(label: "pool-unit") { _ in SwiftLogNoOpLogHandler() },
            metricsFactory: metricsFactory, connector: { try await server.connect($0) })
    }

    /// Waits until `condition` holds for the pool's statistics (polls; fails after 5 s).
    func eventually(_ condition: @Sendable (Statistics) -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition(statistics()) {
            if ContinuousClock.now > deadline { throw TenantryError(code: .timeout, message: "condition not met: \(statistics())") }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}

/// A key of database `name`.
func key(_ name: String) -> TenantPool.Key { TenantPool.Key(database: name, user: "app") }

/// A gate one body waits at until it is opened.
struct Gate: Sendable {
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() { (stream, continuation) = AsyncStream.makeStream() }

    func wait() async { for await _ in stream {} }
    func open() { continuation.finish() }
}
