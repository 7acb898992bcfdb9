import ArgumentParser
import Foundation
import Logging
import Tenantry
import HandyShopService
import TenantryHummingbird
import TenantryCore

/// `tenantry serve`: the admin API (the seeds' superadmin migration endpoints), with the relay.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the admin API (superadmin migration endpoints, jobs, /metrics, /health), the console and the relay.",
        discussion: """
            Requires TENANTRY_ADMIN_TOKEN (at least 16 characters): every /api/superadmin request must send \
            'Authorization: Bearer <token>'. /health (only its status without the token), /metrics and \
            /openapi.json need no token. The relay \
            (as 'tenantry sync run') runs in the same process unless --no-relay. The operator's console is at \
            /console (log in with the admin token, or read-only with TENANTRY_VIEWER_TOKEN) unless --no-console. \
            See docs/api.md and docs/console.md.
            """)

    @Option(help: "The port to listen on.") var port = 8080
    @Option(help: "The address to listen on (0.0.0.0 for every interface).") var host = "127.0.0.1"
    @Option(help: "Where retire-legacy writes its archives.") var archiveDir = "./archives"
    @Option(help: "Directory of fleet migrations for provision-all (default: TENANTRY_MIGRATIONS or ./migrations).")
    var migrations: String?
    @Flag(help: "Do not run the relay in this process (another 'tenantry sync run' does).") var noRelay = false
    @Flag(help: "Do not serve the operator's console at /console.") var noConsole = false
    @Flag(help: "Mark the console's cookies Secure (behind a TLS proxy that does not send X-Forwarded-Proto: https).")
    var secureCookies = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535") }
    }

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            guard let token = context.configuration.adminToken else {
                throw TenantryError(
                    code: .configuration, message: "TENANTRY_ADMIN_TOKEN must be set (at least 16 characters): serve refuses to start without it")
            }
            let metrics = MetricsBootstrap.prometheus()
            var configuration = AdminAPI.Configuration(token: token)
            configuration.archiveDirectory = archiveDir
            configuration.migrationsDirectory = migrations
            configuration.pauseSyncAfterCopy = context.configuration.migration.pauseSyncAfterCopy
            var consoleSettings = Console.Configuration(adminToken: token, viewerToken: context.configuration.viewerToken)
            consoleSettings.secureCookies = secureCookies
            let (settings, host, port, runRelay, consoleConfiguration) = (configuration, host, port, !noRelay, noConsole ? nil : consoleSettings)
            try await Services.with(context) { services in
                let operations = services.operations.acting(as: "api")
                let relay = runRelay ? try await makeRelay(operations) : nil
                let monitor = PerformanceMonitor(configuration: .init(context.configuration.monitor))
                let api = AdminAPI(
                    configuration: settings, operations: operations, metrics: metrics, monitor: monitor, relay: relay,
                    logger: context.logger)
                let console = consoleConfiguration.map { Console(configuration: $0, api: api) }
                let app = AdminService.makeApplication(
                    api: api, console: console, host: host, port: port, services: relay.map { [$0] } ?? [], logger: context.logger)
                Output.note("admin API on http://\(host):\(port) (token \(BearerTokenMiddleware<AdminRequestContext>.fingerprint(of: token))…"
                    + "\(relay == nil ? "" : ", relay running")\(console == nil ? "" : ", console on http://\(host):\(port)/console")); Ctrl-C to stop")
                try await app.runService()
            }
        }
    }
}

/// A relay over the unified database to run in a service, or `nil` with a note when capture is
/// not installed (nothing to relay yet).
private func makeRelay(_ operations: Operations) async throws -> Relay? {
    do {
        let move = try await operations.move()
        if try await move.capture().isInstalled() { return move.relay() }
        Output.note("capture is not installed: the relay does not run ('tenantry init')")
    } catch let error as TenantryError where error.code == .invalidArgument {
        Output.note("relay not started: \(error.message)")
    }
    return nil
}

/// `tenantry handyshop serve`: the HandyShop example service over the router.
struct HandyShopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "handyshop", abstract: "The HandyShop example web service (customers, repairs) over the router.",
        subcommands: [Serve.self])

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve HandyShop's customers and repairs for every shop, wherever each shop's data lives now.",
            discussion: """
                The relay (as 'tenantry sync run') runs in the same process, so a write for a shop being synced is \
                in the shop's database when the request returns. The shop comes from the X-Tenant-ID header (default), and with --subdomain DOMAIN from the host \
                (7.DOMAIN), with --path-prefix from /shops/7/…. With HANDYSHOP_JWT_SECRET (at least 32 bytes) every request \
                needs an HS256 bearer token (401 without one): its shop_id claim is the shop and the other sources may only \
                agree with it; HANDYSHOP_JWT_AUDIENCE and HANDYSHOP_JWT_ISSUER, when set, must match its aud and iss. \
                A shop_id in a JSON body is rejected (or stripped with --strip-shop-id).
                """)

        @Option(help: "The port to listen on.") var port = 8081
        @Option(help: "The address to listen on.") var host = "127.0.0.1"
        @Option(help: "Take the shop from the first label of hosts under this domain.") var subdomain: String?
        @Flag(help: "Take the shop from paths /shops/{id}/….") var pathPrefix = false
        @Flag(help: "Remove a shop_id from JSON bodies instead of refusing the request.") var stripShopId = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let keyring = try context.configuration.requireKeyring()
                var tenants = TenantIdentification.Configuration()
                if let subdomain { tenants.sources.append(.subdomain(of: subdomain)) }
                if pathPrefix { tenants.sources.append(.pathPrefix("/shops")) }
                let jwt = context.configuration.handyShop  // HANDYSHOP_JWT_*, validated by TenantryConfiguration
                if let secret = jwt.jwtSecret {
                    tenants.jwtSecret = secret
                    tenants.jwtAudience = jwt.jwtAudience
                    tenants.jwtIssuer = jwt.jwtIssuer
                    tenants.sources.append(.jwtClaim("shop_id"))
                }
                tenants.discriminator = context.configuration.naming.discriminator
                tenants.discriminatorPolicy = stripShopId ? .strip : .reject
                MetricsBootstrap.prometheus()
                let (settings, host, port) = (tenants, host, port)
                try await Services.with(context) { services in
                    let relay = try await makeRelay(services.operations)
                    let monitor = PerformanceMonitor(configuration: .init(context.configuration.monitor))
                    let router = services.operations.router(keyring: keyring, monitor: monitor) { configuration in
                        // Read-your-writes: a syncing shop's write reaches its database before the request returns.
                        if let relay { configuration.afterSyncedWrite = { tenant in await relay.drain(tenant) } }
                    }
                    let service = try HandyShopService(router: router, catalog: services.catalog, tenants: settings, logger: context.logger)
                    Output.note("HandyShop on http://\(host):\(port)\(relay == nil ? "" : ", relay running"); Ctrl-C to stop")
                    try await service.makeApplication(host: host, port: port, services: relay.map { [$0] } ?? []).runService()
                }
            }
        }
    }
}
