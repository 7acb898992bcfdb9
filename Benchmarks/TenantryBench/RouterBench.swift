import ArgumentParser
import Foundation
import HandyShop
import PostgresNIO
import Prometheus
import Tenantry
import TenantryCore

/// `tenantry-bench router`: the router's cost and behaviour, measured on one throwaway server.
///
/// 1. **Overhead** (anchor: one PostgresNIO `PostgresClient` per tenant, "direct"): point selects
///    by primary key over `--tenants` tenant databases from `--concurrency` tasks, the same
///    request sequence through the router (without and with a performance monitor) and direct, in
///    alternating rounds of the same run. `router_vs_direct_throughput` = router / direct.
/// 2. **Zipf**: `--zipf-tenants` tenant databases behind a cap of `--zipf-cap` connections,
///    tenants drawn from a Zipf distribution: throughput, p99, connects/s, evictions/s.
/// 3. **Memory**: resident memory added by `--memory-tenants` tenants whose routes and
///    credentials the router has resolved and cached.
struct RouterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "router", abstract: "Router vs direct PostgresClient per tenant; Zipf load under a cap; memory per tenant.")

    @Option(help: "Tenant databases of the overhead scenario.") var tenants = 100
    @Option(help: "Concurrent tasks.") var concurrency = 32
    @Option(help: "Seconds per contestant per round.") var seconds = 5.0
    @Option(help: "Rounds (contestants alternate within each).") var rounds = 3
    @Option(help: "Connections per tenant: the router's per-tenant maximum and each direct client's maximum.")
    var perTenant = 4
    @Option(help: "Tenant databases of the Zipf scenario (0: skip it).") var zipfTenants = 1000
    @Option(help: "The router's server cap in the Zipf scenario.") var zipfCap = 50
    @Option(help: "Zipf exponent.") var zipfExponent = 1.0
    @Option(help: "Seconds of the Zipf scenario.") var zipfSeconds = 10.0
    @Option(help: "Registered tenants of the memory scenario (0: skip it).") var memoryTenants = 10_000
    @Flag(help: "Memory scenario: resolve every route first, then every credential, and measure each part.")
    var memorySplit = false
    @Flag(help: "Memory scenario: also measure the heap kept by 10,000 catalog queries that cache nothing.")
    var memoryProbe = false
    @Option(help: "Memory scenario: seconds to wait before a second reading, for the catalog pool's timers (0: none).")
    var memorySettle = 65
    @Option(help: "Seconds the memory probe waits at its end before its last reading.") var memoryProbeWait = 65
    @Option(help: "Tenants provisioned at a time during setup.") var provisionConcurrency = 8
    @Option(help: "Only these contestants of the overhead scenario, comma-separated (direct, router, router_monitored); for profiling.")
    var only: String?
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (1...5000).contains(tenants), (0...5000).contains(zipfTenants) else {
            throw ValidationError("--tenants must be 1-5000 and --zipf-tenants 0-5000")
        }
        guard (1...512).contains(concurrency), rounds >= 1, seconds > 0, zipfSeconds > 0, perTenant >= 1, zipfCap >= 1 else {
            throw ValidationError("--concurrency 1-512, --rounds, --seconds, --zipf-seconds, --per-tenant and --zipf-cap must be positive")
        }
    }

    func run() async throws {
        let options = self
        let fields = try await Bench.withServer(settings: ["max_connections": "\(max(1000, 3 * tenants * perTenant + 200))"]) { _, admin in
            let count = max(options.tenants, options.zipfTenants)
            if !options.json { Bench.note("provisioning \(count) tenant databases…") }
            let fleet = try await BenchFleet.make(
                admin: admin, count: count, width: options.provisionConcurrency, quiet: options.json)
            return try await Catalog.withCatalog(fleet.catalogURL, logger: Bench.logger) { catalog in
                var fields: [String: any Sendable] = [:]
                fields.merge(try await options.overhead(fleet, catalog)) { $1 }
                if options.zipfTenants > 0 { fields.merge(try await options.zipf(fleet, catalog)) { $1 } }
                if options.memoryTenants > 0 { fields.merge(try await options.memory(fleet, catalog)) { $1 } }
                return fields
            }
        }
        var report = fields
        report["benchmark"] = "router"
        report["cores"] = ProcessInfo.processInfo.activeProcessorCount
        try Bench.report(report, json: json)
    }

    static let pointSelect = "SELECT id, name, price FROM items WHERE id = $1"

    /// Scenario 1: router (plain and monitored) vs one PostgresClient per tenant.
    func overhead(_ fleet: BenchFleet, _ catalog: Catalog) async throws -> [String: any Sendable] {
        let ids = Array(fleet.ids.prefix(tenants))
        var made: [PostgresClient] = []
        for id in ids {
            let url = try await fleet.tenantURL(id, catalog: catalog)
            made.append(PostgresClient(
                configuration: try url.clientConfiguration(maximumConnections: perTenant), backgroundLogger: Bench.logger))
        }
        let clients = made
        let cap = tenants * perTenant
        let plain = fleet.makeRouter(catalog: catalog, cap: cap, perTenant: perTenant)
        let monitor = PerformanceMonitor(metricsFactory: PrometheusMetricsFactory(registry: PrometheusCollectorRegistry()))
        let monitored = fleet.makeRouter(catalog: catalog, cap: cap, perTenant: perTenant, monitor: monitor)
        let (tasks, duration, quiet) = (concurrency, Duration.milliseconds(Int64(seconds * 1000)), json)
        let logger = Bench.logger
        let count = ids.count
        let uniform: @Sendable (inout SeededRandom) -> Int = { Int($0.next() % UInt64(count)) }
        let all: [(String, @Sendable (Int, Int) async throws -> Void)] = [
            ("direct", { tenant, key in
                let rows = try await clients[tenant].query("SELECT id, name, price FROM items WHERE id = \(key)", logger: logger)
                for try await _ in rows {}
            }),
            ("router", BenchFleet.pointSelect(plain, ids)),
            ("router_monitored", BenchFleet.pointSelect(monitored, ids)),
        ]
        let chosen = only.map { Set($0.split(separator: ",").map(String.init)) }
        let contestants = all.filter { chosen?.contains($0.0) ?? true }
        let rounds = self.rounds
        let results = try await withThrowingTaskGroup(of: [String: Load.Result]?.self) { group in
            for client in clients { group.addTask { await client.run(); return nil } }
            group.addTask { try await plain.run(); return nil }
            group.addTask { try await monitored.run(); return nil }
            group.addTask {
                if !quiet { Bench.note("warming up (every tenant, every contestant)…") }
                for (_, operation) in contestants {
                    for tenant in 0..<count { try await operation(tenant, 1) }
                    _ = await Load.run(concurrency: tasks, duration: .seconds(1), keys: BenchFleet.rows, seed: 1, pick: uniform, operation)
                }
                var totals: [String: Load.Result] = [:]
                for round in 0..<rounds {
                    // Rotate the order, so that drift of the machine during the run hits everyone.
                    for offset in 0..<contestants.count {
                        let (name, operation) = contestants[(round + offset) % contestants.count]
                        if !quiet { Bench.note("round \(round + 1)/\(rounds): \(name)…") }
                        let result = await Load.run(
                            concurrency: tasks, duration: duration, keys: BenchFleet.rows, seed: UInt64(100 + round),
                            pick: uniform, operation)
                        totals[name, default: Load.Result()] = totals[name, default: Load.Result()] + result
                    }
                }
                return totals
            }
            defer { group.cancelAll() }
            while let value = try await group.next() {
                if let value { return value }
            }
            throw CancellationError()
        }
        let direct = results["direct", default: .init()]
        let router = results["router", default: .init()]
        let withMonitor = results["router_monitored", default: .init()]
        var fields: [String: any Sendable] = [
            "tenants": tenants, "concurrency": tasks, "seconds_per_round": seconds, "rounds": rounds,
            "per_tenant_connections": perTenant,
            "monitor_recorded": monitor.stats().totalQueries,
        ]
        if direct.operations > 0 {
            fields["goal_router_vs_direct_throughput"] = 0.95
            if router.operations > 0 {
                fields["router_vs_direct_throughput"] = Bench.round(router.throughput / direct.throughput, 3)
            }
            if withMonitor.operations > 0 {
                fields["router_monitored_vs_direct_throughput"] = Bench.round(withMonitor.throughput / direct.throughput, 3)
            }
        }
        for (name, result) in [("direct", direct), ("router", router), ("router_monitored", withMonitor)]
        where chosen?.contains(name) ?? true {
            fields["\(name)_qps"] = Bench.round(result.throughput, 0)
            fields["\(name)_p50_ms"] = Bench.round(result.percentileMs(50))
            fields["\(name)_p99_ms"] = Bench.round(result.percentileMs(99))
            fields["\(name)_errors"] = result.errors
        }
        return fields
    }
}
