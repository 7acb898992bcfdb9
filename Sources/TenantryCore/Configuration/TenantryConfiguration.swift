import Foundation

/// Every setting Tenantry reads from the environment, parsed and validated in one place.
///
/// Parsing refuses any variable that is set with a bad value, whatever the command; a command that
/// needs a variable that is not set asks for it with the `require…` accessors. Each error is one
/// line naming the variable and what it must be.
public struct TenantryConfiguration: Sendable {
    /// `DATABASE_URL`: the unified (shared) database.
    public var databaseURL: PostgresURL?
    /// `TENANTRY_CATALOG_URL`: where the catalog lives; default: the database of `DATABASE_URL`.
    public var catalogURL: PostgresURL?
    /// `TENANT_ENCRYPTION_KEY` (64 hex) and `TENANT_ENCRYPTION_PREVIOUS_KEYS` (comma-separated).
    public var keyring: Keyring?
    /// `POSTGRES_SUPERUSER` / `POSTGRES_SUPERUSER_PASSWORD`: admin login for provisioning.
    public var superuser: String?
    /// The superuser's password. Never print it.
    public var superuserPassword: String?
    /// Pool settings.
    public var pool = Pool()
    /// Migration switches.
    public var migration = Migration()
    /// Performance monitor settings.
    public var monitor = Monitor()
    /// Legacy retirement settings.
    public var retirement = Retirement()
    /// Naming and schema settings.
    public var naming = Naming()
    /// `TENANTRY_MIGRATIONS`: the fleet migrations directory. Default `./migrations`.
    public var migrationsDirectory: String = "./migrations"
    /// `TENANTRY_ADMIN_TOKEN`: the admin API's bearer token (at least 16 characters).
    public var adminToken: String?
    /// `TENANTRY_VIEWER_TOKEN`: logs in to the console read-only (at least 16 characters, not
    /// the admin token). Default: none (no viewer logins).
    public var viewerToken: String?
    /// `TENANTRY_LOG_LEVEL`: the CLI's swift-log level. Default `warning`.
    public var logLevel: LogLevel = .warning
    /// `TENANTRY_PG_BIN`: where `initdb` and `pg_ctl` are for the embedded server; default: `PATH`,
    /// then `/usr/lib/postgresql/*/bin`.
    public var postgresBinDirectory: String?
    /// `TENANTRY_SERVER_URL`: the admin URL `tenantry servers add` registers when no argument is given.
    public var serverURL: PostgresURL?
    /// The HandyShop example service's settings.
    public var handyShop = HandyShop()
    /// Span export (`OTEL_EXPORTER_OTLP_ENDPOINT`, …): off by default.
    public var tracing = Tracing()

    /// The router's pool settings.
    public struct Pool: Sendable, Equatable {
        /// `TENANT_DB_MAX_POOL_SIZE`: most connections one tenant may hold. Default 20.
        public var maxPerTenant: Int = 20
        /// `TENANT_DB_IDLE_TIMEOUT` (ms): an idle connection is closed after this. Default 30 s.
        public var idleTimeout: Duration = .milliseconds(30_000)
        /// `TENANT_DB_CONNECTION_TIMEOUT` (ms): how long a lease may wait. Default 10 s.
        public var connectionTimeout: Duration = .milliseconds(10_000)
        /// `TENANTRY_SERVER_MAX_CONNECTIONS`: the hard cap of open connections per server, across
        /// all tenants. Default 50.
        public var maxPerServer: Int = 50
        /// `TENANT_DB_LOCK_TIMEOUT` (ms): `lock_timeout` of the router's connections to tenant
        /// databases; a write that times out on a database its tenant was switched away from runs
        /// again on the new side. `0`: the server's setting. Default 6 s (longer than a rollback's
        /// default fence limit, 5 s).
        public var lockTimeout: Duration? = .milliseconds(6_000)
        /// Defaults.
        public init() {}
    }

    /// The seed's migration switches.
    public struct Migration: Sendable, Equatable {
        /// `ENABLE_DUAL_WRITE`: capture and sync writes of moving tenants. Default false.
        public var dualWrite: Bool = false
        /// `ENABLE_TENANT_READS`: allow reads from tenant databases. Default false.
        public var tenantReads: Bool = false
        /// `MIGRATION_STRATEGY`: the initial read strategy. Default `unified`.
        public var strategy: ReadPolicy.Strategy = .unified
        /// `ENABLE_DUAL_WRITE` set to false explicitly: a tenant copied now starts with its sync
        /// paused (capture keeps the backlog). Unset: sync starts at once. Default false.
        public var pauseSyncAfterCopy: Bool = false
        /// Defaults.
        public init() {}
    }

    /// The performance monitor's settings.
    public struct Monitor: Sendable, Equatable {
        /// `SLOW_QUERY_THRESHOLD_MS`: queries slower than this are recorded as slow. Default 1 s.
        public var slowQueryThreshold: Duration = .milliseconds(1000)
        /// `MAX_METRICS_RETENTION`: raw query samples kept. Default 10,000.
        public var maxRetention: Int = 10_000
        /// Defaults.
        public init() {}
    }

