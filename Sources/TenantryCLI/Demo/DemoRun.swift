import EmbeddedPostgres
import Foundation
import HandyShop
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry demo`: the whole product on HandyShop, end to end, under live load.
///
/// A unified HandyShop database with generated shops, application traffic through the router
/// (``HandyShopLoad``) from the first phase to the last, and every phase of a move: provision,
/// migrate-data, dual-write (the relay), verify-sync, reads canary → percentage → tenant,
/// cutover, verify again (reverse sync), retire-legacy with an archive. Then every write the load
/// was told succeeded is looked up, row by row, where the shop's data lives now.
///
/// Every phase goes through the library's operations, the same calls the CLI commands make:
/// ``Operations/provision(_:concurrency:server:migrationsDirectory:progress:)`` (`tenantry
/// provision`), ``MoveOperations`` for migrate-data, verify-sync, cutover (with retries under
/// load) and retire-legacy, ``Operations/setReads(_:)`` (`tenantry reads`). So the demo rehearses
/// exactly what an operator runs. The router, the relay and the load run under one ServiceGroup
/// (``withServiceGroup(_:handlesSignals:logger:_:)``): SIGTERM or SIGINT stops them gracefully and
/// the demo's databases are still removed.
struct DemoRun: Sendable {
    struct Options: Sendable {
        var shops = 8
        var rowsPerShop = 300
        var rate = 50
        var phaseSeconds = 2.0
        var keep = false
        var json = false
    }

    let options: Options
    let context: CommandContext
    /// Where retire-legacy archives the demo's rows: this run's own, removed afterwards unless
    /// `--keep`.
    let archiveDirectory = FileManager.default.temporaryDirectory
        .appendingPathComponent("tenantry-demo-archive-\(UUID().uuidString.prefix(8).lowercased())").path
    var configuration: TenantryConfiguration { context.configuration }
    var logger: Logger { context.logger }

