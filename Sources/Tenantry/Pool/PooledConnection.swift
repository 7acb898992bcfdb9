import Logging
import PostgresNIO

/// What ``ConnectionPool`` needs of a connection. `PostgresConnection` conforms; tests use a fake
/// one, so that the pool's cap, fairness and eviction are checked without a server (like
/// PostgresNIO's `ConnectionPoolModule`).
public protocol PooledConnection: AnyObject, Sendable {
    /// Whether the connection is gone (closed by either side).
    var isClosed: Bool { get }
    /// Closes the connection; the pool awaits it before it counts the connection as closed.
    func close() async throws
    /// Whether the connection still answers (a round trip); the pool asks an idle connection
    /// before handing it out after ``ConnectionPool/Configuration/healthCheckAfter``, bounded by
    /// the lease's deadline.
    func isHealthy(logger: Logger) async -> Bool
    /// Whether `error`, thrown by a body that used the connection, means the connection is
    /// unusable (then ``ConnectionPool/withConnection(_:_:)`` discards it instead of keeping it idle).
    static func isConnectionFailure(_ error: any Error) -> Bool
}

extension PostgresConnection: PooledConnection {
    /// Runs `SELECT 1`.
    public func isHealthy(logger: Logger) async -> Bool {
        do {
            _ = try await query("SELECT 1", logger: logger)
            return true
        } catch {
            return false
        }
    }

    /// Closed, reset, or the server shutting down (``TenantRouter`` classifies the errors).
    public static func isConnectionFailure(_ error: any Error) -> Bool {
        Database.isConnectionFailure(error)
    }
}
