import ArgumentParser
import EmbeddedPostgres
import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench torture`: fault injection over every phase of a move (issue #12, "Trust") and
/// of a server move (issue #14).
///
/// On HandyShop data (`--shops` × `--rows-per-shop`), spread over the phases of a move, with an
/// application load through ``TenantRouter`` (``HandyShopLoad`` plus ``TortureWriters``: READ
/// COMMITTED, REPEATABLE READ and SERIALIZABLE transactions retried like an application retries,
/// and colliding explicit ids), and a second real server registered as `second`, every round picks
/// a phase command of the real `tenantry` CLI (provision, deprovision, migrate-data, sync, cutover,
/// rollback, retire-legacy, restore-legacy, move start/switch/reverse/complete/cancel), runs it as
/// a child process and kills it with SIGKILL after a random delay from 0 to the command's usual
/// duration — or restarts either PostgreSQL server in immediate mode instead — up to
/// `--kills-per-round` times in a row (each re-run may be interrupted again). Then the operation is
/// finished as the runbook says (docs/reliability.md), the load stops, sync catches up, and every
/// acknowledged write is looked up row by row, every tenant with two copies compared table by
/// table, unified and the tenant databases searched for rows changed by another tenant.
struct TortureBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torture",
        abstract: "Phase commands SIGKILLed (or PostgreSQL restarted) at random moments under load; every acknowledged write checked.")

    @Option(help: "Rounds (each: one operation interrupted, recovered, everything checked).") var rounds = 3
    @Option(help: "The random seed: operations, tenants, kill delays, writes.") var seed: UInt64 = 1
    @Option(help: "HandyShop shops (spread over the phases of a move).") var shops = 4
    @Option(help: "HandyShop rows per shop, on average.") var rowsPerShop = 200
    @Option(help: "Most interruptions of one operation per round.") var killsPerRound = 3
    @Option(help: "Share of interruptions that restart PostgreSQL (immediate mode) instead of a SIGKILL.") var restartShare = 0.15
    @Option(help: "Writer tasks of the isolation-level load.") var writers = 4
    @Option(help: "Share of writes that use another shop's customer id.") var collisionShare = 0.05
    @Flag(help: "No colliding ids in shops with an active server move (before 2026-11-30 their reverse dead letters could not be resolved).")
    var noCollideWhileMoving = false
    @Option(help: "A PostgreSQL server (superuser URL) to build the HandyShop bed on instead of a private one (no restarts).")
    var databaseURL: String?
    @Flag(help: "Print only the JSON object (progress still goes to standard error).") var json = false

    func validate() throws {
        guard (1...10_000).contains(rounds), (2...50).contains(shops), (50...100_000).contains(rowsPerShop),
              (1...10).contains(killsPerRound), (0...1).contains(restartShare), (1...32).contains(writers),
              (0...0.5).contains(collisionShare) else {
            throw ValidationError("--rounds 1-10000, --shops 2-50, --rows-per-shop 50-100000, --kills-per-round 1-10, "
                + "--restart-share 0-1, --writers 1-32, --collision-share 0-0.5")
        }
    }

    func run() async throws {
        let options = self
        let started = ContinuousClock.now
        // synchronous_commit on: an acknowledged COMMIT must survive an immediate restart (the
        // temporary server turns it off for speed). The second server (server moves) is always ours.
        let settings = ["synchronous_commit": "on"]
        var report: [String: any Sendable] = try await Bench.withServer(settings: settings) { second, secondAdmin in
            if let databaseURL {
                return try await options.torture(admin: try PostgresURL(databaseURL), server: nil, second: (second, secondAdmin))
            }
            return try await Bench.withServer(settings: settings) { server, admin in
                try await options.torture(admin: admin, server: server, second: (second, secondAdmin))
            }
        }
        report["benchmark"] = "torture"
        report["seconds"] = Bench.round((ContinuousClock.now - started).totalSeconds, 1)
        try Bench.report(report, json: json)
        let losses = ["lost_writes", "duplicated_rows", "cross_tenant_changes", "unrecoverable_rounds", "copy_differences"]
            .reduce(0) { $0 + (report[$1] as? Int ?? 0) }
        if losses > 0 { throw ExitCode.failure }
    }

    private func torture(
        admin: PostgresURL, server: EmbeddedPostgres?, second: (server: EmbeddedPostgres, admin: PostgresURL)
    ) async throws -> [String: any Sendable] {
        let name = server == nil ? "torture_" + String(UUID().uuidString.prefix(6)).lowercased() : "bench_unified"
        let bed = try await MoveBed.make(admin: admin, name: name, shops: shops, rowsPerShop: rowsPerShop, provision: [], quiet: false)
        let directory = "/tmp/tenantry-torture-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let key = EncryptionKey.generate()
        let child = TenantryChild(
            binary: TenantryChild.locate(), environment: TortureWorld.environment(bed, key: key), directory: directory)
        guard FileManager.default.isExecutableFile(atPath: child.binary) else {
            throw TortureError("\(child.binary) is missing: build it next to tenantry-bench (swift build --product tenantry)")
        }
        TenantryChild.warnIfOlder(child.binary)
        let foreign = try await TortureWorld.foreignIDs(bed)
        try await TortureWorld.registerSecond(child, url: second.admin)
        let options = self
        return try await Catalog.withCatalog(bed.unifiedURL, logger: Bench.logger) { catalog in
            let keyring = Keyring(current: key)
            var pool = TenantPool.Configuration()
            pool.maxConnections = 80
            // The router reaches tenant databases on both servers (the second one registered above).
            let servers = try await TortureWorld.directory(bed, catalog: catalog, keyring: keyring)
            let router = TenantRouter(
                configuration: TenantRouter.Configuration(unifiedURL: bed.unifiedURL, pool: pool), catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: keyring), servers: servers, logger: Bench.logger)
            let writers = TortureWriters(
                router: router, shops: bed.shops, foreignIDs: foreign, seed: options.seed, collisionShare: options.collisionShare)
            let world = TortureWorld(
                bed: bed, catalog: catalog, router: router, child: child, directory: directory, writers: writers, server: server,
                second: second.server, servers: servers)
            Bench.note("torture: \(bed.shops.count) shops, \(bed.generated.totalRows) rows, a second server registered as "
                + "'\(TortureWorld.secondServer)'; spreading the shops over the phases…")
            try await world.spreadPhases()
            let routerTask = Task { try await router.run() }
            let relayTask = Task { await world.superviseRelay() }
            let watchdog = Task { await world.watchdog() }
            func cleanup() async {
                watchdog.cancel()
                world.stopRelay()
                await relayTask.value
                routerTask.cancel()
                _ = try? await routerTask.value
            }
            do {
                let report = try await options.rounds(world)
                await cleanup()
                try? FileManager.default.removeItem(atPath: directory)
                return report
            } catch {
                await cleanup()
                throw error
            }
        }
    }
}
