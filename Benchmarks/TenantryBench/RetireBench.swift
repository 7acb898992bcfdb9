import ArgumentParser
import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench retire`: retire-legacy against the copy of the same tenants, same run, same
/// server. A unified database (HandyShop, or `--unified-schema FILE`) with `--shops` shops plus one
/// more that stays shared; `--tenants` of them are copied (what `migrate-data` does, timed: the
/// anchor), cut over, then retired in one retire-legacy run (verify, archive, delete; timed) while
/// a writer updates the shared shop's rows in the same tables (its latencies: what another
/// tenant's writers see). `--method row` runs the delete with the per-row triggers (the old method).
struct RetireBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retire",
        abstract: "retire-legacy (verify, archive, delete) vs migrate-data's copy of the same tenants, with another tenant's writer.")

    @Option(help: "Shops in the unified database (one more is added: the writer's, never moved).") var shops = 40
    @Option(help: "Tenant rows per shop, on average.") var rowsPerShop = 1000
    @Option(help: "Shops moved and retired (the first N; 0: all).") var tenants = 0
    @Option(help: "Tenants copied at a time (migrate-data's default).") var concurrency = 2
    @Option(help: "Tenants retire-legacy verifies, then retires, at a time (its default: 2).") var retireConcurrency = 2
    @Option(help: "Tenants a retire-legacy worker retires in one transaction (its default: 8; 1: one at a time).") var retireBatch = 8
    @Option(help: "How retire-legacy deletes: set (default) or row (per-row triggers, the old method).") var method = "set"
    @Option(help: "Writes per second of the shared shop's writer during the retirement (0: none).") var writerRate = 50
    @Option(help: ArgumentHelp(
        "A SQL script of a unified database (tenant column shop_id; {shops} and {rows_per_shop} are replaced).",
        discussion: "Default: HandyShop. Benchmarks/schemas/retire-unindexed.sql is one with unindexed foreign keys."))
    var unifiedSchema: String?
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (1...1000).contains(shops), (1...1_000_000).contains(rowsPerShop), (0...shops).contains(tenants) else {
            throw ValidationError("--shops must be 1-1000, --rows-per-shop 1-1000000, --tenants 0-shops")
        }
        guard Retirement.DeleteMethod(rawValue: method) != nil else { throw ValidationError("--method must be set or row") }
        guard (1...16).contains(concurrency), (1...16).contains(retireConcurrency), (0...1000).contains(writerRate),
              (1...1000).contains(retireBatch) else {
            throw ValidationError("--concurrency and --retire-concurrency must be 1-16, --writer-rate 0-1000, --retire-batch 1-1000")
        }
    }

    func run() async throws {
        let options = self
        let script = try unifiedSchema.map { path in
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read --unified-schema \(path)") }
            return String(decoding: data, as: UTF8.self)
                .replacingOccurrences(of: "{shops}", with: "\(shops + 1)")
                .replacingOccurrences(of: "{rows_per_shop}", with: "\(rowsPerShop)")
        }
        let fields: [String: any Sendable] = try await Bench.withServer { _, admin in
            try await options.measure(admin: admin, script: script)
        }
        try Bench.report(fields, json: json)
    }

    /// Builds the unified database (HandyShop, or `script`), then measures.
    func measure(admin: PostgresURL, script: String?) async throws -> [String: any Sendable] {
        let ids = try (1...(tenants == 0 ? shops : tenants)).map { try TenantID("\($0)") }
        let shopCount = shops + 1
        var load: (@Sendable (PostgresURL) async throws -> HandyShopGenerator.Report)?
        if let script {
            load = { url in
                try await Database.withConnection(url, logger: Bench.logger) { connection in
                    try await Database.execute(script: script, on: connection, logger: Bench.logger)
                }
                let shopIDs: [Int64] = (1...shopCount).map { Int64($0) }
                return HandyShopGenerator.Report(shopIDs: shopIDs, rowsByTable: [:], totalRows: 0, tenantRows: 0)
            }
        }
        let bed = try await MoveBed.make(
            admin: admin, shops: shopCount, rowsPerShop: rowsPerShop, provision: ids, quiet: json, load: load)
        let options = self
        return try await Catalog.withCatalog(bed.unifiedURL, logger: Bench.logger) { catalog in
            try await options.measure(bed, catalog: catalog, tenants: ids)
        }
    }

    func measure(_ bed: MoveBed, catalog: Catalog, tenants ids: [TenantID]) async throws -> [String: any Sendable] {
        let quiet = json
        let shared = try TenantID("\(shops + 1)")
        var rows = 0
        for id in ids { rows += try await bed.unifiedRows(id) }
        let sharedRows = try await bed.unifiedRows(shared)
        let unindexed = try await Self.unindexedForeignKeys(bed)
        if !quiet { Bench.note("\(rows) rows in \(ids.count) tenants; unindexed foreign keys into tenant tables: \(unindexed)") }

        // (1) The anchor: the copy, as migrate-data does it (`concurrency` tenants at a time).
        try await MoveBed.execute("CHECKPOINT", on: bed.admin)
        if !quiet { Bench.note("copy (migrate-data), \(concurrency) at a time…") }
        let copier = bed.copier(catalog)
        let width = concurrency
        let copySeconds = try await Bench.time {
            try await Bench.forEach(ids, width: width) { _ = try await copier.copy($0) }
        }
        // (2) Cutover (not timed).
        let relay = Relay(catalog: catalog, servers: bed.servers, unifiedURL: bed.unifiedURL, plan: bed.plan, logger: Bench.logger)
        let cutover = Cutover(
            catalog: catalog, servers: bed.servers, unifiedURL: bed.unifiedURL, plan: bed.plan, relay: relay, actor: "bench",
            logger: Bench.logger)
        if !quiet { Bench.note("cutting \(ids.count) tenants over…") }
        for id in ids { _ = try await cutover.cutover(id, maxPause: .seconds(30)) }

        // (3) retire-legacy of the same tenants, with the shared shop's writer running.
        var retirement = Retirement(
            catalog: catalog, servers: bed.servers, unifiedURL: bed.unifiedURL, plan: bed.plan, relay: relay, actor: "bench",
            logger: Bench.logger)
        retirement.deleteMethod = Retirement.DeleteMethod(rawValue: method) ?? .setBased
        retirement.concurrency = retireConcurrency
        retirement.batchSize = retireBatch
        let steps = NIOLockedValueBox<[String: Double]>([:])
        retirement.timing = { step, seconds in steps.withLockedValue { $0[step, default: 0] += seconds } }
        let archive = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-bench-retire-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: archive, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: archive) }
        try await MoveBed.execute("CHECKPOINT", on: bed.admin)
        if !quiet { Bench.note("retire-legacy (\(method)) with a writer of shop \(shared) at \(writerRate)/s…") }
        // The writer's latencies without a retirement first (3 s): the baseline its p99 compares with.
        let idle = SharedShopWriter(bed: bed, shop: shared, rate: writerRate)
        let idleRun = Task { try await idle.run() }
        try await Task.sleep(for: .seconds(3))
        idle.stop()
        let baseline = try await idleRun.value.sorted()
        let writer = SharedShopWriter(bed: bed, shop: shared, rate: writerRate)
        let running = Task { try await writer.run() }
        var report: Retirement.Report?
        let retireSeconds = try await Bench.time {
            report = try await retirement.retire(ids, archiveDirectory: archive, dryRun: false)
        }
        writer.stop()
        let latencies = try await running.value.sorted()
        await relay.close()

        // Checks: the tenants' rows are gone, the shared shop's are all there.
        let deleted = report?.tables.reduce(0) { $0 + $1.rows } ?? 0
        guard deleted == rows else { throw ValidationError("retire-legacy deleted \(deleted) rows, the tenants had \(rows)") }
        for id in ids where try await bed.unifiedRows(id) != 0 { throw ValidationError("tenant \(id) still has rows in unified") }
        guard try await bed.unifiedRows(shared) == sharedRows else { throw ValidationError("the shared shop's rows changed") }

        func percentile(_ p: Double, of latencies: [Double]) -> Double {
            latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int((Double(latencies.count) * p).rounded(.down)))] * 1000
        }
        var fields: [String: any Sendable] = [
            "benchmark": "retire",
            "schema": unifiedSchema.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "handyshop",
            "cores": ProcessInfo.processInfo.activeProcessorCount,
            "shops": shops + 1,
            "tenants": ids.count,
            "rows_per_shop": rowsPerShop,
            "rows": rows,
            "method": method,
            "concurrency": concurrency,
            "retire_concurrency": retireConcurrency,
            "retire_batch": retireBatch,
            "unindexed_foreign_keys": unindexed,
            "copy_seconds": Bench.round(copySeconds),
            "retire_seconds": Bench.round(retireSeconds),
            "retire_vs_copy": Bench.round(retireSeconds / max(copySeconds, 1e-9), 2),
            "goal_retire_vs_copy": 1.0,
            "copy_rows_per_s": Bench.round(Double(rows) / max(copySeconds, 1e-9), 0),
            "retire_rows_per_s": Bench.round(Double(rows) / max(retireSeconds, 1e-9), 0),
            "writer_writes": latencies.count,
            "writer_p50_ms": Bench.round(percentile(0.50, of: latencies), 1),
            "writer_p99_ms": Bench.round(percentile(0.99, of: latencies), 1),
            "writer_idle_p50_ms": Bench.round(percentile(0.50, of: baseline), 1),
            "writer_idle_p99_ms": Bench.round(percentile(0.99, of: baseline), 1),
            "writer_max_ms": Bench.round((latencies.last ?? 0) * 1000, 1),
        ]
        let measured = steps.withLockedValue { $0 }
        // prepare, verify: wall time of the phase (tenants verified `concurrency` at a time); pause,
        // archive, delete, check, catalog: summed over the batches (two workers run at once).
        for (step, seconds) in measured { fields["retire_\(step)_s"] = Bench.round(seconds) }
        return fields
    }

    /// `table (columns)` of each foreign key into a tenant table with no index leading with its columns.
    static func unindexedForeignKeys(_ bed: MoveBed) async throws -> [String] {
        try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            let rows = try await connection.query("""
                SELECT cl.relname::text || ' (' || (SELECT string_agg(a.attname::text, ', ') FROM unnest(c.conkey) k(n)
                    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n) || ')'
                FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid
                WHERE c.contype = 'f' AND c.confrelid::regclass::text = ANY(\(bed.plan.tables.map(\.name)))
                  AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid
                      AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)] @> c.conkey)
                ORDER BY 1
                """, logger: Bench.logger)
            var keys: [String] = []
            for try await key in rows.decode(String.self) { keys.append(key) }
            return keys
        }
    }
}

/// Another tenant's writer during the retirement: at `rate` per second, one UPDATE of one of the
/// shared shop's rows, table after table of the tenant tables (the tables the retirement deletes
/// from); returns each write's latency in seconds.
final class SharedShopWriter: Sendable {
    let bed: MoveBed
    let shop: TenantID
    let rate: Int
    private let stopped = NIOLockedValueBox(false)

    init(bed: MoveBed, shop: TenantID, rate: Int) {
        self.bed = bed
        self.shop = shop
        self.rate = rate
    }

    func stop() { stopped.withLockedValue { $0 = true } }

    func run() async throws -> [Double] {
        guard rate > 0 else { return [] }
        return try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            var latencies: [Double] = []
            let interval = Duration.seconds(1) / rate
            var next = ContinuousClock.now
            var index = 0
            let discriminator = "\"\(bed.plan.discriminator)\""
            while !stopped.withLockedValue({ $0 }) {
                let table = bed.plan.tables[index % bed.plan.tables.count]
                index += 1
                var query = PostgresQuery(unsafeSQL: "UPDATE \(bed.plan.unifiedName(table)) SET \(discriminator) = \(discriminator) "
                    + "WHERE ctid = (SELECT ctid FROM \(bed.plan.unifiedName(table)) WHERE \(bed.plan.tenantFilter(parameter: 1)) LIMIT 1)")
                query.binds.append(shop.rawValue)
                let start = ContinuousClock.now
                try await connection.query(query, logger: Bench.logger)
                latencies.append((ContinuousClock.now - start).totalSeconds)
                next += interval
                if next > ContinuousClock.now { try await Task.sleep(until: next) } else { next = ContinuousClock.now }
            }
            return latencies
        }
    }
}
