import Testing
import TenantryCore

@Suite("Configuration")
struct ConfigurationTests {
    static let goodKey = String(repeating: "ab", count: 32)

    @Test("defaults when nothing is set")
    func defaults() throws {
        let configuration = try TenantryConfiguration(environment: [:])
        #expect(configuration.databaseURL == nil)
        #expect(configuration.pool.maxPerTenant == 20)
        #expect(configuration.pool.idleTimeout == .seconds(30))
        #expect(configuration.pool.connectionTimeout == .seconds(10))
        #expect(configuration.migration.dualWrite == false)
        #expect(configuration.migration.tenantReads == false)
        #expect(configuration.migration.strategy == .unified)
        #expect(configuration.monitor.slowQueryThreshold == .seconds(1))
        #expect(configuration.monitor.maxRetention == 10_000)
        #expect(configuration.retirement.verifyFirst && configuration.retirement.archiveFirst)
        #expect(configuration.naming.discriminator == "shop_id")
        #expect(configuration.naming.databaseName(for: try TenantID("42")) == "shop_42_db")
        #expect(configuration.naming.roleName(for: try TenantID("42")) == "shop_user_42")
    }

    @Test("every variable parses a good value")
    func goodValues() throws {
        let configuration = try TenantryConfiguration(environment: [
            "DATABASE_URL": "postgresql://app:p%40ss@db.example:6543/handyshop?sslmode=require",
            "TENANTRY_CATALOG_URL": "postgres://cat@localhost/catalog",
            "TENANT_ENCRYPTION_KEY": Self.goodKey,
            "TENANT_ENCRYPTION_PREVIOUS_KEYS": String(repeating: "cd", count: 32) + "," + String(repeating: "ef", count: 32),
            "POSTGRES_SUPERUSER": "postgres", "POSTGRES_SUPERUSER_PASSWORD": "x",
            "TENANT_DB_MAX_POOL_SIZE": "5", "TENANT_DB_IDLE_TIMEOUT": "1500", "TENANT_DB_CONNECTION_TIMEOUT": "250",
            "TENANT_DB_LOCK_TIMEOUT": "750",
            "TENANTRY_SERVER_MAX_CONNECTIONS": "10",
            "ENABLE_DUAL_WRITE": "true", "ENABLE_TENANT_READS": "1", "MIGRATION_STRATEGY": "shop-list",
            "SLOW_QUERY_THRESHOLD_MS": "250", "MAX_METRICS_RETENTION": "500",
            "VERIFY_BEFORE_RETIREMENT": "false", "ARCHIVE_BEFORE_DELETE": "no",
            "TENANTRY_DISCRIMINATOR": "tenant_id", "TENANTRY_TENANT_TABLE": "accounts",
            "TENANTRY_DATABASE_TEMPLATE": "t_{id}", "TENANTRY_ROLE_TEMPLATE": "u_{id}",
            "TENANTRY_ADMIN_TOKEN": "0123456789abcdef0123",
        ])
        let url = try #require(configuration.databaseURL)
        #expect(url.user == "app" && url.password == "p@ss" && url.host == "db.example" && url.port == 6543)
        #expect(url.database == "handyshop" && url.tls == .require)
        #expect(url.description == "postgres://app:***@db.example:6543/handyshop?sslmode=require")
        #expect(configuration.catalogURL?.database == "catalog")
        #expect(configuration.keyring?.previous.count == 2)
        #expect(configuration.pool.maxPerTenant == 5 && configuration.pool.maxPerServer == 10)
        #expect(configuration.pool.idleTimeout == .milliseconds(1500))
        #expect(configuration.pool.connectionTimeout == .milliseconds(250))
        #expect(configuration.pool.lockTimeout == .milliseconds(750))
        #expect(try TenantryConfiguration(environment: [:]).pool.lockTimeout == .seconds(6))
        #expect(try TenantryConfiguration(environment: ["TENANT_DB_LOCK_TIMEOUT": "0"]).pool.lockTimeout == nil)
        #expect(configuration.migration.dualWrite && configuration.migration.tenantReads)
        #expect(configuration.migration.strategy == .shopList)
        #expect(configuration.monitor.slowQueryThreshold == .milliseconds(250) && configuration.monitor.maxRetention == 500)
        #expect(!configuration.retirement.verifyFirst && !configuration.retirement.archiveFirst)
        #expect(configuration.naming.discriminator == "tenant_id" && configuration.naming.tenantTable == "accounts")
        #expect(configuration.naming.databaseName(for: try TenantID("7")) == "t_7")
        #expect(configuration.adminToken == "0123456789abcdef0123")
    }