    /// Legacy retirement settings.
    public struct Retirement: Sendable, Equatable {
        /// `VERIFY_BEFORE_RETIREMENT`: verify every tenant before deleting rows. Default true.
        public var verifyFirst: Bool = true
        /// `ARCHIVE_BEFORE_DELETE`: pg_dump before deleting rows. Default true.
        public var archiveFirst: Bool = true
        /// Defaults.
        public init() {}
    }

    /// Names of things Tenantry creates and reads.
    public struct Naming: Sendable, Equatable {
        /// `TENANTRY_DISCRIMINATOR`: the tenant key column. Default `shop_id`.
        public var discriminator: String = "shop_id"
        /// `TENANTRY_TENANT_TABLE`: the unified table that lists tenants. Default `shops`.
        public var tenantTable: String = "shops"
        /// `TENANTRY_DATABASE_TEMPLATE`: tenant database names. Default `shop_{id}_db`.
        public var databaseTemplate: String = "shop_{id}_db"
        /// `TENANTRY_ROLE_TEMPLATE`: tenant role names. Default `shop_user_{id}`.
        public var roleTemplate: String = "shop_user_{id}"
        /// `TENANTRY_TEMPLATE_DATABASE`: the template tenant databases are cloned from (one per
        /// server). Default `tenantry_template`.
        public var templateDatabase: String = "tenantry_template"
        /// Defaults.
        public init() {}

        /// The database name of `tenant`.
        public func databaseName(for tenant: TenantID) -> String {
            databaseTemplate.replacingOccurrences(of: "{id}", with: tenant.rawValue)
        }

        /// The role name of `tenant`.
        public func roleName(for tenant: TenantID) -> String {
            roleTemplate.replacingOccurrences(of: "{id}", with: tenant.rawValue)
        }
    }

    /// All defaults, nothing set.
    public init() {}

    /// Every variable this type reads.
    public static let variables = [
        "DATABASE_URL", "TENANTRY_CATALOG_URL", "TENANT_ENCRYPTION_KEY", "TENANT_ENCRYPTION_PREVIOUS_KEYS",
        "POSTGRES_SUPERUSER", "POSTGRES_SUPERUSER_PASSWORD", "TENANT_DB_MAX_POOL_SIZE", "TENANT_DB_IDLE_TIMEOUT",
        "TENANT_DB_CONNECTION_TIMEOUT", "TENANT_DB_LOCK_TIMEOUT", "TENANTRY_SERVER_MAX_CONNECTIONS", "ENABLE_DUAL_WRITE", "ENABLE_TENANT_READS",
        "MIGRATION_STRATEGY", "SLOW_QUERY_THRESHOLD_MS", "MAX_METRICS_RETENTION", "VERIFY_BEFORE_RETIREMENT",
        "ARCHIVE_BEFORE_DELETE", "TENANTRY_DISCRIMINATOR", "TENANTRY_TENANT_TABLE", "TENANTRY_DATABASE_TEMPLATE",
        "TENANTRY_ROLE_TEMPLATE", "TENANTRY_TEMPLATE_DATABASE", "TENANTRY_MIGRATIONS", "TENANTRY_ADMIN_TOKEN",
        "TENANTRY_VIEWER_TOKEN", "TENANTRY_LOG_LEVEL", "TENANTRY_PG_BIN", "TENANTRY_SERVER_URL", "HANDYSHOP_JWT_SECRET", "HANDYSHOP_JWT_AUDIENCE",
        "HANDYSHOP_JWT_ISSUER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME",
    ]

