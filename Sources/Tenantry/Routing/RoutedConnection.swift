import Logging
import PostgresNIO
import TenantryCore

/// A connection leased by the router for one tenant: either the tenant's own database or the
/// unified one (with `tenantry.tenant` set for row-level security). Queries through ``query(_:)``
/// are measured.
public struct RoutedConnection: Sendable {
    /// The underlying connection (queries run on it directly are not measured).
    public let connection: PostgresConnection
    /// The tenant.
    public let tenant: TenantID
    /// Which database this is.
    public let source: Route.Source
    /// The logger.
    public let logger: Logger
    let observer: (@Sendable (ObservedQuery) -> Void)?

    /// Runs a query, collects its rows, and records it with the monitor.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> [PostgresRow] {
        let start = ContinuousClock.now
        do {
            let rows = try await connection.query(query, logger: logger).collect()
            observer?(ObservedQuery(tenant: tenant, sql: query.sql, source: source, duration: .now - start, error: nil))
            return rows
        } catch {
            observer?(ObservedQuery(
                tenant: tenant, sql: query.sql, source: source, duration: .now - start, error: Database.message(of: error)))
            throw error
        }
    }
}
