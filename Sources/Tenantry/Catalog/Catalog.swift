import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// The control plane: a typed store over the `tenantry` schema (tenants, servers, credentials,
/// moves, read policy, audit log).
///
/// Backed by a `PostgresClient`; run the client (or use ``withCatalog(_:logger:_:)``, which does).
public struct Catalog: Sendable {
    /// The pool the catalog queries run on.
    public let client: PostgresClient
    /// The logger for catalog queries.
    public let logger: Logger
    /// The catalog's URL, for work that needs a connection of its own (long-held locks, LISTEN).
    public let url: PostgresURL?
    /// The connections of ``lookup(_:)`` (`nil`: lookups run on `client`).
    let lookups: CatalogLookups?

    /// Uses a running `PostgresClient` connected to the catalog's database. Its ``lookup(_:)``s
    /// (the router's cache misses) run on `client` too; ``withCatalog(_:logger:_:)`` gives them
    /// connections of their own.
    public init(client: PostgresClient, url: PostgresURL? = nil, logger: Logger) {
        self.init(client: client, url: url, logger: logger, lookups: nil)
    }

    init(client: PostgresClient, url: PostgresURL?, logger: Logger, lookups: CatalogLookups?) {
        self.client = client
        self.url = url
        self.logger = logger
        self.lookups = lookups
    }

    /// Runs one short statement that the router runs on a cache miss (a route, a credential) and
    /// returns its rows. Under ``withCatalog(_:logger:_:)`` it runs on a few long-lived connections
    /// of its own (``CatalogLookups``), not on `client`: every lease of PostgresNIO's pool leaves a
    /// keep-alive and an idle timer allocated for up to a minute (~1.4 KB each lease), which a
    /// burst of 10,000 resolved tenants turned into ~28 MB. A lookup whose connection the server
    /// closed runs once more on a new one.
    public func lookup(_ query: PostgresQuery) async throws -> [PostgresRow] {
        if let lookups { return try await lookups.rows(query) }
        return try await client.query(query, logger: logger).collect()
    }

    /// Runs `body` on a connection of its own (not from the pool), so that waiting on a lock
    /// cannot starve the pool.
    public func withDedicatedConnection<Result: Sendable>(
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        guard let url else { return try await client.withConnection(body) }
        return try await Database.withConnection(url, logger: logger, body)
    }

    /// Connects to `url`, runs `body` with a catalog, then shuts the pool down.
    @discardableResult
    public static func withCatalog<Result: Sendable>(
        _ url: PostgresURL, logger: Logger, _ body: @Sendable (Catalog) async throws -> Result
    ) async throws -> Result {
        // Fail fast with a clear message when the server is unreachable or refuses the login;
        // the pool would otherwise retry with backoff for a minute.
        try await Database.withConnection(url, logger: logger) { _ in }
        // The pool's own logger only reports errors: its notices (such as a lease racing run()'s
        // start) are not the user's business.
        var backgroundLogger = logger
        backgroundLogger.logLevel = .error
        let client = PostgresClient(
            configuration: try url.clientConfiguration(maximumConnections: 8), backgroundLogger: backgroundLogger)
        let lookups = CatalogLookups(url: url, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            let outcome: Swift.Result<Result, any Error>
            do {
                outcome = .success(try await body(Catalog(client: client, url: url, logger: logger, lookups: lookups)))
            } catch {
                outcome = .failure(error)
            }
            await lookups.close()
            do {
                return try outcome.get()
            } catch let error as PSQLError {
                throw Database.wrap(error, "catalog at \(url)")
            }
        }
    }

    // MARK: - Schema

    /// What ``migrate(seedPolicy:)`` did.
    public struct MigrationReport: Sendable, Codable, Equatable {
        /// Versions applied by this run (empty when already current).
        public var applied: [Int]
        /// The catalog's version now.
        public var version: Int
    }

