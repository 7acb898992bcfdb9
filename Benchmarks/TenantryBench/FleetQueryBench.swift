import ArgumentParser
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench fleet-query`: one aggregate over N tenant databases, combined into one result,
/// three ways in the same run on the same throwaway server:
///
/// 1. **Tenantry** ``FleetQuery`` (through the router, bounded concurrency, per-tenant rows loaded
///    into a scratch `results` table and combined there by `--combine`-style SQL);
/// 2. anchor **sequential loop** (stancl/tenancy's `runForEach`, django-tenants): for each tenant in
///    turn, connect with its login, run the aggregate, disconnect; sum in Swift (also reported over
///    connections opened beforehand, the loop's lower limit);
/// 3. anchor **postgres_fdw**: one database with a foreign server (`async_capable`), user mapping
///    and foreign table per tenant and a `UNION ALL` view over them; the aggregate runs over the
///    view in a new session (also reported on a session whose foreign connections are cached).
///
/// Every contestant runs `--repeat` times, in a rotating order; the median counts. Every result
/// must equal the others exactly, or the benchmark fails.
struct FleetQueryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-query",
        abstract: "One aggregate over N tenant databases: FleetQuery vs a sequential per-tenant loop vs a postgres_fdw UNION ALL view.")

    @Option(help: "Tenant databases.") var tenants = 200
    @Option(help: "Repairs per tenant database.") var rowsPerTenant = 500
    @Option(name: .customLong("repeat"), help: "Measured runs of each contestant (the median counts).") var repeats = 5
    @Option(help: ArgumentHelp(
        "FleetQuery's concurrency, comma-separated to compare several (the first is the headline figure).",
        discussion: "Default: the library's default."))
    var concurrency: String?
    @Option(help: "Tenants provisioned at a time during setup.") var provisionConcurrency = 8
    @Option(help: "Only these contestants, comma-separated (fleet_query, fleet_query_warm, sequential_loop, sequential_loop_pooled, postgres_fdw, postgres_fdw_warm); for profiling.")
    var only: String?
    @Flag(help: "Also measure the parts of a cold FleetQuery run (profile_… fields; see FleetQueryBench+Profile.swift).")
    var profile = false
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (1...2000).contains(tenants), (1...1_000_000).contains(rowsPerTenant), (1...100).contains(repeats),
              (1...64).contains(provisionConcurrency) else {
            throw ValidationError("--tenants 1-2000, --rows-per-tenant 1-1000000, --repeat 1-100, --provision-concurrency 1-64")
        }
        _ = try widths()
    }

    /// The FleetQuery concurrencies to measure (`nil`: the library's default).
    func widths() throws -> [Int?] {
        guard let concurrency else { return [nil] }
        let values = concurrency.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ (1...64).contains($0 ?? 0) }) else {
            throw ValidationError("--concurrency: comma-separated numbers from 1 to 64 (FleetQuery's range)")
        }
        return values
    }

    /// One way of answering the question: runs once, returns the milliseconds of its timed part and its result.
    struct Contestant: Sendable {
        let name: String
        let run: @Sendable () async throws -> (ms: Double, result: Combined)
    }

    func run() async throws {
        let options = self
        let widths = try self.widths()
        let settings = ["max_connections": "\(max(400, 2 * tenants + 150))"]
        var report = try await Bench.withServer(settings: settings) { _, admin in
            try await options.measure(admin: admin, widths: widths)
        }
        report["benchmark"] = "fleet-query"
        report["cores"] = ProcessInfo.processInfo.activeProcessorCount
        report["tenants"] = tenants
        report["rows_per_tenant"] = rowsPerTenant
        report["repeat"] = repeats
        report["query"] = Self.perTenantSQL
        report["combine"] = Self.combineSQL
        report["goal_vs_sequential_loop"] = 3.0
        report["goal_vs_postgres_fdw"] = 1.0
        try Bench.report(report, json: json)
        if report["results_equal"] as? Bool != true { throw ExitCode.failure }
    }

    func measure(admin: PostgresURL, widths: [Int?]) async throws -> [String: any Sendable] {
        let quiet = json
        if !quiet { Bench.note("provisioning \(tenants) tenant databases…") }
        var fleet: BenchFleet?
        let provisionSeconds = try await Bench.time {
            fleet = try await BenchFleet.make(
                admin: admin, count: tenants, width: provisionConcurrency, migrations: [Self.migration], quiet: quiet)
        }
        let bench = fleet!
        if !quiet { Bench.note("filling \(tenants) × \(rowsPerTenant) repairs…") }
        let rows = rowsPerTenant
        let indexed = Array(bench.ids.enumerated())
        let fillSeconds = try await Bench.time {
            try await Bench.forEach(indexed, width: 4) { index, id in
                try await Self.fill(admin.with(database: BenchFleet.naming.databaseName(for: id)), index: index + 1, rows: rows)
            }
        }
        let tenantURLs = try await Catalog.withCatalog(bench.catalogURL, logger: Bench.logger) { catalog in
            var urls: [PostgresURL] = []
            for id in bench.ids { urls.append(try await bench.tenantURL(id, catalog: catalog)) }
            return urls
        }
        if !quiet { Bench.note("postgres_fdw: \(tenants) foreign servers, user mappings, foreign tables, one UNION ALL view…") }
        let fdwSetupSeconds = try await Self.makeForeignTables(admin: admin, tenants: tenantURLs, rows: rows)
        let asyncScans = try await Self.asyncForeignScans(admin: admin)

        var configuration = TenantryConfiguration()
        configuration.databaseURL = bench.catalogURL
        configuration.keyring = bench.keyring
        configuration.naming = BenchFleet.naming
        let options = self
        let count = tenants
        return try await Operations.with(
            configuration: configuration, databaseURL: bench.catalogURL, actor: "bench", logger: Bench.logger
        ) { operations in
            let router = Self.warmRouter(operations, keyring: bench.keyring, tenants: count)
            var contestants = widths.map { Self.fleetQueryContestant(operations, tenants: count, concurrency: $0) }
            contestants += widths.map {
                Self.warmContestant(router, combineURL: bench.catalogURL, tenants: count, concurrency: $0)
            }
            contestants += Self.anchors(admin: admin, tenants: tenantURLs)
            if options.profile {
                contestants += Self.profileContestants(
                    operations, keyring: bench.keyring, ids: bench.ids, tenants: tenantURLs,
                    concurrency: widths[0] ?? Self.defaultConcurrency, warm: router)
            }
            if let only = options.only {
                let chosen = only.split(separator: ",").map(String.init)
                contestants = contestants.filter { contestant in
                    chosen.contains { contestant.name == $0 || contestant.name.hasPrefix("\($0)_c") }
                }
            }
            guard !contestants.isEmpty else { throw ValidationError("--only chose no contestant") }
            let chosen = contestants
            var fields = try await router.running { try await options.race(chosen) }
            let headline = widths[0] ?? Self.defaultConcurrency
            func ms(_ name: String) -> Double { fields["\(name)_ms"] as? Double ?? 0 }
            func ratio(_ anchor: String, _ contestant: String) -> Double? {
                ms(anchor) > 0 && ms(contestant) > 0 ? Bench.round(ms(anchor) / ms(contestant), 2) : nil
            }
            fields["concurrency"] = headline
            fields["default_concurrency"] = Self.defaultConcurrency
            fields["server_cap"] = operations.configuration.pool.maxPerServer
            if ms("fleet_query_c\(headline)") > 0 { fields["fleet_query_ms"] = ms("fleet_query_c\(headline)") }
            if ms("fleet_query_warm_c\(headline)") > 0 { fields["fleet_query_warm_ms"] = ms("fleet_query_warm_c\(headline)") }
            for (key, anchor, contestant) in [
                ("vs_sequential_loop", "sequential_loop", "fleet_query_c\(headline)"),
                ("vs_postgres_fdw", "postgres_fdw", "fleet_query_c\(headline)"),
                ("warm_vs_sequential_loop_pooled", "sequential_loop_pooled", "fleet_query_warm_c\(headline)"),
                ("warm_vs_postgres_fdw_warm", "postgres_fdw_warm", "fleet_query_warm_c\(headline)"),
            ] {
                if let value = ratio(anchor, contestant) { fields[key] = value }
            }
            fields["provision_s"] = Bench.round(provisionSeconds, 1)
            fields["fill_s"] = Bench.round(fillSeconds, 1)
            fields["postgres_fdw_setup_ms"] = Bench.round(fdwSetupSeconds * 1000, 1)
            fields["postgres_fdw_async_foreign_scans"] = asyncScans
            return fields
        }
    }

    /// The two anchors, each in two variants.
    static func anchors(admin: PostgresURL, tenants: [PostgresURL]) -> [Contestant] {
        [
            Contestant(name: "sequential_loop") {
                var result: Combined = []
                let seconds = try await Bench.time { result = try await sequentialLoop(tenants) }
                return (seconds * 1000, result)
            },
            Contestant(name: "sequential_loop_pooled") {
                var connections: [PostgresConnection] = []
                do {
                    for url in tenants { connections.append(try await Database.connect(url, logger: Bench.logger)) }
                    let opened = connections
                    var result: Combined = []
                    let seconds = try await Bench.time { result = try await sequentialLoop(pooled: opened) }
                    for connection in opened { try? await connection.close() }
                    return (seconds * 1000, result)
                } catch {
                    for connection in connections { try? await connection.close() }
                    throw error
                }
            },
            Contestant(name: "postgres_fdw") {
                var result: Combined = []
                let seconds = try await Bench.time { result = try await foreignAggregate(admin: admin) }
                return (seconds * 1000, result)
            },
            Contestant(name: "postgres_fdw_warm") {
                try await Database.withConnection(admin.with(database: fdwDatabase), logger: Bench.logger) { session in
                    _ = try await foreignAggregate(admin: admin, session: session)  // opens and caches the foreign connections
                    var result: Combined = []
                    let seconds = try await Bench.time { result = try await foreignAggregate(admin: admin, session: session) }
                    return (seconds * 1000, result)
                }
            },
        ]
    }

    /// Runs every contestant once (warm-up), then `repeats` rounds in rotating order; returns the
    /// median and spread per contestant and whether every result equalled the first one.
    func race(_ contestants: [Contestant]) async throws -> [String: any Sendable] {
        var reference: Combined?
        var equal = true
        var mismatches: [String] = []
        var times: [String: [Double]] = [:]
        func check(_ name: String, _ result: Combined) {
            let normalised = result.map { $0.map(Self.canonical) }.sorted { $0.lexicographicallyPrecedes($1) }
            guard let expected = reference else { reference = normalised; return }
            if normalised != expected {
                equal = false
                if !mismatches.contains(name) { mismatches.append(name) }
            }
        }
        for contestant in contestants {
            if !json { Bench.note("warm-up: \(contestant.name)…") }
            let (ms, result) = try await contestant.run()
            if !json { Bench.note("  \(Bench.round(ms, 1)) ms, \(result.count) rows") }
            check(contestant.name, result)
        }
        for round in 0..<repeats {
            for offset in 0..<contestants.count {
                let contestant = contestants[(round + offset) % contestants.count]
                let (ms, result) = try await contestant.run()
                if !json { Bench.note("round \(round + 1)/\(repeats): \(contestant.name) \(Bench.round(ms, 1)) ms") }
                check(contestant.name, result)
                times[contestant.name, default: []].append(ms)
            }
        }
        var fields: [String: any Sendable] = ["results_equal": equal, "result_rows": reference?.count ?? 0]
        if !mismatches.isEmpty { fields["results_differ"] = mismatches }
        if let reference { fields["result"] = reference.map { $0.joined(separator: " ") } }
        for (name, values) in times {
            fields["\(name)_ms"] = Bench.round(median(values), 1)
            fields["\(name)_min_ms"] = Bench.round(values.min() ?? 0, 1)
            fields["\(name)_max_ms"] = Bench.round(values.max() ?? 0, 1)
        }
        return fields
    }
}
