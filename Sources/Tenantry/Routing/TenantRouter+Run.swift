import Logging
import PostgresNIO
import ServiceLifecycle
import TenantryCore

extension TenantRouter {
    /// Listens for route changes (`LISTEN tenantry_routes`, reconnecting with backoff; every
    /// reconnect drops the whole cache, since notifications may have been missed) and closes idle
    /// connections (every 500 ms, awaiting the closes), until cancelled or shut down gracefully.
    /// Then closes every pool and returns when their connections are closed.
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.listenForRouteChanges() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(500))
                    for pool in self.state.withLockedValue({ Array($0.pools.values) }) { await pool.closeIdle() }
                }
            }
            // Returns on graceful shutdown (ServiceGroup), throws on cancellation: either way, stop.
            try? await gracefulShutdown()
            group.cancelAll()
        }
        for pool in state.withLockedValue({ Array($0.pools.values) }) { await pool.close() }
    }

    func listenForRouteChanges() async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                try await catalog.withDedicatedConnection { connection in
                    let notifications = try await connection.listen("tenantry_routes")
                    invalidateRoutes()
                    listening.set(true)
                    defer { listening.set(false) }
                    backoff = .milliseconds(100)
                    // A warm-up runs beside the loop, so notifications keep being applied meanwhile.
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await notification in notifications {
                            if let tenant = Self.warmRequest(notification.payload) {
                                group.addTask { await self.warm(tenant: tenant) }
                            } else if let tenant = handle(notification.payload) {
                                // Read the changed route once, here, so the writers a fence
                                // releases find it cached instead of each reading the catalog.
                                group.addTask { _ = try? await self.loadRoute(tenant) }
                            }
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("route listener lost its connection; reconnecting", metadata: [
                    "error": "\(Database.message(of: error))"])
            }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    /// Applies a route notification: `tenants:<id>` and `moves:<id>` drop the tenant's cached
    /// route, `read_policy:…` drops the policy. Returns the tenant whose cached route was dropped
    /// (the listener reads it again at once). Anything after the id is ignored: a notification
    /// can be sent by any session of the catalog's database, so it only ever causes a catalog read.
    @discardableResult
    func handle(_ payload: String) -> TenantID? {
        let parts = payload.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2 else { return nil }
        switch parts[0] {
        case "tenants", "moves":
            guard let tenant = try? TenantID(parts[1]) else { return nil }
            let cached = state.withLockedValue { $0.routes.removeValue(forKey: tenant) != nil }
            return cached ? tenant : nil
        case "read_policy":
            state.withLockedValue { $0.policy = nil }
        default:
            break
        }
        return nil
    }

    /// The tenant of a `warm:<tenant>` notification (a cutover or rollback about to take its fence).
    static func warmRequest(_ payload: String) -> TenantID? {
        guard payload.hasPrefix(warmPrefix) else { return nil }
        return try? TenantID(String(payload.dropFirst(warmPrefix.count)))
    }

    /// The prefix of a warm-up request on `tenantry_routes`.
    static let warmPrefix = "warm:"
}

extension TenantRouter {
    /// Runs `body` while the router runs (route notifications, idle closing), then stops it and
    /// closes its connections.
    public func running<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await self.run(); return nil }
            group.addTask { try await body() }
            defer { group.cancelAll() }
            while let value = try await group.next() {
                if let value { return value }
            }
            throw CancellationError()
        }
    }
}