    /// Creates or upgrades the catalog schema. Idempotent, and safe when several run at once (an
    /// advisory lock serialises them; each migration commits with its version row).
    /// `seedPolicy` is stored as the read policy when the catalog is created.
    public func migrate(seedPolicy: ReadPolicy = ReadPolicy()) async throws -> MigrationReport {
        try await client.withConnection { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                try await connection.query(
                    "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.catalogMigration))",
                    logger: logger)
                try await requireTrustedSchemaOwner(on: connection)
                try await connection.query("CREATE SCHEMA IF NOT EXISTS tenantry", logger: logger)
                try await connection.query("""
                    CREATE TABLE IF NOT EXISTS tenantry.catalog_migrations (
                        version integer PRIMARY KEY,
                        name text NOT NULL,
                        checksum text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())
                    """, logger: logger)
                var appliedChecksums: [Int: String] = [:]
                let rows = try await connection.query(
                    "SELECT version, checksum FROM tenantry.catalog_migrations", logger: logger)
                for try await (version, checksum) in rows.decode((Int, String).self) {
                    appliedChecksums[version] = checksum
                }
                if let newest = appliedChecksums.keys.max(), newest > CatalogMigrations.latestVersion {
                    throw TenantryError(
                        code: .catalogNewerThanTool,
                        message: "the catalog is at version \(newest), newer than this tenantry (\(CatalogMigrations.latestVersion)); upgrade tenantry")
                }
                var applied: [Int] = []
                for migration in CatalogMigrations.all {
                    if let checksum = appliedChecksums[migration.version] {
                        guard checksum == migration.checksum else {
                            throw TenantryError(
                                code: .catalogMigration,
                                message: "catalog migration \(migration.version) was applied with different SQL (checksum mismatch)")
                        }
                        continue
                    }
                    do {
                        try await Database.execute(script: migration.sql, on: connection, logger: logger)
                    } catch {
                        throw Database.wrap(error, "catalog migration \(migration.version) (\(migration.name)) failed")
                    }
                    try await connection.query("""
                        INSERT INTO tenantry.catalog_migrations (version, name, checksum)
                        VALUES (\(migration.version), \(migration.name), \(migration.checksum))
                        """, logger: logger)
                    if migration.version == 1 {
                        try await writePolicy(seedPolicy, on: connection)
                    }
                    applied.append(migration.version)
                }
                return MigrationReport(applied: applied, version: CatalogMigrations.latestVersion)
            }
        }
    }

    /// Refuses a `tenantry` schema that exists and is owned by a role other than the connecting
    /// login, unless that owner is a superuser: its owner could plant functions or tables there
    /// that Tenantry's own (often superuser) sessions would then run. A superuser-owned schema is
    /// accepted because a superuser can do anything on the server anyway.
    func requireTrustedSchemaOwner(on connection: PostgresConnection) async throws {
        try await Self.requireTrustedSchemaOwner(on: connection, logger: logger)
    }

    /// ``requireTrustedSchemaOwner(on:)`` for any database Tenantry writes schema `tenantry` into
    /// (the catalog's, the unified database's capture, a tenant database's reverse capture).
    static func requireTrustedSchemaOwner(on connection: PostgresConnection, logger: Logger) async throws {
        let rows = try await connection.query("""
            SELECT r.rolname, r.rolsuper, current_user::text
            FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = 'tenantry'
            """, logger: logger)
        for try await (owner, ownerIsSuperuser, login) in rows.decode((String, Bool, String).self)
        where owner != login && !ownerIsSuperuser {
            throw TenantryError(
                code: .catalogMigration,
                message: "schema tenantry already exists and is owned by role \(owner), not by \(login): "
                    + "its owner could plant functions that Tenantry would run; drop it or change its owner "
                    + "(ALTER SCHEMA tenantry OWNER TO \(login)) after checking its contents")
        }
    }

    /// The catalog's schema version, or 0 when it has not been created.
    public func version() async throws -> Int {
        try await client.withConnection { connection in
            let exists = try await connection.query(
                "SELECT to_regclass('tenantry.catalog_migrations') IS NOT NULL", logger: logger)
            guard try await exists.decode(Bool.self).first(where: { _ in true }) == true else { return 0 }
            let rows = try await connection.query(
                "SELECT coalesce(max(version), 0) FROM tenantry.catalog_migrations", logger: logger)
            return try await rows.decode(Int.self).first(where: { _ in true }) ?? 0
        }
    }

    /// Throws `catalogNotInitialized` unless the catalog is at this tool's version.
    public func requireCurrent() async throws {
        let version = try await version()
        if version == 0 {
            throw TenantryError(code: .catalogNotInitialized, message: "the Tenantry catalog does not exist in this database: run 'tenantry init'")
        }
        if version < CatalogMigrations.latestVersion {
            throw TenantryError(
                code: .catalogNotInitialized,
                message: "the Tenantry catalog is at version \(version), this tenantry needs \(CatalogMigrations.latestVersion): run 'tenantry init'")
        }
        if version > CatalogMigrations.latestVersion {
            throw TenantryError(
                code: .catalogNewerThanTool,
                message: "the catalog is at version \(version), newer than this tenantry (\(CatalogMigrations.latestVersion)); upgrade tenantry")
        }
    }
}
