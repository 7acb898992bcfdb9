import TenantryCore

/// Warming: connections opened before they are needed.
///
/// A cutover switches a tenant's writes to a database the pool may hold no connection to; every
/// writer released by the fence would then fork and authenticate a backend of its own. The router
/// warms the side a tenant is about to switch to (``TenantRouter/warm(tenant:)``), so the released
/// writers find idle connections.
extension ConnectionPool {
    /// Opens connections for `key`, concurrently, until `count` of its connections are idle, within
    /// the key's maximum and the server cap (nothing is evicted for a warm-up), and returns how many
    /// it opened once they are idle. A connect that fails or outlasts the lease timeout is dropped
    /// (counted as a connect failure); the warm-up is an optimisation, never an error.
    @discardableResult
    public func warm(_ key: Key, idle count: Int) async -> Int {
        guard !isClosed else { return 0 }
        let idleNow = idle[key]?.count ?? 0
        let have = idleNow + warming[key, default: 0]
        let room = min(limit(of: key) - held[key, default: 0] - idleNow, configuration.maxConnections - openTotal)
        let need = min(count - have, room)
        guard need > 0 else { return 0 }
        // Reserved like a lease's `.open` grant, so leases meanwhile see the slots as taken.
        openTotal += need
        opening += need
        warming[key, default: 0] += need
        held[key, default: 0] += need
        heldTotal += need
        stats.peakOpen = max(stats.peakOpen, openTotal)
        recordGauges()
        let connector = connector
        let deadline = ContinuousClock.now + configuration.leaseTimeout
        var opened = 0
        await withTaskGroup(of: Connection?.self) { group in
            for _ in 0..<need {
                group.addTask {
                    try? await Deadline.run(
                        until: deadline, timeout: { TenantryError(code: .timeout, message: "warming \(key) timed out") },
                        onLate: { late in try? await late.close() }, { try await connector(key) })
                }
            }
            for await connection in group {
                opening -= 1
                let left = warming[key, default: 1] - 1
                warming[key] = left > 0 ? left : nil
                guard let connection else {
                    stats.connectFailures += 1
                    metrics.connectFailures.increment()
                    forget(key, discarded: false)
                    continue
                }
                stats.connects += 1
                metrics.connects.increment()
                nextID += 1
                opened += 1
                // Given back like a lease: idle (or closed when the pool closed meanwhile), and
                // handed to a waiter of the key when there is one.
                await release(Lease(key: key, connection: connection, id: nextID))
            }
        }
        return opened
    }
}
