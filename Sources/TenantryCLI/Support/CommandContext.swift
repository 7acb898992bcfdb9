import EmbeddedPostgres
import Foundation
import Logging
import Tenantry
import TenantryCore

/// What every command needs: the validated configuration, a logger, and the database URLs.
struct CommandContext: Sendable {
    let configuration: TenantryConfiguration
    let logger: Logger
    /// The audit actor of this process: `cli:<os user>` (`USER`/`LOGNAME` name the OS user, not a setting).
    let actor: String

    /// The directory of the embedded development server.
    static let embeddedDirectory = ".tenantry/postgres"

    /// Parses the whole environment through ``TenantryConfiguration`` (a bad value in any variable,
    /// `TENANTRY_LOG_LEVEL` included, is refused here) and sets up logging.
    static func load() throws -> CommandContext {
        let environment = ProcessInfo.processInfo.environment
        let configuration = try TenantryConfiguration(environment: environment)
        LoggingBootstrap.once(level: configuration.logLevel)
        return CommandContext(
            configuration: configuration, logger: Logger(label: "tenantry"),
            actor: "cli:" + (environment["USER"] ?? environment["LOGNAME"] ?? String(getuid())))
    }

    /// An embedded server under `directory`, with the programs of `TENANTRY_PG_BIN` when it is set
    /// (else EmbeddedPostgres looks for them itself when it needs them).
    func embeddedConfiguration(directory: String) throws -> EmbeddedPostgres.Configuration {
        var settings = EmbeddedPostgres.Configuration(directory: directory)
        if configuration.postgresBinDirectory != nil { settings.binaries = try postgresBinaries() }
        return settings
    }

    /// The PostgreSQL server programs for an embedded server: `TENANTRY_PG_BIN` (checked), else
    /// `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
    func postgresBinaries() throws -> PostgresBinaries {
        var environment = ProcessInfo.processInfo.environment
        environment["TENANTRY_PG_BIN"] = configuration.postgresBinDirectory
        return try PostgresBinaries.locate(environment: environment)
    }

    /// The unified database: `DATABASE_URL`, or the embedded server (started when needed).
    func databaseURL() async throws -> PostgresURL {
        if let url = configuration.databaseURL { return url }
        return try await embeddedURL()
    }

    /// The catalog's database: `TENANTRY_CATALOG_URL`, else ``databaseURL()``.
    func catalogURL() async throws -> PostgresURL {
        if let url = configuration.catalogURL { return url }
        return try await databaseURL()
    }

    /// Starts (or attaches to) the embedded server under `.tenantry/` and returns its URL.
    func embeddedURL() async throws -> PostgresURL {
        let server = EmbeddedPostgres(
            configuration: try embeddedConfiguration(directory: FileManager.default.currentDirectoryPath + "/" + Self.embeddedDirectory),
            logger: logger)
        if try await !server.isRunning() {
            Output.note("DATABASE_URL is not set: starting the embedded PostgreSQL in \(Self.embeddedDirectory)")
        }
        try await server.start()
        return try PostgresURL(server.url(database: "postgres"))
    }

    /// Runs `body` with a catalog over the catalog database.
    func withCatalog<Result: Sendable>(_ body: @Sendable (Catalog) async throws -> Result) async throws -> Result {
        let url = try await catalogURL()
        return try await Catalog.withCatalog(url, logger: logger, body)
    }
}

/// Sets up swift-log once: to standard error, level from `TENANTRY_LOG_LEVEL` (default `warning`;
/// ``TenantryConfiguration`` refuses an unknown level).
enum LoggingBootstrap {
    nonisolated(unsafe) private static var bootstrapped = false
    private static let lock = NSLock()

    static func once(level: TenantryConfiguration.LogLevel) {
        lock.lock()
        defer { lock.unlock() }
        guard !bootstrapped else { return }
        bootstrapped = true
        let parsed = Logger.Level(rawValue: level.name) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = parsed
            return handler
        }
    }
}