    /// Parses the environment. Unset (or empty) variables keep their defaults; a set variable
    /// with a bad value throws a ``TenantryError`` with code `configuration`.
    public init(environment: [String: String]) throws(TenantryError) {
        let reader = EnvironmentReader(environment: environment)
        databaseURL = try reader.url("DATABASE_URL")
        catalogURL = try reader.url("TENANTRY_CATALOG_URL")
        if let hex = reader.string("TENANT_ENCRYPTION_KEY") {
            let current = try EncryptionKey(hex: hex)
            var previous: [EncryptionKey] = []
            if let list = reader.string("TENANT_ENCRYPTION_PREVIOUS_KEYS") {
                for item in list.split(separator: ",") {
                    previous.append(try EncryptionKey(
                        hex: item.trimmingCharacters(in: .whitespaces), variable: "TENANT_ENCRYPTION_PREVIOUS_KEYS"))
                }
            }
            keyring = Keyring(current: current, previous: previous)
        } else if reader.string("TENANT_ENCRYPTION_PREVIOUS_KEYS") != nil {
            throw TenantryError(
                code: .configuration,
                message: "TENANT_ENCRYPTION_PREVIOUS_KEYS is set but TENANT_ENCRYPTION_KEY is not: set the current key too")
        }
        superuser = try reader.identifier("POSTGRES_SUPERUSER", what: "a PostgreSQL role name")
        superuserPassword = reader.string("POSTGRES_SUPERUSER_PASSWORD")
        pool.maxPerTenant = try reader.integer("TENANT_DB_MAX_POOL_SIZE", in: 1...10_000) ?? pool.maxPerTenant
        pool.idleTimeout = try reader.milliseconds("TENANT_DB_IDLE_TIMEOUT", minimum: 0) ?? pool.idleTimeout
        pool.connectionTimeout = try reader.milliseconds("TENANT_DB_CONNECTION_TIMEOUT", minimum: 1) ?? pool.connectionTimeout
        pool.maxPerServer = try reader.integer("TENANTRY_SERVER_MAX_CONNECTIONS", in: 1...100_000) ?? pool.maxPerServer
        if let lockTimeout = try reader.milliseconds("TENANT_DB_LOCK_TIMEOUT", minimum: 0) {
            pool.lockTimeout = lockTimeout == .zero ? nil : lockTimeout
        }
        if let dualWrite = try reader.boolean("ENABLE_DUAL_WRITE") {
            migration.dualWrite = dualWrite
            migration.pauseSyncAfterCopy = !dualWrite
        }
        migration.tenantReads = try reader.boolean("ENABLE_TENANT_READS") ?? migration.tenantReads
        if let name = reader.string("MIGRATION_STRATEGY") {
            guard let strategy = ReadPolicy.Strategy(name) else {
                throw TenantryError(
                    code: .configuration,
                    message: "MIGRATION_STRATEGY must be one of unified, tenant, percentage, shop-list, canary")
            }
            migration.strategy = strategy
        }
        monitor.slowQueryThreshold = try reader.milliseconds("SLOW_QUERY_THRESHOLD_MS", minimum: 0) ?? monitor.slowQueryThreshold
        monitor.maxRetention = try reader.integer("MAX_METRICS_RETENTION", in: 1...100_000_000) ?? monitor.maxRetention
        retirement.verifyFirst = try reader.boolean("VERIFY_BEFORE_RETIREMENT") ?? retirement.verifyFirst
        retirement.archiveFirst = try reader.boolean("ARCHIVE_BEFORE_DELETE") ?? retirement.archiveFirst
        naming.discriminator = try reader.identifier("TENANTRY_DISCRIMINATOR", what: "a column name") ?? naming.discriminator
        naming.tenantTable = try reader.identifier("TENANTRY_TENANT_TABLE", what: "a table name") ?? naming.tenantTable
        naming.databaseTemplate = try reader.nameTemplate("TENANTRY_DATABASE_TEMPLATE") ?? naming.databaseTemplate
        naming.roleTemplate = try reader.nameTemplate("TENANTRY_ROLE_TEMPLATE") ?? naming.roleTemplate
        naming.templateDatabase = try reader.identifier("TENANTRY_TEMPLATE_DATABASE", what: "a database name")
            ?? naming.templateDatabase
        migrationsDirectory = reader.string("TENANTRY_MIGRATIONS") ?? migrationsDirectory
        if let token = reader.string("TENANTRY_ADMIN_TOKEN") {
            guard token.count >= 16 else {
                throw TenantryError(code: .configuration, message: "TENANTRY_ADMIN_TOKEN must be at least 16 characters")
            }
            adminToken = token
        }
        if let token = reader.string("TENANTRY_VIEWER_TOKEN") {
            guard token.count >= 16 else {
                throw TenantryError(code: .configuration, message: "TENANTRY_VIEWER_TOKEN must be at least 16 characters")
            }
            guard token != adminToken else {
                throw TenantryError(code: .configuration, message: "TENANTRY_VIEWER_TOKEN must differ from TENANTRY_ADMIN_TOKEN")
            }
            viewerToken = token
        }
        try readProcessSettings(reader)
    }

    // MARK: - Required values

    /// The unified database URL, or an error naming `DATABASE_URL`.
    public func requireDatabaseURL() throws(TenantryError) -> PostgresURL {
        guard let databaseURL else {
            throw TenantryError(code: .configuration, message: "DATABASE_URL must be set (postgres://user:password@host:5432/database)")
        }
        return databaseURL
    }

    /// Where the catalog lives: `TENANTRY_CATALOG_URL`, else `DATABASE_URL`.
    public func requireCatalogURL() throws(TenantryError) -> PostgresURL {
        if let catalogURL { return catalogURL }
        guard let databaseURL else {
            throw TenantryError(
                code: .configuration, message: "DATABASE_URL or TENANTRY_CATALOG_URL must be set (the catalog's database)")
        }
        return databaseURL
    }

    /// The keyring, or an error naming `TENANT_ENCRYPTION_KEY`.
    public func requireKeyring() throws(TenantryError) -> Keyring {
        guard let keyring else {
            throw TenantryError(
                code: .configuration,
                message: "TENANT_ENCRYPTION_KEY must be set to 64 hex characters (32 bytes); generate one with 'tenantry keys generate'")
        }
        return keyring
    }

    /// The admin token, or an error naming `TENANTRY_ADMIN_TOKEN`.
    public func requireAdminToken() throws(TenantryError) -> String {
        guard let adminToken else {
            throw TenantryError(code: .configuration, message: "TENANTRY_ADMIN_TOKEN must be set (at least 16 characters)")
        }
        return adminToken
    }
}