    /// Runs the demo; on a server of its own unless `DATABASE_URL` is set.
    func run() async throws -> Report {
        defer {
            if options.keep {
                if FileManager.default.fileExists(atPath: archiveDirectory) { note("kept: the retirement archive in \(archiveDirectory)") }
            } else {
                try? FileManager.default.removeItem(atPath: archiveDirectory)
            }
        }
        if let url = configuration.databaseURL {
            let tag = "tenantry_demo_" + String(UUID().uuidString.prefix(6)).lowercased()
            do {
                let report = try await run(on: url, tag: tag)
                if options.keep { note("kept: database \(tag) and its tenants' databases on \(url.host):\(url.port)") } else { await dropDemo(tag, on: url) }
                return report
            } catch {
                if !options.keep { await dropDemo(tag, on: url) }
                throw error
            }
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-demo-\(UUID().uuidString.prefix(8))").path
        let server = EmbeddedPostgres(configuration: try context.embeddedConfiguration(directory: directory), logger: logger)
        note("starting a private PostgreSQL in \(directory)")
        try await server.start()
        do {
            let report = try await run(on: try PostgresURL(server.url(database: "postgres")), tag: "handyshop")
            if options.keep {
                note("kept: the server in \(directory) (stop it with: pg_ctl -D \(directory)/data stop)")
            } else {
                try? await server.stop()
                try? FileManager.default.removeItem(atPath: directory)
            }
            return report
        } catch {
            if !options.keep {
                try? await server.stop()
                try? FileManager.default.removeItem(atPath: directory)
            }
            throw error
        }
    }

    private func note(_ text: String) { Output.note(text) }

    /// Drops what the demo made on a server it does not own: its databases and roles (all named
    /// after `tag`).
    private func dropDemo(_ tag: String, on url: PostgresURL) async {
        do {
            try await Database.withConnection(url.with(database: "postgres"), logger: logger) { connection in
                let pattern = tag + "%"
                var databases: [String] = []
                for try await name in try await connection.query(
                    "SELECT datname::text FROM pg_database WHERE datname LIKE \(pattern) ORDER BY 1 DESC", logger: logger
                ).decode(String.self) { databases.append(name) }
                for database in databases {
                    try await connection.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(try SQLIdentifier.quoted(database)) WITH (FORCE)"), logger: logger)
                }
                var roles: [String] = []
                for try await name in try await connection.query(
                    "SELECT rolname::text FROM pg_roles WHERE rolname LIKE \(pattern)", logger: logger
                ).decode(String.self) { roles.append(name) }
                for role in roles {
                    try await connection.query(PostgresQuery(unsafeSQL: "DROP ROLE IF EXISTS \(try SQLIdentifier.quoted(role))"), logger: logger)
                }
            }
        } catch {
            note("could not remove the demo's databases (\(tag)*): \(userMessage(for: error))")
        }
    }

    // MARK: - Setup and services

    /// The unified HandyShop database `tag` on `serverURL`, generated shops, the catalog, capture;
    /// then the phases under load, with the router, relay and load running as services.
    private func run(on serverURL: PostgresURL, tag: String) async throws -> Report {
        let log = PhaseLog()
        let unifiedURL = serverURL.with(database: tag)
        var demoConfiguration = configuration
        demoConfiguration.naming.databaseTemplate = "\(tag)_shop_{id}"
        demoConfiguration.naming.roleTemplate = "\(tag)_u_{id}"
        demoConfiguration.naming.templateDatabase = "\(tag)_tpl"
        demoConfiguration.keyring = configuration.keyring ?? Keyring(current: .generate())
        let settings = demoConfiguration
        let migrations = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-migrations-\(UUID().uuidString.prefix(6))").path
        defer { try? FileManager.default.removeItem(atPath: migrations) }

        let generated = try await log.run("setup") {
            try await Database.withConnection(serverURL, logger: logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(try SQLIdentifier.quoted(tag))"), logger: logger)
            }
            let (migration, generated) = try await Database.withConnection(unifiedURL, logger: logger) { connection in
                try await HandyShopGenerator.createSchema(on: connection, logger: logger)
                let generated = try await HandyShopGenerator(
                    options: .init(shops: options.shops, rowsPerShop: options.rowsPerShop, seed: 42)
                ).generate(on: connection, logger: logger)
                let derived = try TenantSchemaDeriver().derive(from: try await SchemaIntrospector(logger: logger).read(connection))
                return (MigrationFile(version: 1, name: "tenant_schema", sql: try SchemaDDL.render(derived.schema)), generated)
            }
            // What 'tenantry schema derive' writes: the fleet's migrations, read back by provisioning.
            try FileManager.default.createDirectory(atPath: migrations, withIntermediateDirectories: true)
            try Data(migration.sql.utf8).write(to: URL(fileURLWithPath: "\(migrations)/\(migration.fileName)"))
            try await Catalog.withCatalog(unifiedURL, logger: logger) { _ = try await $0.migrate() }
            let capture = try await Capture(unifiedURL: unifiedURL, discriminator: settings.naming.discriminator, logger: logger).install()
            return (generated, "\(generated.shopIDs.count) shops, \(generated.totalRows) rows, "
                + "\(capture.tables.count) tenant tables, capture installed (database \(tag))")
        }
        let shops = try generated.shopIDs.map { try TenantID(String($0)) }

        return try await Operations.with(configuration: settings, databaseURL: unifiedURL, actor: "demo", logger: logger) { operations in
            let move = try await operations.move()
            let relay = move.relay()
            let router = operations.router(keyring: try settings.requireKeyring(), monitor: nil) { configuration in
                configuration.pool.maxConnections = max(configuration.pool.maxConnections, 20)
                // Read-your-writes for syncing shops, as 'tenantry handyshop serve' does.
                configuration.afterSyncedWrite = { tenant in await relay.drain(tenant) }
            }
            let load = try HandyShopLoad(
                router: router, shops: shops, options: .init(rate: options.rate, workers: min(8, max(2, options.rate / 10))))
            let steps = Steps(
                run: self, log: log, operations: operations, move: move, relay: relay, load: load, shops: shops,
                migrations: migrations)
            // The load stops before the relay and the router (the group stops services in reverse
            // order), and is stopped, not cancelled: its operations in flight finish.
            let loadService = BackgroundService(run: { await load.run() }, stop: { await load.stop() })
            var report = try await withServiceGroup([router, relay, loadService], logger: logger) {
                try await steps.phasesUnderLoad()
            }
            report.phases = log.phases
            return report
        }
    }
}
