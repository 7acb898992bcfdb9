import TenantryCore

extension ConnectionPool {
    /// Limits and timings of one server's pool.
    public typealias Configuration = ConnectionPoolConfiguration
    /// What a pool connects to: one database as one role.
    public typealias Key = ConnectionPoolKey
    /// Counters of one pool.
    public typealias Statistics = ConnectionPoolStatistics
}

/// Limits and timings of one server's pool (``ConnectionPool/Configuration``; one type for every
/// kind of connection).
public struct ConnectionPoolConfiguration: Sendable, Equatable {
    /// Hard cap of open connections to the server, across every database and tenant.
    public var maxConnections: Int = 50
    /// Most connections one key (one tenant database) may hold (`TENANT_DB_MAX_POOL_SIZE`).
    public var maxPerKey: Int = 20
    /// An idle connection is closed after this (`TENANT_DB_IDLE_TIMEOUT`).
    public var idleTimeout: Duration = .seconds(30)
    /// How long a lease may wait before failing (`TENANT_DB_CONNECTION_TIMEOUT`).
    public var leaseTimeout: Duration = .seconds(10)
    /// An idle connection unused for longer than this is checked (``PooledConnection/isHealthy(logger:)``,
    /// `SELECT 1`) before it is handed out.
    public var healthCheckAfter: Duration = .seconds(5)
    /// First delay before retrying a failed connect (doubles, up to 2 s).
    public var connectBackoff: Duration = .milliseconds(100)

    /// Defaults.
    public init() {}

    /// From the environment's pool settings.
    public init(_ pool: TenantryConfiguration.Pool) {
        maxConnections = pool.maxPerServer
        maxPerKey = pool.maxPerTenant
        idleTimeout = pool.idleTimeout
        leaseTimeout = pool.connectionTimeout
    }
}

/// What a pool connects to: one database as one role (``ConnectionPool/Key``). Connections are
/// shared by everyone with the same key (every tenant of the unified database shares its key).
public struct ConnectionPoolKey: Hashable, Sendable, CustomStringConvertible {
    /// The database.
    public var database: String
    /// The role.
    public var user: String
    /// The most connections this key may hold (`nil`: the pool's `maxPerKey`).
    public var limit: Int?
    /// The tenant whose database this is (`nil` for a shared database); not part of equality.
    public var tenant: TenantID?
    /// Creates a key.
    public init(database: String, user: String, limit: Int? = nil, tenant: TenantID? = nil) {
        self.database = database
        self.user = user
        self.limit = limit
        self.tenant = tenant
    }
    public var description: String { "\(user)@\(database)" }
    public static func == (lhs: ConnectionPoolKey, rhs: ConnectionPoolKey) -> Bool { lhs.database == rhs.database && lhs.user == rhs.user }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(database)
        hasher.combine(user)
    }
}

/// Counters of one pool (``ConnectionPool/Statistics``; the metrics, ``TenantRouter/MetricName``,
/// are emitted as the same events happen).
public struct ConnectionPoolStatistics: Sendable, Codable, Equatable {
    /// Open connections (idle + leased + being opened).
    public var open = 0
    /// Idle connections.
    public var idle = 0
    /// Leased connections.
    public var leased = 0
    /// Callers waiting for a connection.
    public var waiting = 0
    /// Connections opened since start.
    public var connects = 0
    /// Failed connection attempts.
    public var connectFailures = 0
    /// Idle connections closed to make room for another key.
    public var evictions = 0
    /// Idle connections closed by the idle timeout.
    public var idleClosed = 0
    /// Broken connections discarded.
    public var discarded = 0
    /// Leases that timed out.
    public var leaseTimeouts = 0
    /// Leases granted.
    public var leases = 0
    /// Total time leases waited, in milliseconds.
    public var leaseWaitTotalMs = 0.0
    /// The longest a lease waited, in milliseconds.
    public var leaseWaitMaxMs = 0.0
    /// The most connections ever open at once.
    public var peakOpen = 0
}
