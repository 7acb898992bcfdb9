import PostgresNIO
import TenantryCore

extension TenantPool {
    /// Leases a connection for `key`, runs `body` with it and gives it back, like PostgresNIO's
    /// `PostgresClient.withConnection`. A connection that is closed afterwards, or whose body threw
    /// a connection failure (``Database/isConnectionFailure(_:)``), is discarded rather
    /// than kept idle.
    public nonisolated func withConnection<Result: Sendable>(
        _ key: Key, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let lease = try await self.lease(key)
        do {
            let result = try await body(lease.connection)
            await release(lease)
            return result
        } catch {
            await release(lease, discard: lease.connection.isClosed || Database.isConnectionFailure(error))
            throw error
        }
    }
}