    /// Each bad value, and the start of the one line that must name its variable.
    static let badValues: [(String, String, String)] = [
        ("TENANT_ENCRYPTION_KEY", "nothex", "TENANT_ENCRYPTION_KEY must be 64 hex characters (32 bytes)"),
        ("TENANT_ENCRYPTION_KEY", String(repeating: "a", count: 62), "TENANT_ENCRYPTION_KEY must be 64 hex characters"),
        ("TENANT_ENCRYPTION_KEY", String(repeating: "g", count: 64), "TENANT_ENCRYPTION_KEY must be 64 hex characters"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL must be a PostgreSQL URL"),
        ("DATABASE_URL", "not a url", "DATABASE_URL must be a PostgreSQL URL"),
        ("DATABASE_URL", "postgres://host/db", "DATABASE_URL must name a user"),
        ("DATABASE_URL", "postgres://u@h/db?sslmode=bogus", "DATABASE_URL has sslmode=bogus"),
        ("TENANTRY_CATALOG_URL", "http://x", "TENANTRY_CATALOG_URL must be a PostgreSQL URL"),
        ("POSTGRES_SUPERUSER", "bad name;", "POSTGRES_SUPERUSER must be a PostgreSQL role name"),
        ("TENANT_DB_MAX_POOL_SIZE", "0", "TENANT_DB_MAX_POOL_SIZE must be an integer from 1 to 10000"),
        ("TENANT_DB_MAX_POOL_SIZE", "twenty", "TENANT_DB_MAX_POOL_SIZE must be an integer"),
        ("TENANT_DB_IDLE_TIMEOUT", "-1", "TENANT_DB_IDLE_TIMEOUT must be a whole number of milliseconds"),
        ("TENANT_DB_IDLE_TIMEOUT", "30s", "TENANT_DB_IDLE_TIMEOUT must be a whole number of milliseconds"),
        ("TENANT_DB_CONNECTION_TIMEOUT", "0", "TENANT_DB_CONNECTION_TIMEOUT must be a whole number of milliseconds from 1"),
        ("TENANT_DB_LOCK_TIMEOUT", "6s", "TENANT_DB_LOCK_TIMEOUT must be a whole number of milliseconds"),
        ("TENANTRY_SERVER_MAX_CONNECTIONS", "0", "TENANTRY_SERVER_MAX_CONNECTIONS must be an integer"),
        ("ENABLE_DUAL_WRITE", "maybe", "ENABLE_DUAL_WRITE must be true or false"),
        ("ENABLE_TENANT_READS", "2", "ENABLE_TENANT_READS must be true or false"),
        ("MIGRATION_STRATEGY", "random", "MIGRATION_STRATEGY must be one of unified, tenant, percentage, shop-list, canary"),
        ("SLOW_QUERY_THRESHOLD_MS", "fast", "SLOW_QUERY_THRESHOLD_MS must be a whole number of milliseconds"),
        ("MAX_METRICS_RETENTION", "0", "MAX_METRICS_RETENTION must be an integer"),
        ("VERIFY_BEFORE_RETIREMENT", "sure", "VERIFY_BEFORE_RETIREMENT must be true or false"),
        ("ARCHIVE_BEFORE_DELETE", "yes please", "ARCHIVE_BEFORE_DELETE must be true or false"),
        ("TENANTRY_DISCRIMINATOR", "Shop-ID", "TENANTRY_DISCRIMINATOR must be a column name"),
        ("TENANTRY_TENANT_TABLE", "shops; drop", "TENANTRY_TENANT_TABLE must be a table name"),
        ("TENANTRY_DATABASE_TEMPLATE", "shop_db", "TENANTRY_DATABASE_TEMPLATE must contain {id}"),
        ("TENANTRY_ROLE_TEMPLATE", "{id}_user", "TENANTRY_ROLE_TEMPLATE must contain {id}"),
        ("TENANTRY_ADMIN_TOKEN", "short", "TENANTRY_ADMIN_TOKEN must be at least 16 characters"),
        ("TENANT_ENCRYPTION_PREVIOUS_KEYS", "abc", "TENANT_ENCRYPTION_PREVIOUS_KEYS"),
        ("TENANTRY_LOG_LEVEL", "verbose", "TENANTRY_LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical"),
        ("TENANTRY_SERVER_URL", "mysql://a@b/c", "TENANTRY_SERVER_URL must be a PostgreSQL URL"),
        ("HANDYSHOP_JWT_SECRET", "too short", "HANDYSHOP_JWT_SECRET must be at least 32 bytes"),
        ("HANDYSHOP_JWT_AUDIENCE", "shops", "HANDYSHOP_JWT_AUDIENCE and HANDYSHOP_JWT_ISSUER need HANDYSHOP_JWT_SECRET"),
    ]

    @Test("a bad value in any variable: one line naming the variable", arguments: 0..<badValues.count)
    func badValue(_ index: Int) {
        let (name, value, expected) = Self.badValues[index]
        var environment = [name: value]
        if name == "TENANT_ENCRYPTION_PREVIOUS_KEYS" { environment["TENANT_ENCRYPTION_KEY"] = Self.goodKey }
        let error = #expect(throws: TenantryError.self) { try TenantryConfiguration(environment: environment) }
        #expect(error?.code == .configuration)
        #expect(error?.message.hasPrefix(expected) == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("\n") == false)
        // Secrets never echo back.
        if name == "TENANT_ENCRYPTION_KEY" || name == "HANDYSHOP_JWT_SECRET" { #expect(error?.message.contains(value) == false) }
    }

    @Test("TENANTRY_LOG_LEVEL: a known level (any case) is kept, unset is warning, an unknown one is an error (not warning)")
    func logLevel() throws {
        #expect(try TenantryConfiguration(environment: [:]).logLevel == .warning)
        #expect(try TenantryConfiguration(environment: ["TENANTRY_LOG_LEVEL": "Debug"]).logLevel.name == "debug")
        #expect(try TenantryConfiguration(environment: ["TENANTRY_LOG_LEVEL": "trace"]).logLevel == TenantryConfiguration.LogLevel("trace"))
        let error = #expect(throws: TenantryError.self) { try TenantryConfiguration(environment: ["TENANTRY_LOG_LEVEL": "warn"]) }
        #expect(error?.code == .configuration && error?.message.hasPrefix("TENANTRY_LOG_LEVEL must be one of") == true)
    }

    @Test("process settings: ENABLE_DUAL_WRITE=false explicitly pauses sync after copy, unset does not; PG bin, server URL, HandyShop JWT")
    func processSettings() throws {
        #expect(try TenantryConfiguration(environment: [:]).migration.pauseSyncAfterCopy == false)
        #expect(try TenantryConfiguration(environment: ["ENABLE_DUAL_WRITE": "false"]).migration.pauseSyncAfterCopy)
        #expect(try TenantryConfiguration(environment: ["ENABLE_DUAL_WRITE": "true"]).migration.pauseSyncAfterCopy == false)
        let secret = String(repeating: "s", count: 32)
        let configuration = try TenantryConfiguration(environment: [
            "TENANTRY_PG_BIN": "/opt/pg/bin", "TENANTRY_SERVER_URL": "postgres://admin:pw@db2:5432/postgres",
            "HANDYSHOP_JWT_SECRET": secret, "HANDYSHOP_JWT_AUDIENCE": "shops", "HANDYSHOP_JWT_ISSUER": "",
        ])
        #expect(configuration.postgresBinDirectory == "/opt/pg/bin")
        #expect(configuration.serverURL?.host == "db2" && configuration.serverURL?.password == "pw")
        #expect(configuration.handyShop.jwtSecret == Array(secret.utf8))
        #expect(configuration.handyShop.jwtAudience == "shops" && configuration.handyShop.jwtIssuer == nil)
        for name in ["TENANTRY_LOG_LEVEL", "TENANTRY_PG_BIN", "TENANTRY_SERVER_URL", "HANDYSHOP_JWT_SECRET"] {
            #expect(TenantryConfiguration.variables.contains(name), "\(name) is listed")
        }
    }

    @Test("previous keys without a current key are refused")
    func previousWithoutCurrent() {
        let error = #expect(throws: TenantryError.self) {
            try TenantryConfiguration(environment: ["TENANT_ENCRYPTION_PREVIOUS_KEYS": Self.goodKey])
        }
        #expect(error?.message.contains("TENANT_ENCRYPTION_KEY") == true)
    }

    @Test("required values that are missing name their variable")
    func missingRequired() throws {
        let configuration = try TenantryConfiguration(environment: [:])
        #expect(throws: TenantryError.self) { try configuration.requireDatabaseURL() }
        let key = #expect(throws: TenantryError.self) { try configuration.requireKeyring() }
        #expect(key?.message.hasPrefix("TENANT_ENCRYPTION_KEY must be set") == true)
        let catalog = #expect(throws: TenantryError.self) { try configuration.requireCatalogURL() }
        #expect(catalog?.message.contains("DATABASE_URL") == true)
        #expect(throws: TenantryError.self) { try configuration.requireAdminToken() }
    }

    @Test("empty values count as unset")
    func emptyIsUnset() throws {
        let configuration = try TenantryConfiguration(environment: ["DATABASE_URL": "", "TENANT_DB_MAX_POOL_SIZE": ""])
        #expect(configuration.databaseURL == nil && configuration.pool.maxPerTenant == 20)
    }

    @Test("sslmode: prefer by default, libpq's modes kept apart (verify-ca, verify-full), sslrootcert read, bogus refused")
    func sslModes() throws {
        #expect(try PostgresURL("postgres://u:p@h/db").tls == .prefer)
        #expect(try PostgresURL("postgres://u:p@h/db").description == "postgres://u:***@h:5432/db")
        #expect(try PostgresURL("postgres://u@h/db?sslmode=allow").tls == .prefer)
        #expect(try PostgresURL("postgres://u@h/db?sslmode=disable").tls == .disable)
        #expect(try PostgresURL("postgres://u@h/db?sslmode=disable").description == "postgres://u@h:5432/db?sslmode=disable")
        #expect(try PostgresURL("postgres://u@h/db?sslmode=require").tls == .require)
        #expect(try PostgresURL("postgres://u@h/db?sslmode=verify-ca").tls == .verifyCA)
        let full = try PostgresURL("postgres://u:p@db.example/db?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem")
        #expect(full.tls == .verifyFull && full.rootCertificate == "/etc/ssl/ca.pem")
        #expect(full.description == "postgres://u:***@db.example:5432/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fca.pem")
        #expect(try PostgresURL(full.urlStringWithPassword) == full, "the rendered URL parses back to the same value")
        #expect(PostgresURL(user: "u", password: nil, host: "h", database: "d").tls == .prefer)
        #expect(throws: TenantryError.self) { try PostgresURL("postgres://u@h/db?sslmode=verify") }
    }
}
