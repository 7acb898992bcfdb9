import EmbeddedPostgres
import Foundation
import Synchronization
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
struct DemoRun: Sendable {
    struct Options: Sendable {
        var shops = 8
        var rowsPerShop = 300
        var rate = 50
        var phaseSeconds = 2.0
        var keep = false
        var json = false
    }

    /// One phase and how long it took.
    struct Phase: Codable, Sendable {
        var name: String
        var seconds: Double
        var detail: String
    }

    /// The report; `--json` prints it as one object.
    struct Report: Codable {
        var verified: Bool
        var lostRows: Int
        var loadErrors: Int
        var p50MsUnified: Double?
        var p95MsUnified: Double?
        var p99MsUnified: Double?
        var p50MsTenant: Double?
        var p95MsTenant: Double?
        var p99MsTenant: Double?
        var shops: Int
        var rowsMoved: Int
        var writesDuringMove: Int
        var loadOperations: Int
        var loadThroughput: Double
        var cutoverPauseMsMax: Double
        var cutoverPauseMsP50: Double
        var cutoverRetries: Int
        var rowsRetired: Int
        var archive: String?
        var phases: [Phase]
        var lost: [String]
        var errorSamples: [String]
        var differences: [String]

        enum CodingKeys: String, CodingKey {
            case verified, shops, phases, lost, archive, differences
            case lostRows = "lost_rows", loadErrors = "load_errors"
            case p50MsUnified = "p50_ms_unified", p95MsUnified = "p95_ms_unified", p99MsUnified = "p99_ms_unified"
            case p50MsTenant = "p50_ms_tenant", p95MsTenant = "p95_ms_tenant", p99MsTenant = "p99_ms_tenant"
            case rowsMoved = "rows_moved", writesDuringMove = "writes_during_move", loadOperations = "load_operations"
            case loadThroughput = "load_throughput", cutoverPauseMsMax = "cutover_pause_ms_max"
            case cutoverPauseMsP50 = "cutover_pause_ms_p50", cutoverRetries = "cutover_retries", rowsRetired = "rows_retired"
            case errorSamples = "error_samples"
        }
    }

    let options: Options
    let configuration: TenantryConfiguration
    let logger: Logger

