import ArgumentParser
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench cutover`: how long a tenant's writers wait while it is cut over.
///
/// One large HandyShop shop (`--shops`/`--rows-per-shop`: the generator makes the first shop about
/// 2.5× the average with 4 shops) is provisioned, copied and syncing while the relay runs and
/// writers go through ``TenantRouter`` at `--rate` writes per second (`--tenant-share` of them for
/// the moved shop, the rest for the other shops): single-row INSERTs of `customers`, each its own
/// transaction. Then, `--cutovers` times: cutover (``Cutover/cutover(_:maxPause:)``), writes go to
/// the tenant database for `--hold` seconds, rollback (a cutover back), copy afresh
/// (``Copier/copy(_:progress:)``), settle. A final cutover leaves the shop dedicated.
///
/// **Pause per cutover** = the longest latency of the moved shop's writes that overlapped the
/// cutover call (start before it returned, end after it began): what a writer waited, raw, the
/// router's retry on the new route included. Also reported: the fence hold time Cutover itself
/// measures, the same for rollbacks, and the anchor: p99 latency of the shop's writes outside
/// any cutover or rollback. At the end every acknowledged write of the moved shop is looked up, row
/// by row, in its tenant database (and, through reverse sync, in the unified database), and every
/// other shop's in the unified database: `writes_lost`.
struct CutoverBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cutover",
        abstract: "Write pause per cutover of a ~100k-row shop under paced writes through the router; every write checked afterwards.")

    @Option(help: "Shops in the unified database (shop 1 is the one moved).") var shops = 4
    @Option(help: "HandyShop rows per shop, on average (shop 1 gets about 2.5× this with 4 shops).") var rowsPerShop = 40_000
    @Option(help: "Cutovers measured (each followed by a rollback and a fresh copy, except the last).") var cutovers = 20
    @Option(help: "Writes per second offered through the router, all shops together.") var rate = 500.0
    @Option(help: "Share of the writes that go to the moved shop.") var tenantShare = 0.8
    @Option(help: "Writer tasks (a writer blocked by the fence does not hold up the others).") var writers = 32
    @Option(help: "Seconds writes go to the tenant database before each rollback, and settle after each copy.") var hold = 1.0
    @Option(help: "Cutover's --max-pause, milliseconds (large: measure the pause rather than abort).") var maxPauseMs = 5_000
    @Option(help: "Connections the router warms ahead of each switch (TenantRouter warmConnections; 0: no warm-up).")
    var warmConnections = 10
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (2...100).contains(shops), (100...1_000_000).contains(rowsPerShop), (1...500).contains(cutovers),
              rate > 0, (0.05...1).contains(tenantShare), (1...200).contains(writers), hold >= 0, maxPauseMs >= 1,
              warmConnections >= 0 else {
            throw ValidationError("--shops 2-100, --rows-per-shop 100-1000000, --cutovers 1-500, --writers 1-200, --tenant-share 0.05-1")
        }
    }

    static let movedShop = "1"

    func run() async throws {
        let options = self
        let fields = try await Bench.withServer { _, admin in
            let tenant = try TenantID(Self.movedShop)
            let bed = try await MoveBed.make(
                admin: admin, shops: options.shops, rowsPerShop: options.rowsPerShop, provision: [tenant], quiet: options.json)
            return try await Catalog.withCatalog(bed.unifiedURL, logger: Bench.logger) { catalog in
                try await options.measure(bed, catalog: catalog, tenant: tenant)
            }
        }
        var report = fields
        report["benchmark"] = "cutover"
        report["cores"] = ProcessInfo.processInfo.activeProcessorCount
        report["shops"] = shops
        report["rows_per_shop"] = rowsPerShop
        report["rate_offered"] = rate
        report["tenant_share"] = tenantShare
        report["goal_pause_p99_ms"] = 150
        report["goal_rollback_pause_p99_ms"] = 300
        try Bench.report(report, json: json)
    }

    func measure(_ bed: MoveBed, catalog: Catalog, tenant: TenantID) async throws -> [String: any Sendable] {
        let tenantRows = try await bed.unifiedRows(tenant)
        let relay = Relay(catalog: catalog, servers: bed.servers, unifiedURL: bed.unifiedURL, plan: bed.plan, logger: Bench.logger)
        let copier = bed.copier(catalog)
        if !json { Bench.note("copying shop \(tenant) (\(tenantRows) rows)…") }
        let firstCopy = try await copier.copy(tenant)
        // The unified database is one pool key for every shop; a tenant database keeps the default
        // per-tenant cap (TENANT_DB_MAX_POOL_SIZE, 20, under the tenant role's connection limit of 25).
        var pool = TenantPool.Configuration()
        pool.maxConnections = writers + 20
        var configuration = TenantRouter.Configuration(unifiedURL: bed.unifiedURL, pool: pool)
        configuration.warmConnections = warmConnections
        let router = TenantRouter(
            configuration: configuration, catalog: catalog,
            registry: CredentialRegistry(catalog: catalog, keyring: bed.keyring), servers: bed.servers, logger: Bench.logger)
        let cutover = Cutover(
            catalog: catalog, servers: bed.servers, unifiedURL: bed.unifiedURL, plan: bed.plan, relay: relay, actor: "bench",
            logger: Bench.logger)
        let load = RouterWrites(router: router, moved: tenant, others: try bed.shops.filter { $0 != tenant }, options: self)
        let maxPause = Duration.milliseconds(Int64(maxPauseMs))

        var cutoverWindows: [Window] = [], rollbackWindows: [Window] = []
        var aborted: [String] = []
        var copySeconds: [Double] = []
        var loads = [BackupFleet.loadAverage()]
        let writes = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await router.run() }
            group.addTask { try await relay.run() }
            defer { group.cancelAll() }
            let running = Task { await load.run() }
            try await Task.sleep(for: .seconds(max(1, hold)))
            while cutoverWindows.count < cutovers {
                guard let window = try await Self.timed(load.clock, aborted: &aborted, {
                    try await cutover.cutover(tenant, maxPause: maxPause)
                }) else { continue }
                cutoverWindows.append(window)
                loads.append(BackupFleet.loadAverage())
                if !json {
                    Bench.note("cutover \(cutoverWindows.count)/\(cutovers): fence held \(String(format: "%.1f", window.fenceMs)) ms")
                }
                guard cutoverWindows.count < cutovers else { break }
                try await Task.sleep(for: .seconds(hold))
                while true {
                    if let window = try await Self.timed(load.clock, aborted: &aborted, {
                        try await cutover.rollback(tenant, maxPause: maxPause)
                    }) {
                        rollbackWindows.append(window)
                        break
                    }
                }
                copySeconds.append(try await Bench.time { _ = try await copier.copy(tenant) })
                try await Task.sleep(for: .seconds(hold))
            }
            try await Task.sleep(for: .seconds(hold))
            let writes = await load.stop(after: running)
            if !json { Bench.note("writers stopped (\(writes.count) writes); reverse sync catching up, then checking every write…") }
            _ = try await relay.catchUp(timeout: .seconds(120))
            return writes
        }
        await relay.close()
        let lost = try await load.missing(bed: bed, writes: writes)
        return Self.fields(
            writes: writes, cutovers: cutoverWindows, rollbacks: rollbackWindows,
            extra: [
                "tenant_rows": tenantRows, "first_copy_s": Bench.round(firstCopy.seconds, 2),
                "recopy_p50_s": Bench.round(Self.percentile(copySeconds, 50), 2),
                "aborted_attempts": aborted.count, "aborted_first_error": aborted.first ?? "",
                "writes_lost": lost.count, "writes_lost_examples": Array(lost.prefix(5)),
                "writers": writers, "hold_s": hold, "max_pause_ms": maxPauseMs, "warm_connections": warmConnections,
                "load_average_min": Bench.round(loads.min() ?? -1, 1), "load_average_max": Bench.round(loads.max() ?? -1, 1),
            ])
    }

    /// One cutover or rollback: when it ran (on the load's clock) and the fence hold it reported.
    struct Window: Sendable {
        var start: Double
        var end: Double
        var fenceMs: Double
        /// Where the fence went (``Cutover/Report/pauseParts``).
        var parts: [String: Double] = [:]
        /// What came before it (``Cutover/Report/preparationParts``; cutovers only).
        var preparation: [String: Double] = [:]
    }

    /// Runs one cutover or rollback; an aborted one (pause over the max, or changes left) is noted.
    static func timed(
        _ clock: LoadClock, aborted: inout [String], _ body: () async throws -> Cutover.Report
    ) async throws -> Window? {
        let start = clock.now()
        do {
            let report = try await body()
            return Window(start: start, end: clock.now(), fenceMs: report.pauseMilliseconds, parts: report.pauseParts,
                          preparation: report.preparationParts)
        } catch let error as TenantryError where error.code == .timeout || error.code == .conflict {
            aborted.append(error.message)
            if aborted.count > 20 { throw error }
            try await Task.sleep(for: .milliseconds(500))
            return nil
        }
    }
}
