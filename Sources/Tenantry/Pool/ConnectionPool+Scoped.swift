import TenantryCore

extension ConnectionPool {
    /// Leases a connection for `key`, runs `body` with it and gives it back, like PostgresNIO's
    /// `PostgresClient.withConnection`. Waits fairly for a free connection, up to the lease timeout
    /// (then throws ``TenantryError/Code/timeout``). A connection that is closed afterwards, or
    /// whose body threw a connection failure (``PooledConnection/isConnectionFailure(_:)``), is
    /// closed and discarded rather than kept idle, before this returns.
    public nonisolated func withConnection<Result: Sendable>(
        _ key: Key, _ body: (Connection) async throws -> Result
    ) async throws -> Result {
        let lease = try await self.lease(key)
        do {
            let result = try await body(lease.connection)
            await release(lease)
            return result
        } catch {
            await release(lease, discard: lease.connection.isClosed || Connection.isConnectionFailure(error))
            throw error
        }
    }
}
