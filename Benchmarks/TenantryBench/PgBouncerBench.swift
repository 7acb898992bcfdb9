import ArgumentParser
import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench pgbouncer`: Tenantry's router against PgBouncer, on one throwaway server with
/// `--tenants` tenant databases, the same seeded Zipf request sequence (a point select by primary
/// key, the tenant's database) from `--concurrency` tasks, and a budget of `--cap` server connections:
///
/// - **router**: `TenantRouter` with the global cap `--cap`, logged in as each tenant's role;
/// - **pgbouncer**: PgBouncer as users configure it, transaction pooling, one pool per tenant
///   database and role (`default_pool_size` = `max_db_connections` = `--pool-size`), no cap across
///   databases; one PostgresClient per tenant in front of it, logged in as the tenant's role;
/// - **pgbouncer_capped**: the documented workaround for a global cap: one role for every database
///   (`bench_pool`, member of every tenant role), `max_user_connections = --cap`. Clients log in as
///   that role: a forced user (`user=` in `[databases]`) would not do, PgBouncer 1.18 counts its
///   connections per database.
///
/// The server has `max_connections` = `--max-connections` (100): the uncapped PgBouncer hits it. The
/// contestants run one after another (each with a warm-up, then `--seconds` measured), the order
/// rotating each round; client backends on tenant databases are sampled from `pg_stat_activity`
/// every 50 ms for each run's peak.
struct PgBouncerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pgbouncer", abstract: "Router vs PgBouncer (per-database pools; capped with one shared role) over many tenant databases.")

    @Option(help: "Tenant databases.") var tenants = 1000
    @Option(help: "Concurrent tasks.") var concurrency = 32
    @Option(help: "The router's per-tenant maximum (its default: 20).") var routerPerTenant = TenantPool.Configuration().maxPerKey
    @Option(help: "Server connections budget: the router's cap and PgBouncer's max_user_connections when capped.") var cap = 50
    @Option(help: "PgBouncer's default_pool_size and max_db_connections.") var poolSize = 2
    @Option(help: "Connections of each tenant's PostgresClient to PgBouncer.") var clientConnections = 4
    @Option(help: "The server's max_connections.") var maxConnections = 100
    @Option(help: "Zipf exponent.") var zipfExponent = 1.0
    @Option(help: "Measured seconds per contestant per round.") var seconds = 20.0
    @Option(help: "Warm-up seconds before each measured run.") var warmup = 5.0
    @Option(help: "Seconds after which a request gives up (counted as an error).") var requestTimeout = 10.0
    @Option(help: "Rounds (the order of the contestants rotates each round).") var rounds = 3
    @Option(help: "Tenants provisioned at a time during setup.") var provisionConcurrency = 8
    @Option(help: "Only these contestants, comma-separated (router, pgbouncer, pgbouncer_capped).") var only: String?
    @Flag(help: "Print only the JSON object.") var json = false

    static let contestants = ["router", "pgbouncer", "pgbouncer_capped"]

    func validate() throws {
        guard (1...5000).contains(tenants), (1...512).contains(concurrency), cap >= 1, poolSize >= 1, clientConnections >= 1,
              maxConnections >= 20, rounds >= 1, seconds > 0, warmup >= 0, requestTimeout > 0 else {
            throw ValidationError("--tenants 1-5000, --concurrency 1-512, --max-connections ≥ 20; --cap, --pool-size, --client-connections, --rounds, --seconds positive")
        }
        if let only, !only.split(separator: ",").allSatisfy({ Self.contestants.contains(String($0)) }) {
            throw ValidationError("--only takes \(Self.contestants.joined(separator: ", "))")
        }
    }

    func run() async throws {
        let options = self
        _ = try await PgBouncer.executable()  // installed (or named) before the long setup
        let fields = try await Bench.withServer(settings: ["max_connections": "\(maxConnections)"]) { _, admin in
            if !options.json { Bench.note("provisioning \(options.tenants) tenant databases…") }
            let fleet = try await BenchFleet.make(
                admin: admin, count: options.tenants, width: options.provisionConcurrency, quiet: options.json)
            return try await Catalog.withCatalog(fleet.catalogURL, logger: Bench.logger) { catalog in
                try await options.compare(fleet, catalog)
            }
        }
        var report = fields
        report["benchmark"] = "pgbouncer"
        report["cores"] = ProcessInfo.processInfo.activeProcessorCount
        try Bench.report(report, json: json)
    }

    /// One contestant's measured run.
    struct Run: Sendable {
        var name: String
        var round: Int
        var result: Load.Result
        var peakServerConnections: Int
        var peakBackends: Int
        var errorKinds: [String: Int] = [:]
        /// Sessions opened to tenant databases during the measured run.
        var serverConnects: Int
        /// PgBouncer's CPU during the measured run, in cores (its one thread saturates at 1.0).
        var poolerCores: Double?

        var connectsPerSecond: Double { Double(serverConnects) / max(result.seconds, 0.001) }
    }

    func compare(_ fleet: BenchFleet, _ catalog: Catalog) async throws -> [String: any Sendable] {
        var logins: [PgBouncer.Login] = []
        for id in fleet.ids {
            let url = try await fleet.tenantURL(id, catalog: catalog)
            logins.append(PgBouncer.Login(user: url.user, password: url.password ?? "", database: url.database))
        }
        let pooler = try await Self.createPoolerRole(fleet.admin)
        let chosen = only.map { Set($0.split(separator: ",").map(String.init)) }
        let names = Self.contestants.filter { chosen?.contains($0) ?? true }
        let bed = Bed(
            fleet: fleet, catalog: catalog, logins: logins, pooler: pooler,
            distribution: Zipf(count: fleet.ids.count, exponent: zipfExponent), options: self)
        var runs: [Run] = []
        try await ConnectionSampler.with(fleet.admin) { sampler in
            for round in 0..<rounds {
                for offset in 0..<names.count {
                    let name = names[(round + offset) % names.count]
                    try await sampler.waitUntilIdle()
                    if !json { Bench.note("round \(round + 1)/\(rounds): \(name)…") }
                    let run = try await bed.run(name, round: round, sampler: sampler)
                    if !json {
                        Bench.note("  \(Int(run.result.throughput)) qps, p99 \(Bench.round(run.result.percentileMs(99))) ms, "
                            + "\(run.result.errors) errors, peak \(run.peakServerConnections) server connections")
                    }
                    runs.append(run)
                }
            }
        }
        return fields(runs, names: names)
    }

    /// The report: totals per contestant over all rounds, ratios, and every run.
    func fields(_ runs: [Run], names: [String]) -> [String: any Sendable] {
        var fields: [String: any Sendable] = [
            "tenants": tenants, "concurrency": concurrency, "cap": cap, "pool_size": poolSize, "router_per_tenant": routerPerTenant,
            "client_connections": clientConnections, "max_connections": maxConnections, "zipf_exponent": zipfExponent,
            "zipf_top10_share": Bench.round(Zipf(count: tenants, exponent: zipfExponent).share(top: 10)),
            "seconds_per_run": seconds, "warmup_seconds": warmup, "rounds": rounds, "request_timeout_s": requestTimeout,
            "request": "SELECT id, name, price FROM items WHERE id = $1",
            "goal_router_vs_pgbouncer_capped": 1.5, "goal_router_vs_pgbouncer": 1.0,
        ]
        var qps: [String: Double] = [:]
        for name in names {
            let mine = runs.filter { $0.name == name }
            let total = mine.reduce(Load.Result()) { $0 + $1.result }
            qps[name] = total.throughput
            fields["\(name)_qps"] = Bench.round(total.throughput, 0)
            fields["\(name)_p50_ms"] = Bench.round(total.percentileMs(50))
            fields["\(name)_p99_ms"] = Bench.round(total.percentileMs(99))
            fields["\(name)_errors"] = total.errors
            fields["\(name)_peak_server_connections"] = mine.map(\.peakServerConnections).max() ?? 0
            fields["\(name)_peak_backends"] = mine.map(\.peakBackends).max() ?? 0
            let connects = mine.reduce(0) { $0 + $1.serverConnects }
            fields["\(name)_server_connects_per_s"] = Bench.round(Double(connects) / max(total.seconds, 0.001), 1)
            let cores = mine.compactMap(\.poolerCores)
            if !cores.isEmpty { fields["\(name)_pooler_cpu_cores"] = Bench.round(cores.reduce(0, +) / Double(cores.count), 2) }
            let kinds = mine.reduce(into: [String: Int]()) { $0.merge($1.errorKinds) { $0 + $1 } }
            if !kinds.isEmpty { fields["\(name)_error_kinds"] = kinds }
        }
        if let router = qps["router"] {
            if let capped = qps["pgbouncer_capped"], capped > 0 { fields["router_vs_pgbouncer_capped"] = Bench.round(router / capped) }
            if let plain = qps["pgbouncer"], plain > 0 { fields["router_vs_pgbouncer"] = Bench.round(router / plain) }
        }
        fields["runs"] = runs.map { run -> [String: any Sendable] in
            var entry: [String: any Sendable] = [
                "round": run.round + 1, "contestant": run.name, "qps": Bench.round(run.result.throughput, 0),
                "p50_ms": Bench.round(run.result.percentileMs(50)), "p99_ms": Bench.round(run.result.percentileMs(99)),
                "errors": run.result.errors, "peak_server_connections": run.peakServerConnections,
                "server_connects_per_s": Bench.round(run.connectsPerSecond, 1),
            ]
            if let cores = run.poolerCores { entry["pooler_cpu_cores"] = Bench.round(cores, 2) }
            return entry
        }
        return fields
    }

    /// The one role of the capped PgBouncer, member of every tenant role (so it may read what
    /// each tenant role may), with a random password.
    static func createPoolerRole(_ admin: PostgresURL) async throws -> (name: String, password: String) {
        let password = EncryptionKey.generate().hex  // hex only: safe to spell in CREATE ROLE
        try await Database.withConnection(admin, logger: Bench.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE ROLE bench_pool LOGIN PASSWORD '\(password)'"), logger: Bench.logger)
            try await connection.query("""
                DO $$
                DECLARE r text;
                BEGIN
                    FOR r IN SELECT rolname FROM pg_roles WHERE rolname ~ '^bench_u_[0-9]+$' LOOP
                        EXECUTE format('GRANT %I TO bench_pool', r);
                    END LOOP;
                END $$
                """, logger: Bench.logger)
        }
        return ("bench_pool", password)
    }
}
