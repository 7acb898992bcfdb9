import Logging
import Metrics
import NIOConcurrencyHelpers
import PostgresNIO
import TenantryCore

/// The relay's connections to the endpoints of its routes, built on ``TenantPool`` (closure-scoped
/// leases, so every connection goes back — or is discarded when broken — in structured code).
///
/// Shared databases (the unified one) get a pool with no practical cap: every syncing tenant's
/// stream lives there, and a write's drain waits there for the tenant's relay lock. Databases of
/// one tenant get one pool per server, capped at ``Relay/Configuration/cachedConnections`` plus
/// two per concurrent tenant: when the cap is reached, the least recently used idle connection
/// of another tenant is closed (the pool's eviction).
final class RelayConnections: Sendable {
    private let configuration: Relay.Configuration
    private let logger: Logger
    private let pools = NIOLockedValueBox<[String: TenantPool]>([:])
    /// The URL of each pool key, by pool name (the pools' connectors read it).
    private let book = URLBook()

    init(configuration: Relay.Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs `body` with a connection to `endpoint` (for `tenant`'s stream), registered in `inUse`
    /// while the body runs.
    func withConnection<Result: Sendable>(
        _ endpoint: MoveEndpoint, tenant: TenantID, tracking inUse: ConnectionsInUse,
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let name = "relay \(endpoint.isShared ? "shared" : "tenant") \(endpoint.url.host):\(endpoint.url.port)"
        let key = TenantPool.Key(
            database: endpoint.url.database, user: endpoint.url.user, tenant: endpoint.isShared ? nil : tenant)
        book.set(endpoint.url, pool: name, key: key)
        return try await pool(name, shared: endpoint.isShared).withConnection(key) { connection in
            try inUse.insert(connection)
            defer { inUse.remove(connection) }
            return try await body(connection)
        }
    }

    private func pool(_ name: String, shared: Bool) -> TenantPool {
        pools.withLockedValue { pools in
            if let pool = pools[name] { return pool }
            var settings = TenantPool.Configuration()
            if shared {
                settings.maxConnections = 100_000
            } else {
                settings.maxConnections = max(1, configuration.cachedConnections) + 2 * max(1, configuration.concurrency)
            }
            settings.maxPerKey = settings.maxConnections
            // A database that is down fails the batch soon (then the relay's own backoff).
            settings.leaseTimeout = .seconds(5)
            // A burst of drains leaves connections idle: closed after a while (Relay sweeps them).
            settings.idleTimeout = .seconds(10)
            let (book, logger) = (book, logger)
            // The relay reports its own metrics (Relay.MetricName); its pools stay out of the
            // router's pool series, which dashboards read as the application's connections.
            let pool = TenantPool(name: name, configuration: settings, logger: logger, metricsFactory: NOOPMetricsHandler.instance) { key in
                guard let url = book.url(pool: name, key: key) else {
                    throw TenantryError(code: .connectionFailed, message: "cannot connect to \(key): no address known")
                }
                return try await Database.connect(url, logger: logger)
            }
            pools[name] = pool
            return pool
        }
    }

    /// Closes connections idle for longer than the pools' idle timeout.
    func closeIdle() async {
        for pool in pools.withLockedValue({ Array($0.values) }) { await pool.closeIdle() }
    }

    /// Closes every pool (connections in use close when they are given back); later calls open
    /// new pools.
    func close() async {
        let all = pools.withLockedValue { pools in
            defer { pools = [:] }
            return Array(pools.values)
        }
        for pool in all { await pool.close() }
    }
}

/// The URL behind each pool key (a key names a database and a login, not a server).
final class URLBook: Sendable {
    private let urls = NIOLockedValueBox<[String: [TenantPool.Key: PostgresURL]]>([:])

    func set(_ url: PostgresURL, pool: String, key: TenantPool.Key) {
        urls.withLockedValue { $0[pool, default: [:]][key] = url }
    }

    func url(pool: String, key: TenantPool.Key) -> PostgresURL? {
        urls.withLockedValue { $0[pool]?[key] }
    }
}

/// The connections one relay batch is using, so that a batch past its deadline can be stopped:
/// closing them ends its transactions (and the tenant's relay lock), the abandoned work fails
/// at once, and the pools discard the closed connections.
final class ConnectionsInUse: Sendable {
    private struct State {
        var connections: [ObjectIdentifier: PostgresConnection] = [:]
        var timedOut = false
        /// Set by ``closeAll()``: the batch is abandoned, it takes no new connection.
        var closed = false
    }

    private let state = NIOLockedValueBox(State())

    /// Registers a connection the batch starts using; throws when the batch was abandoned
    /// (``closeAll()``), so work that outlived its deadline cannot take a fresh connection and
    /// apply changes a newer batch is applying too.
    func insert(_ connection: PostgresConnection) throws {
        let abandoned = state.withLockedValue { state -> Bool in
            guard !state.closed else { return true }
            state.connections[ObjectIdentifier(connection)] = connection
            return false
        }
        if abandoned {
            throw TenantryError(code: .timeout, message: "this relay batch was abandoned (deadline or shutdown)")
        }
    }

    func remove(_ connection: PostgresConnection) {
        state.withLockedValue { _ = $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    /// Records that the batch's deadline passed.
    func markTimedOut() { state.withLockedValue { $0.timedOut = true } }

    /// Whether the batch's deadline passed.
    var timedOut: Bool { state.withLockedValue { $0.timedOut } }

    /// Closes every connection still in use, waiting for each close.
    func closeAll() async {
        let connections = state.withLockedValue { state in
            state.closed = true
            return Array(state.connections.values)
        }
        for connection in connections { try? await connection.close() }
    }
}
