import Logging
import PostgresNIO
import TenantryCore
import Tracing

extension TenantRouter {
    /// A transaction's isolation level (PostgreSQL's three).
    public enum Isolation: String, Sendable, CaseIterable, Codable {
        /// `READ COMMITTED` (PostgreSQL's default).
        case readCommitted = "read committed"
        /// `REPEATABLE READ`.
        case repeatableRead = "repeatable read"
        /// `SERIALIZABLE`.
        case serializable

        var sql: String { rawValue.uppercased() }
    }

    /// Runs `body` on a connection of `source` for the route's tenant (the pool's
    /// `withConnection`). A broken connection is discarded; when `retrySafe` (reads, or before the
    /// body started) the lease is retried once — never after the COMMIT was sent: a connection
    /// that breaks then leaves the outcome unknown (the server may have committed), so running the
    /// body again could apply it twice; that is a ``TenantryError/Code/connectionFailed`` saying so.
    ///
    /// With `recheck` (writes), the cached route is looked at again once the connection is leased:
    /// when it no longer sends the tenant's writes to `source` (a switch happened while this waited
    /// for the connection), nothing is run and ``RouteChanged`` is thrown.
    func run<Result: Sendable>(
        on source: Route.Source, route: Route, retrySafe: Bool, transaction: Bool, isolation: Isolation = .readCommitted,
        recheck: Bool = false, _ body: (RoutedConnection) async throws -> Result
    ) async throws -> Result {
        let (pool, key) = try poolAndKey(source, route: route)
        for attempt in 0..<2 {
            var bodyStarted = false
            var broken = false
            var commitSent = false
            // `pool.lease` ends when the pool hands the connection over; `query` covers the rest.
            var lease = leaseSpan(source, route: route, key: key)
            do {
                return try await pool.withConnection(key) { connection in
                    lease?.end()
                    lease = nil
                    if recheck, let current = cachedRoute(route.tenant), Self.leaves(route, source: source, for: current) {
                        throw RouteChanged()
                    }
                    return try await TenantryTracing.withSpan("query", tenant: route.tenant, kind: .client, child: true) { span in
                        span?.attributes[TenantryTracing.Key.dbSystem] = "postgresql"
                        span?.attributes[TenantryTracing.Key.source] = source.rawValue
                        span?.attributes[TenantryTracing.Key.dbName] = key.database
                        do {
                            let routed = RoutedConnection(
                                connection: connection, tenant: route.tenant, source: source, logger: logger,
                                monitor: configuration.monitor, observer: observer, queryTimeout: configuration.queryTimeout)
                            if transaction {
                                try await connection.queryIfOpen(PostgresQuery(unsafeSQL: "BEGIN ISOLATION LEVEL \(isolation.sql)"), logger: logger)
                            }
                            if source == .unified {
                                try await connection.queryIfOpen(
                                    "SELECT set_config('tenantry.tenant', \(route.tenant.rawValue), \(transaction))", logger: logger)
                            }
                            bodyStarted = true
                            let result = try await body(routed)
                            if transaction {
                                commitSent = true
                                try await connection.queryIfOpen("COMMIT", logger: logger)
                            }
                            return result
                        } catch {
                            // The same test withConnection makes to discard the connection.
                            broken = connection.isClosed || Database.isConnectionFailure(error)
                            if transaction && !broken { _ = try? await connection.query("ROLLBACK", logger: logger) }
                            throw error
                        }
                    }
                }
            } catch let error where lease != nil {
                lease?.fail(error)
                throw error
            } catch where broken && commitSent {
                throw TenantryError(
                    code: .connectionFailed,
                    message: "the connection to tenant \(route.tenant)'s database \(Self.commitOutcomeUnknown): the transaction "
                        + "may have committed; it was not run again", tenant: route.tenant.rawValue, underlying: error)
            } catch where broken && attempt == 0 && (retrySafe || !bodyStarted) {
                continue
            }
        }
        throw TenantryError(code: .database, message: "unreachable: retry loop ended")
    }

    /// The `pool.lease` span of a lease about to be asked for (`nil` when tracing is off).
    private func leaseSpan(_ source: Route.Source, route: Route, key: TenantPool.Key) -> (any Span)? {
        guard let span = TenantryTracing.startSpan("pool.lease", tenant: route.tenant, child: true) else { return nil }
        span.attributes[TenantryTracing.Key.source] = source.rawValue
        span.attributes[TenantryTracing.Key.server] = source == .tenant ? route.server ?? ServerDirectory.defaultServerName
            : ServerDirectory.defaultServerName
        span.attributes[TenantryTracing.Key.dbName] = key.database
        return span
    }

    /// In the message of the error a COMMIT whose outcome is unknown gives (never run again).
    static let commitOutcomeUnknown = "broke during COMMIT"

    /// The pool of the route's server and the key of its database for `source`.
    func poolAndKey(_ source: Route.Source, route: Route) throws -> (TenantPool, TenantPool.Key) {
        switch source {
        case .unified:
            let url = configuration.unifiedURL
            return (pool(for: ServerDirectory.defaultServerName),
                    TenantPool.Key(database: url.database, user: url.user, limit: configuration.pool.maxConnections))
        case .tenant:
            guard let database = route.database, let role = route.role else {
                throw TenantryError(code: .tenantNotFound, message: "tenant \(route.tenant) has no database", tenant: route.tenant.rawValue)
            }
            return (pool(for: route.server ?? ServerDirectory.defaultServerName),
                    TenantPool.Key(database: database, user: role, tenant: route.tenant))
        }
    }

    /// The pool of `server`, created on first use.
    func pool(for server: String) -> TenantPool {
        state.withLockedValue { state in
            if let pool = state.pools[server] { return pool }
            var poolConfiguration = configuration.pool
            if let cap = configuration.serverCaps[server] { poolConfiguration.maxConnections = cap }
            let pool = TenantPool(
                name: server, configuration: poolConfiguration, logger: logger, metricsFactory: configuration.metricsFactory
            ) { [self] key in
                try await connect(key, server: server)
            }
            state.pools[server] = pool
            return pool
        }
    }

    /// Opens a connection for a pool key: tenant keys log in with the registry's credentials (on an
    /// authentication failure the cached password is dropped and the login retried once) and get
    /// ``Configuration/tenantLockTimeout``.
    func connect(_ key: TenantPool.Key, server: String) async throws -> PostgresConnection {
        guard let tenant = key.tenant else {
            return try await Database.connect(configuration.unifiedURL, logger: logger)
        }
        let base = try servers.adminURL(server: server == ServerDirectory.defaultServerName ? nil : server, database: key.database)
        for attempt in 0..<2 {
            let credentials = try await registry.credentials(for: tenant)
            do {
                let connection = try await Database.connect(
                    base.with(user: credentials.username, password: credentials.password), logger: logger)
                try await applyLockTimeout(connection)
                return connection
            } catch where attempt == 0 && Self.serverState(of: error) == "28P01" {
                await registry.invalidate(tenant)
            }
        }
        throw TenantryError(code: .database, message: "cannot log in as tenant \(tenant)", tenant: tenant.rawValue)
    }
}
