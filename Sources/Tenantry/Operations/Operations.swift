import Foundation
import Logging
import Metrics
import PostgresNIO
import TenantryCore

/// The phases of a move as operations, shared by the `tenantry` CLI and the admin API: each one
/// selects tenants, runs the move components (``TenantProvisioner``, ``Copier``, ``Relay``,
/// ``Verifier``, ``Cutover``, ``Retirement``), reports progress and returns a `Codable` report.
///
/// ```swift
/// try await Operations.with(configuration: configuration, databaseURL: url, actor: "cli:ana", logger: logger) { operations in
///     let move = try await operations.move()
///     let report = try await move.migrateData(.all, concurrency: 2)
/// }
/// ```
public struct Operations: Sendable {
    /// The validated configuration (naming, retirement settings, keyring, …).
    public var configuration: TenantryConfiguration
    /// The catalog.
    public var catalog: Catalog
    /// Admin logins per server.
    public var servers: ServerDirectory
    /// The unified database.
    public var databaseURL: PostgresURL
    /// Who acts, for the audit log (`cli:<user>`, `api:<token fingerprint>`).
    public var actor: String
    /// The logger.
    public var logger: Logger

    /// Operations over a running `catalog` (which must be current). `databaseURL` is the unified
    /// database; the server directory is read from the catalog now (see ``refreshed()``).
    public static func make(
        configuration: TenantryConfiguration, catalog: Catalog, databaseURL: PostgresURL, actor: String, logger: Logger
    ) async throws -> Operations {
        try await catalog.requireCurrent()
        let directory = ServerDirectory(
            databaseURL: databaseURL, superuser: configuration.superuser, superuserPassword: configuration.superuserPassword,
            servers: try await catalog.servers(), keyring: configuration.keyring)
        return Operations(
            configuration: configuration, catalog: catalog, servers: directory, databaseURL: databaseURL, actor: actor,
            logger: logger)
    }

    /// Connects to the catalog (`catalogURL`, default `databaseURL`), runs `body`, then closes it.
    public static func with<Result: Sendable>(
        configuration: TenantryConfiguration, databaseURL: PostgresURL, catalogURL: PostgresURL? = nil, actor: String,
        logger: Logger, _ body: @Sendable (Operations) async throws -> Result
    ) async throws -> Result {
        try await Catalog.withCatalog(catalogURL ?? databaseURL, logger: logger) { catalog in
            let operations = try await make(
                configuration: configuration, catalog: catalog, databaseURL: databaseURL, actor: actor, logger: logger)
            return try await body(operations)
        }
    }

    /// The same operations with the server directory read again from the catalog (a long-lived
    /// service calls this per request, so servers registered meanwhile are known).
    public func refreshed() async throws -> Operations {
        try await Self.make(configuration: configuration, catalog: catalog, databaseURL: databaseURL, actor: actor, logger: logger)
    }

    /// The same operations acting as `actor`.
    public func acting(as actor: String) -> Operations {
        var copy = self
        copy.actor = actor
        return copy
    }

    /// A provisioner (needs `TENANT_ENCRYPTION_KEY` and, unless `needsMigrations` is false, the
    /// fleet migration files in `migrationsDirectory`, default `TENANTRY_MIGRATIONS`).
    public func provisioner(migrationsDirectory: String? = nil, needsMigrations: Bool = true) throws -> TenantProvisioner {
        let keyring = try configuration.requireKeyring()
        let directory = migrationsDirectory ?? configuration.migrationsDirectory
        let files: [MigrationFile]
        if FileManager.default.fileExists(atPath: directory) {
            files = try MigrationFile.load(directory: directory)
        } else if !needsMigrations {
            files = []
        } else {
            throw TenantryError(
                code: .invalidArgument,
                message: "migrations directory \(directory) does not exist: run 'tenantry schema derive' first "
                    + "(or set --migrations / TENANTRY_MIGRATIONS)")
        }
        return TenantProvisioner(
            catalog: catalog, servers: servers, keyring: keyring, naming: configuration.naming,
            migrations: files, connectionLimit: configuration.pool.maxPerTenant + 5,
            actor: actor, logger: logger)
    }

