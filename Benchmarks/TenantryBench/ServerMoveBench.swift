import ArgumentParser
import EmbeddedPostgres
import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench server-move`: a tenant database moved between two real servers under paced
/// writes through the router.
///
/// Two EmbeddedPostgres servers on this machine: A (the catalog's own, `default`) holds
/// `bench_unified` with HandyShop's data (shop 1 about `--rows` rows, shop 2 the generator's other
/// large shop, left shared, shops 3… the `--drain-tenants` small ones); shop 1 and the small shops
/// are provisioned on A and made dedicated (`migrateData` + `cutover`, as `tenantry migrate-data` and
/// `tenantry cutover` do); B is registered in the catalog as `second`. With ``TenantRouter`` and a
/// background ``Relay`` running and `--rate` writes/s going through the router (the cutover
/// benchmark's ``RouterWrites``: `--tenant-share` of them for shop 1, the rest round-robin over the
/// other shops), in this order:
///
/// 1. **anchor**: `pg_dump -Fc` of shop 1's database on A piped into `pg_restore` into a fresh
///    database on B (created inside the timing), then dropped;
/// 2. `ServerMoves.start` (shop 1 → B; copy rows and seconds from its report), `catchUp`, `verify`;
/// 3. `--cycles` × (`switchTraffic`, `--hold` s, `reverse`, `--hold` s), one more `switchTraffic`,
///    then `complete` (A's database dropped); after the first switch, `follower_probe`: one INSERT
///    straight into A's database (now the follower), as a writer with a stale route would send it;
/// 4. the drain: the small shops moved A → B by `ServerMoves.run`, `--drain-concurrency` at a time;
/// 5. the writers stop, the relay catches up, every acknowledged write is looked up (see
///    ``ServerMoveBench/lostWrites(_:operations:)``).
struct ServerMoveBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server-move",
        abstract: "A ~100k-row tenant database moved between two servers under paced router writes, against pg_dump | pg_restore; switch/reverse pauses; a drain of small tenants.")

    @Option(help: "Rows wanted in the moved tenant (shop 1); the generator's sizes make it about this many.") var rows = 100_000
    @Option(help: "Writes per second offered through the router, all shops together.") var rate = 500.0
    @Option(help: "Switch/reverse cycles measured on the large tenant (each gives two samples).") var cycles = 20
    @Option(help: "Small tenants drained from server A to server B.") var drainTenants = 20
    @Option(help: "Moves of the drain running at once.") var drainConcurrency = 4
    @Option(help: "Share of the writes that go to the moved tenant.") var tenantShare = 0.8
    @Option(help: "Writer tasks.") var writers = 32
    @Option(help: "Seconds between a switch and the next reverse (and back).") var hold = 1.0
    @Option(help: "maxPause of each switch and reverse, milliseconds (large: measure the pause rather than abort).") var maxPauseMs = 5_000
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (1_000...2_000_000).contains(rows), rate > 0, (1...500).contains(cycles), (1...200).contains(drainTenants),
              (1...16).contains(drainConcurrency), (0.05...1).contains(tenantShare), (1...200).contains(writers), hold >= 0,
              maxPauseMs >= 1 else {
            throw ValidationError("--rows 1000-2000000, --cycles 1-500, --drain-tenants 1-200, --drain-concurrency 1-16, --writers 1-200, --tenant-share 0.05-1")
        }
    }

    static let moved = try! TenantID("1")
    static let secondServer = "second"

    func run() async throws {
        let options = self
        let fields = try await Bench.withServer { _, admin in
            try await Self.withSecondServer { second in
                try await options.measure(admin: admin, second: second)
            }
        }
        var report = fields
        report["benchmark"] = "server-move"
        report["cores"] = ProcessInfo.processInfo.activeProcessorCount
        report["rows_requested"] = rows
        report["rate_offered"] = rate
        report["tenant_share"] = tenantShare
        report["cycles"] = cycles
        report["writers"] = writers
        report["hold_s"] = hold
        report["max_pause_ms"] = maxPauseMs
        report["drain_concurrency"] = drainConcurrency
        report["goal_copy_vs_pg_dump_restore"] = 1.0
        report["goal_switch_pause_p99_ms"] = 500
        try Bench.report(report, json: json)
    }

    /// A second throwaway server (B), stopped afterwards.
    static func withSecondServer<T: Sendable>(_ body: (PostgresURL) async throws -> T) async throws -> T {
        let server = EmbeddedPostgres(configuration: .temporary(settings: ["max_connections": "400"]))
        try await server.start()
        do {
            let result = try await body(try PostgresURL(server.url()))
            try await server.stop()
            return result
        } catch {
            try? await server.stop()
            throw error
        }
    }

    /// The generator's `rowsPerShop` that makes shop 1 about `rows` rows with `shops` shops (its
    /// size weights, replayed: the first `shops / 10` shops weigh 5, the others 0.2–1.2).
    static func rowsPerShop(rows: Int, shops: Int) -> Int {
        var random = SeededRandom(seed: MoveBed.seed, stream: "shop sizes")
        let big = max(1, shops / 10)
        let weights = (0..<shops).map { $0 < big ? 5.0 : 0.2 + random.unit() }
        let scale = Double(shops) / weights.reduce(0, +)
        return max(100, Int((Double(rows) / (5 * scale)).rounded()))
    }

    func measure(admin: PostgresURL, second: PostgresURL) async throws -> [String: any Sendable] {
        let shops = drainTenants + 2
        let drained = try (3...shops).map { try TenantID("\($0)") }
        let dedicated = [Self.moved] + drained
        if !json { Bench.note("server A \(admin.host):\(admin.port), server B \(second.host):\(second.port)") }
        let bed = try await MoveBed.make(
            admin: admin, shops: shops, rowsPerShop: Self.rowsPerShop(rows: rows, shops: shops), provision: dedicated, quiet: json)
        let setup = try await Self.register(bed, second: second)
        defer { try? FileManager.default.removeItem(atPath: setup.migrations) }
        var configuration = TenantryConfiguration()
        configuration.databaseURL = bed.unifiedURL
        configuration.keyring = bed.keyring
        configuration.naming = MoveBed.naming
        configuration.migrationsDirectory = setup.migrations
        let options = self
        return try await Operations.with(
            configuration: configuration, databaseURL: bed.unifiedURL, actor: "bench", logger: Bench.logger
        ) { operations in
            let move = try await operations.move()
            if !options.json { Bench.note("making \(dedicated.count) tenants dedicated on server A (migrate-data + cutover)…") }
            var dedicateSeconds = 0.0
            dedicateSeconds = try await Bench.time {
                let copied = try await move.migrateData(.tenants(dedicated), concurrency: 2, captureTimeout: .seconds(120))
                guard copied.failed.isEmpty else { throw ValidationError("migrate-data failed: \(copied.failed)") }
                let cut = try await move.cutover(.tenants(dedicated), maxPause: .seconds(5), retries: 5)
                guard cut.failed.isEmpty else { throw ValidationError("cutover failed: \(cut.failed)") }
            }
            var fields = try await options.underLoad(
                bed, operations: operations, move: move, second: second, drained: drained)
            fields["dedicate_s"] = Bench.round(dedicateSeconds, 1)
            fields["generate_s"] = Bench.round(bed.generateSeconds, 1)
            fields["shops"] = shops
            return fields
        }
    }

    /// Registers B as `second` (admin password sealed with the keyring) and writes the tenant
    /// schema as the fleet's migration V1 (derived from HandyShop's schema in a scratch database,
    /// exactly as `tenantry schema derive` does and as ``MoveBed`` provisioned with).
    static func register(_ bed: MoveBed, second: PostgresURL) async throws -> (migrations: String, ddl: String) {
        let scratch = bed.admin.with(database: "bench_schema")
        try await MoveBed.execute("CREATE DATABASE bench_schema", on: bed.admin)
        let ddl = try await Database.withConnection(scratch, logger: Bench.logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: Bench.logger)
            let unified = try await SchemaIntrospector(logger: Bench.logger).read(connection)
            return try SchemaDDL.render(try TenantSchemaDeriver().derive(from: unified).schema)
        }
        try await MoveBed.execute("DROP DATABASE bench_schema", on: bed.admin)
        let migrations = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-bench-mig-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: migrations, withIntermediateDirectories: true)
        try ddl.write(toFile: "\(migrations)/V1__tenant_schema.sql", atomically: true, encoding: .utf8)
        try await Catalog.withCatalog(bed.unifiedURL, logger: Bench.logger) { catalog in
            try await catalog.upsertServer(ServerRecord(
                name: secondServer, host: second.host, port: second.port, adminUser: second.user,
                adminPasswordSealed: try bed.keyring.seal(second.password ?? "", tenant: "server:\(secondServer)", field: "admin_password")))
        }
        return (migrations, ddl)
    }
}
