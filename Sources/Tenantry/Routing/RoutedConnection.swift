import Logging
import PostgresNIO
import TenantryCore

/// A connection leased by the router for one tenant: either the tenant's own database or the
/// unified one (with `tenantry.tenant` set for row-level security). Queries through ``query(_:)``
/// are measured: each one is recorded with the router's ``PerformanceMonitor`` (when it has one)
/// as a ``QueryMetric`` with the tenant, table, kind, duration, outcome and source.
public struct RoutedConnection: Sendable {
    /// The underlying connection (queries run on it directly are not measured).
    public let connection: PostgresConnection
    /// The tenant.
    public let tenant: TenantID
    /// Which database this is.
    public let source: Route.Source
    /// The logger.
    public let logger: Logger
    let monitor: PerformanceMonitor?
    let observer: (@Sendable (ObservedQuery) -> Void)?
    /// ``TenantRouter/Configuration/queryTimeout``.
    var queryTimeout: Duration? = nil

    /// Runs a query, collects its rows, and records it with the monitor.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        let start = ContinuousClock.now
        do {
            let rows: [PostgresRow]
            if let queryTimeout {
                let (connection, logger) = (connection, logger)
                do {
                    rows = try await withDeadline(queryTimeout, "a query for tenant \(tenant)") {
                        try await connection.queryIfOpen(query, logger: logger).collect()
                    }
                } catch let error as TenantryError where error.code == .timeout {
                    // The connection may never answer: close it, so its lease is discarded.
                    try? await connection.close()
                    throw error
                }
            } else {
                rows = try await connection.queryIfOpen(query, logger: logger).collect()
            }
            record(query.sql, duration: .now - start, error: nil)
            return rows
        } catch {
            record(query.sql, duration: .now - start, error: error)
            throw error
        }
    }

    private func record(_ sql: String, duration: Duration, error: (any Error)?) {
        if let monitor {
            monitor.record(QueryMetric(
                tenant: tenant.rawValue, sql: sql, duration: duration, success: error == nil,
                error: error.map(QueryMetric.errorSummary), source: source))
        }
        if let observer {
            observer(ObservedQuery(
                tenant: tenant, sql: sql, source: source, duration: duration, error: error.map(Database.message(of:))))
        }
    }
}