    /// A router over this catalog, measuring every query with `monitor` (pool limits from the
    /// configuration). Run it (``TenantRouter/run()``) while it is used.
    public func router(
        keyring: Keyring, monitor: PerformanceMonitor?, configure: (inout TenantRouter.Configuration) -> Void = { _ in }
    ) -> TenantRouter {
        var routerConfiguration = TenantRouter.Configuration(
            unifiedURL: databaseURL, pool: TenantPool.Configuration(configuration.pool))
        routerConfiguration.monitor = monitor
        routerConfiguration.tenantLockTimeout = configuration.pool.lockTimeout
        for server in servers.servers { routerConfiguration.serverCaps[server.name] = server.maxConnections }
        configure(&routerConfiguration)
        return TenantRouter(
            configuration: routerConfiguration, catalog: catalog, registry: CredentialRegistry(catalog: catalog, keyring: keyring),
            servers: servers, logger: logger)
    }

    /// A router run for a check only (doctor, performance compare): its pools must not overwrite
    /// the live router's pool gauges (same server labels) nor add its reads to the application's
    /// counters, so it reports no metrics.
    func diagnosticRouter(keyring: Keyring, monitor: PerformanceMonitor?) -> TenantRouter {
        router(keyring: keyring, monitor: monitor) { $0.metricsFactory = NOOPMetricsHandler.instance }
    }

    /// The move components over the unified database (reads the move plan from it).
    public func move() async throws -> MoveOperations {
        let unifiedURL = try servers.adminURL(server: nil, database: databaseURL.database)
        let discriminator = configuration.naming.discriminator
        let plan = try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await MovePlan.load(connection, discriminator: discriminator, logger: logger)
        }
        return MoveOperations(operations: self, unifiedURL: unifiedURL, plan: plan)
    }

    /// Provisioned tenants: active, with a database.
    public func provisionedTenants() async throws -> [TenantID] {
        try await catalog.tenants().filter { $0.status == .active && $0.databaseName != nil }.map(\.id)
    }
}

/// Which tenants an operation acts on.
public enum TenantSelection: Sendable, Equatable {
    /// Every tenant the operation applies to (e.g. every provisioned one, every syncing one).
    case all
    /// These tenants.
    case tenants([TenantID])

    /// `all` when `all` is true, else the ids given (each may be a comma-separated list).
    public static func parse(all: Bool, ids: [String]) throws -> TenantSelection {
        all ? .all : .tenants(try TenantID.parseList(ids))
    }
}

extension TenantID {
    /// Parses tenant ids given as strings (each may be a comma-separated list), without duplicates.
    public static func parseList(_ values: [String]) throws -> [TenantID] {
        var ids: [TenantID] = []
        for value in values {
            for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                let id = try TenantID(String(part).trimmingCharacters(in: .whitespaces))
                if !ids.contains(id) { ids.append(id) }
            }
        }
        return ids
    }
}

/// Progress of an operation over several tenants: one event per tenant finished.
public struct OperationProgress: Sendable, Codable, Equatable {
    /// Tenants finished (succeeded or failed).
    public var done: Int
    /// Tenants in all.
    public var total: Int
    /// The tenant just finished, if any.
    public var tenant: TenantID?
    /// Whether that tenant failed.
    public var failed: Bool
    /// A one-line description (no secret): the tenant's outcome.
    public var message: String

    /// An event.
    public init(done: Int, total: Int, tenant: TenantID? = nil, failed: Bool = false, message: String) {
        self.done = done
        self.total = total
        self.tenant = tenant
        self.failed = failed
        self.message = message
    }
}

/// Receives progress events (called from the operation's tasks).
public typealias ProgressHandler = @Sendable (OperationProgress) -> Void