    /// Runs the demo; on a server of its own unless `DATABASE_URL` is set.
    func run() async throws -> Report {
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
        let server = EmbeddedPostgres(configuration: .init(directory: directory), logger: logger)
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

    // MARK: - The phases

    private func run(on serverURL: PostgresURL, tag: String) async throws -> Report {
        let log = PhaseLog()

        // Setup: the unified HandyShop database, the catalog in it, capture installed.
        let unifiedURL = serverURL.with(database: tag)
        let naming = {
            var naming = configuration.naming
            naming.databaseTemplate = "\(tag)_shop_{id}"
            naming.roleTemplate = "\(tag)_u_{id}"
            naming.templateDatabase = "\(tag)_tpl"
            return naming
        }()
        let keyring = configuration.keyring ?? Keyring(current: .generate())
        let servers = ServerDirectory(
            databaseURL: unifiedURL, superuser: configuration.superuser, superuserPassword: configuration.superuserPassword,
            servers: [], keyring: keyring)
        let (plan, migration, generated) = try await log.run("setup") {
            try await Database.withConnection(serverURL, logger: logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(tag)"), logger: logger)
            }
            let (plan, migration, generated) = try await Database.withConnection(unifiedURL, logger: logger) { connection in
                try await HandyShopGenerator.createSchema(on: connection, logger: logger)
                let generated = try await HandyShopGenerator(
                    options: .init(shops: options.shops, rowsPerShop: options.rowsPerShop, seed: 42)
                ).generate(on: connection, logger: logger)
                let unified = try await SchemaIntrospector(logger: logger).read(connection)
                let derived = try TenantSchemaDeriver().derive(from: unified)
                let plan = try MovePlan.make(unified: unified, discriminator: configuration.naming.discriminator)
                return (plan, MigrationFile(version: 1, name: "tenant schema", sql: try SchemaDDL.render(derived.schema)), generated)
            }
            try await Catalog.withCatalog(unifiedURL, logger: logger) { _ = try await $0.migrate() }
            _ = try await Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, logger: logger).install()
            return ((plan, migration, generated), "\(generated.shopIDs.count) shops, \(generated.totalRows) rows, "
                + "\(plan.tables.count) tenant tables, capture installed (database \(tag))")
        }
        let shops = try generated.shopIDs.map { try TenantID(String($0)) }

        return try await Catalog.withCatalog(unifiedURL, logger: logger) { catalog in
            let relay = Relay(catalog: catalog, servers: servers, unifiedURL: unifiedURL, plan: plan, logger: logger)
            var pool = TenantPool.Configuration(configuration.pool)
            pool.maxConnections = max(pool.maxConnections, 20)
            var routerConfiguration = TenantRouter.Configuration(unifiedURL: unifiedURL, pool: pool)
            routerConfiguration.afterSyncedWrite = { tenant in await relay.drain(tenant) }
            let router = TenantRouter(
                configuration: routerConfiguration, catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: keyring), servers: servers, logger: logger)
            let load = try HandyShopLoad(
                router: router, shops: shops, options: .init(rate: options.rate, workers: min(8, max(2, options.rate / 10))))
            let routerTask = Task { try await router.run() }
            let relayTask = Task { try await relay.run() }
            let loadTask = Task { await load.run() }
            func stopAll() async {
                await load.stop()
                await loadTask.value
                relayTask.cancel()
                routerTask.cancel()
                _ = try? await relayTask.value
                _ = try? await routerTask.value
                await relay.close()
            }
            do {
                let report = try await phasesUnderLoad(
                    log: log, catalog: catalog, servers: servers, keyring: keyring, naming: naming, migration: migration,
                    plan: plan, unifiedURL: unifiedURL, relay: relay, load: load, shops: shops, generated: generated)
                await stopAll()
                var final = report
                final.phases = log.phases
                return final
            } catch {
                await stopAll()
                throw error
            }
        }
    }

    /// The phases run so far, with their durations; prints each as it starts and ends.
    final class PhaseLog: Sendable {
        private let recorded = Mutex<[Phase]>([])
        var phases: [Phase] { recorded.withLock { $0 } }

        func run<T>(_ name: String, _ body: () async throws -> (T, String)) async throws -> T {
            Output.note("▶ \(name)")
            let start = ContinuousClock.now
            let (value, detail) = try await body()
            let (whole, fraction) = (ContinuousClock.now - start).components
            let seconds = ((Double(whole) + Double(fraction) / 1e18) * 100).rounded() / 100
            recorded.withLock { $0.append(Phase(name: name, seconds: seconds, detail: detail)) }
            Output.note("✓ \(name) (\(String(format: "%.2f", seconds)) s)\(detail.isEmpty ? "" : ": \(detail)")")
            return value
        }
    }

    private func pause() async throws {
        try await Task.sleep(for: .seconds(options.phaseSeconds))
    }

    // swiftlint:disable:next function_parameter_count
    private func phasesUnderLoad(
        log: PhaseLog,
        catalog: Catalog, servers: ServerDirectory, keyring: Keyring, naming: TenantryConfiguration.Naming,
        migration: MigrationFile, plan: MovePlan, unifiedURL: PostgresURL, relay: Relay, load: HandyShopLoad,
        shops: [TenantID], generated: HandyShopGenerator.Report
    ) async throws -> Report {
        _ = try await log.run("load on the unified database") {
            try await pause(); try await pause()
            let report = load.report()
            return ((), "\(report.operations) operations, \(report.errors) errors")
        }
        let provisioner = TenantProvisioner(
            catalog: catalog, servers: servers, keyring: keyring, naming: naming, migrations: [migration],
            connectionLimit: configuration.pool.maxPerTenant + 5, actor: "demo", logger: logger)
        _ = try await log.run("provision") {
            _ = try await concurrentMap(shops, concurrency: 4) { shop in _ = try await provisioner.provision(shop) }
            return ((), "\(shops.count) tenant databases, each with its own role")
        }
        let writesBefore = load.acknowledgedWrites
        let copier = Copier(
            catalog: catalog, servers: servers, unifiedURL: unifiedURL, plan: plan,
            capture: Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, enableTimeout: .seconds(60), logger: logger),
            actor: "demo", logger: logger)
        let rowsMoved = try await log.run("migrate-data") {
            let reports = try await concurrentMap(shops, concurrency: 2) { shop in try await copier.copy(shop) }
            let rows = reports.reduce(0) { $0 + $1.rows }
            return (rows, "\(rows) rows copied in one snapshot per shop; capture on, tenants syncing")
        }
        _ = try await log.run("dual-write") {
            try await pause()
            let caughtUp = try await relay.catchUp(shops, timeout: .seconds(120))
            let statistics = relay.statistics
            guard caughtUp.paused.isEmpty else {
                throw TenantryError(code: .conflict, message: "sync paused for \(caughtUp.paused.keys.sorted()) (dead letters)")
            }
            return ((), "\(statistics.applied) captured changes applied by the relay, 0 dead letters")
        }
        let verifier = Verifier(plan: plan, logger: logger)
        func verifyAll() async throws -> [Verifier.Report] {
            try await concurrentMap(shops, concurrency: 2) { shop in
                try await verifier.verify(
                    shop, unifiedURL: unifiedURL, tenantURL: try servers.adminURL(of: try await catalog.requireTenant(shop)),
                    settle: { _ = try await relay.catchUp([shop], timeout: .seconds(60)) })
            }
        }
        let firstCheck = try await log.run("verify-sync") {
            let reports = try await verifyAll()
            let equal = reports.filter(\.equal).count
            return (reports, "\(equal)/\(reports.count) shops equal, row by row (checksummed chunks)")
        }

        var policy = try await catalog.readPolicy()
        policy.enableFallback = true
        for (name, change) in [
            ("reads canary", { (p: inout ReadPolicy) in p.strategy = .canary; p.canaryIDs = [shops[0]] }),
            ("reads percentage 50", { (p: inout ReadPolicy) in p.strategy = .percentage; p.percentage = 50 }),
            ("reads tenant", { (p: inout ReadPolicy) in p.strategy = .tenant }),
        ] as [(String, (inout ReadPolicy) -> Void)] {
            _ = try await log.run(name) {
                change(&policy)
                try await catalog.setReadPolicy(policy)
                try await pause()
                let report = load.report()
                return ((), "tenant reads so far \(report.tenant?.count ?? 0), load errors \(report.errors)")
            }
        }

        let cutover = Cutover(
            catalog: catalog, servers: servers, unifiedURL: unifiedURL, plan: plan, relay: relay, actor: "demo", logger: logger)
        let (pauses, retries) = try await log.run("cutover") {
            var pauses: [Double] = []
            var retries = 0
            for shop in shops {
                var attempt = 0
                while true {
                    do {
                        pauses.append(try await cutover.cutover(shop, maxPause: .milliseconds(500)).pauseMilliseconds)
                        break
                    } catch where attempt < 5 {
                        // Aborted cleanly (e.g. the pause would have been too long): retry.
                        attempt += 1
                        retries += 1
                        note("cutover of shop \(shop) aborted (\(userMessage(for: error))); retrying")
                        try await Task.sleep(for: .milliseconds(200))
                    }
                }
            }
            let maximum = pauses.max() ?? 0
            return ((pauses, retries), "\(shops.count) shops dedicated; longest write pause \(String(format: "%.1f", maximum)) ms"
                + (retries > 0 ? ", \(retries) retried" : ""))
        }
        let writesAtCutover = load.acknowledgedWrites

        _ = try await log.run("load on tenant databases") {
            try await pause(); try await pause()
            let report = load.report()
            return ((), "\(report.writesBySource["tenant"] ?? 0) writes served by tenant databases so far")
        }
        let secondCheck = try await log.run("verify (reverse sync)") {
            let reports = try await verifyAll()
            let equal = reports.filter(\.equal).count
            return (reports, "\(equal)/\(reports.count) shops: unified still equal to each tenant database")
        }

        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("\(unifiedURL.database)-archive").path
        let retirement = Retirement(
            catalog: catalog, servers: servers, unifiedURL: unifiedURL, plan: plan, relay: relay, verifyFirst: true,
            actor: "demo", logger: logger)
        let retired = try await log.run("retire-legacy") {
            let report = try await retirement.retire(nil, archiveDirectory: archive, dryRun: false)
            let rows = report.tables.reduce(0) { $0 + $1.rows }
            return (report, "\(rows) rows archived to \(report.archive ?? "-") and deleted from unified")
        }

        _ = try await log.run("load after retirement") {
            try await pause()
            return ((), "")
        }
        await load.stop()
        let lost = try await log.run("final check") {
            let lost = try await load.lostWrites()
            return (lost, "\(load.acknowledgedWrites) acknowledged writes looked up row by row: \(lost.count) missing or different")
        }

        let loadReport = load.report()
        let differences = (firstCheck + secondCheck).filter { !$0.equal }.flatMap { report in
            report.tables.flatMap { $0.differences.map { "shop \(report.tenant): \($0)" } }
        }
        let verified = firstCheck.count == shops.count && secondCheck.count == shops.count
            && (firstCheck + secondCheck).allSatisfy(\.equal) && lost.isEmpty
        let sortedPauses = pauses.sorted()
        return Report(
            verified: verified, lostRows: lost.count + differences.count, loadErrors: loadReport.errors,
            p50MsUnified: loadReport.unified?.p50, p95MsUnified: loadReport.unified?.p95, p99MsUnified: loadReport.unified?.p99,
            p50MsTenant: loadReport.tenant?.p50, p95MsTenant: loadReport.tenant?.p95, p99MsTenant: loadReport.tenant?.p99,
            shops: shops.count, rowsMoved: rowsMoved, writesDuringMove: writesAtCutover - writesBefore,
            loadOperations: loadReport.operations, loadThroughput: loadReport.throughput,
            cutoverPauseMsMax: ((sortedPauses.last ?? 0) * 10).rounded() / 10,
            cutoverPauseMsP50: ((sortedPauses.isEmpty ? 0 : sortedPauses[sortedPauses.count / 2]) * 10).rounded() / 10,
            cutoverRetries: retries, rowsRetired: retired.tables.reduce(0) { $0 + $1.rows }, archive: retired.archive,
            phases: [], lost: Array(lost.prefix(20)), errorSamples: loadReport.errorSamples, differences: Array(differences.prefix(20)))
    }
}
