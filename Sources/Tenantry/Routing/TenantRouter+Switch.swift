import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// Following a switch quickly: warm-up before it, the changed route read once by the listener, and
/// writes that waited on the old side sent to the new one. None of this decides where a write lands: the
/// fence and the capture guard's `moved` check do, and the router runs a rejected write again
/// (``TenantRouter/withTransaction(tenant:intent:isolation:_:)``). These only save round trips.
extension TenantRouter {
    /// Thrown (and handled by the router) when a write's route changed while it waited for a
    /// connection: nothing was run on that connection.
    struct RouteChanged: Error {}

    /// The cached route of `tenant`, while fresh.
    func cachedRoute(_ tenant: TenantID) -> Route? {
        let ttl = configuration.routeTTL
        guard let cached = state.withLockedValue({ $0.routes[tenant] }), cached.loaded + ttl > .now else { return nil }
        return cached.route
    }

    /// Caches `route` read from the catalog, unless a route with a newer epoch is cached already
    /// (a later read stored first); returns what is cached.
    func storeRoute(_ route: Route) -> Route {
        state.withLockedValue { state in
            if let cached = state.routes[route.tenant], cached.route.epoch > route.epoch { return cached.route }
            state.routes[route.tenant] = CachedRoute(route: route, loaded: .now)
            return route
        }
    }

    /// Whether `new` sends the tenant's writes elsewhere than `source` of `old`: another side, or —
    /// between servers — another tenant database.
    static func leaves(_ old: Route, source: Route.Source, for new: Route) -> Bool {
        if new.writeSource != source { return true }
        return source == .tenant && (new.server != old.server || new.database != old.database)
    }

    /// SQLSTATE 55P03 (`lock_not_available`: `lock_timeout`, `NOWAIT`) or 40P01
    /// (`deadlock_detected`: a straggler's insert and a re-copy's TRUNCATE can lock each other's
    /// tables in opposite order). Either way the transaction was rolled back.
    static func isLockTimeout(_ error: any Error) -> Bool {
        let state = Self.serverState(of: error)
        return state == "55P03" || state == "40P01"
    }

    // MARK: - Warm-up

    /// Opens up to ``Configuration/warmConnections`` connections in the pool of the side
    /// `tenant`'s writes are about to switch to: its tenant database while it is shared, the
    /// unified database while it is dedicated. Cutover and rollback announce themselves with a
    /// `warm:<tenant>` notification before they take the fence; the router warms on it. Returns
    /// how many connections it opened; never throws (a warm-up is an optimisation).
    @discardableResult
    public func warm(tenant: TenantID) async -> Int {
        let count = configuration.warmConnections
        guard count > 0, let route = try? await loadRoute(tenant) else { return 0 }
        let side: Route.Source = route.writeSource == .tenant ? .unified : .tenant
        guard side == .unified || (route.database != nil && route.role != nil),
              let (pool, key) = try? poolAndKey(side, route: route) else { return 0 }
        let opened = await pool.warm(key, idle: count)
        logger.debug("warmed connections ahead of a switch", metadata: [
            LogMetadataKey.tenant: "\(tenant)", "route.side": "\(side.rawValue)", "pool.opened": "\(opened)"])
        return opened
    }

    // MARK: - Tenant connections

    /// Sets ``Configuration/tenantLockTimeout`` on a new connection to a tenant database.
    func applyLockTimeout(_ connection: PostgresConnection) async throws {
        guard let timeout = configuration.tenantLockTimeout else { return }
        do {
            try await connection.query(
                PostgresQuery(unsafeSQL: "SET lock_timeout = '\(max(1, timeout.wholeMilliseconds))ms'"), logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
    }
}
