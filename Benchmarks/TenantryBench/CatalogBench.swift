import ArgumentParser
import Foundation
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryHummingbird

/// `tenantry-bench catalog`: the control plane with N tenants in the catalog (default 10,000):
/// `tenantry status`, `tenantry status --json` and `tenantry tenants --json` as a user runs them
/// (the real executable beside this one, process start included), the same reports in-process,
/// the admin API's tenant list (`GET /api/superadmin/tenants`, through Hummingbird's router), and
/// route resolution after a NOTIFY storm: 1,000 tenants change phase in one statement, and a
/// running router resolves the 1,000 new routes (sequentially and 32 at a time). Goal: each under
/// one second.
struct CatalogBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "The control plane with N tenants: status, tenants --json, the admin API's tenant list, route resolution after a NOTIFY storm.")

    @Option(help: "Tenants in the catalog.") var tenants = 10_000
    @Option(help: "Tenants changing phase at once (the NOTIFY storm).") var storm = 1000
    @Option(name: .customLong("repeat"), help: "Measured runs of each (the median counts).") var repeats = 5
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (10...50_000).contains(tenants), (1...tenants).contains(storm), (1...50).contains(repeats) else {
            throw ValidationError("--tenants 10-50000, --storm 1-tenants, --repeat 1-50")
        }
    }

    func run() async throws {
        let options = self
        var report = try await Bench.withServer { _, admin in try await options.measure(admin) }
        report["benchmark"] = "catalog"
        report["tenants"] = tenants
        report["storm"] = storm
        report["cores"] = ProcessInfo.processInfo.activeProcessorCount
        report["goal_ms"] = 1000
        try Bench.report(report, json: json)
    }

    private func measure(_ admin: PostgresURL) async throws -> [String: any Sendable] {
        let logger = Bench.logger
        let url = try await ConsoleBench.makeFleet(admin, database: "catalog_bench", tenants: tenants, rowsPerShop: 10)
        var result: [String: any Sendable] = [:]

        Bench.note("tenantry status / status --json / tenants --json, \(repeats) each")
        let binary = TenantryChild.locate()
        for (name, arguments) in [("cli_status", ["status"]), ("cli_status_json", ["status", "--json"]), ("cli_tenants_json", ["tenants", "--json"])] {
            var times: [Double] = []
            for _ in 0..<repeats { times.append(try Self.runCLI(binary, arguments, url: url)) }
            result["\(name)_ms"] = Bench.round(Self.median(times), 1)
        }
        // A process that only starts and exits: what the CLI figures include besides the work.
        result["cli_start_ms"] = Bench.round(Self.median(try (0..<repeats).map { _ in try Self.runCLI(binary, ["--help"], url: url) }), 1)

        var settings = TenantryConfiguration()
        settings.databaseURL = url
        let configuration = settings
        let (repeats, storm) = (repeats, storm)
        let inProcess = try await Operations.with(configuration: configuration, databaseURL: url, actor: "bench", logger: logger) { operations in
            var result: [String: any Sendable] = [:]
            result["status_ms"] = Bench.round(Self.median(try await Self.times(repeats) { _ = try await operations.status() }), 1)
            result["tenant_listing_ms"] = Bench.round(Self.median(try await Self.times(repeats) { _ = try await operations.tenantListing() }), 1)

            let token = ConsoleBench.token
            let api = ConsoleBench.adminAPI(operations)
            let app = Application(router: api.makeRouter(), services: [api.jobs], logger: logger)
            let (apiTimes, bytes) = try await app.test(.router) { client in
                var times: [Double] = [], bytes = 0
                for _ in 0..<repeats {
                    let start = ContinuousClock.now
                    bytes = try await client.execute(
                        uri: "/api/superadmin/tenants", method: .get, headers: [.authorization: "Bearer \(token)"]
                    ) { response in
                        guard response.status == .ok else { throw TenantryError(code: .invalidArgument, message: "tenants: \(response.status)") }
                        return response.body.readableBytes
                    }
                    times.append((ContinuousClock.now - start).totalSeconds * 1000)
                }
                return (times, bytes)
            }
            result["api_tenants_ms"] = Bench.round(Self.median(apiTimes), 1)
            result["api_tenants_bytes"] = bytes

            Bench.note("NOTIFY storm: \(storm) tenants change phase; a running router resolves their routes")
            let router = operations.router(keyring: Keyring(current: .generate()), monitor: nil)
            let storming = try (1...storm).map { try TenantID(String($0)) }
            let storms = try await router.running {
                await router.waitUntilListening()
                var figures: [String: any Sendable] = [:]
                for (round, width) in [(0, 1), (1, 32)] {
                    for tenant in storming { _ = try await router.route(for: tenant) }  // cached before the storm
                    let phase = round == 0 ? "syncing" : "copying"
                    let start = ContinuousClock.now
                    try await Database.withConnection(url, logger: logger) { connection in
                        try await connection.query(
                            "UPDATE tenantry.moves SET phase = \(phase), phase_changed_at = now() WHERE tenant_id = ANY(\(storming.map(\.rawValue)))",
                            logger: logger)
                    }
                    let updated = ContinuousClock.now
                    // Until every route shows the new phase (each notification dropped its cached route).
                    var pending = storming
                    while !pending.isEmpty {
                        let stale = try await Self.resolve(pending, router: router, width: width) { $0.phase.rawValue != phase }
                        pending = stale
                        if !pending.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
                    }
                    let name = width == 1 ? "storm_resolve_sequential_ms" : "storm_resolve_concurrent32_ms"
                    figures[name] = Bench.round((ContinuousClock.now - updated).totalSeconds * 1000, 1)
                    figures[name.replacingOccurrences(of: "_ms", with: "_with_update_ms")] = Bench.round((ContinuousClock.now - start).totalSeconds * 1000, 1)
                }
                return figures
            }
            return result.merging(storms) { a, _ in a }
        }
        return result.merging(inProcess) { a, _ in a }
    }

    /// Resolves `tenants` `width` at a time; returns those whose route is still `stale`.
    private static func resolve(
        _ tenants: [TenantID], router: TenantRouter, width: Int, stale: @escaping @Sendable (Route) -> Bool
    ) async throws -> [TenantID] {
        try await withThrowingTaskGroup(of: TenantID?.self) { group in
            var iterator = tenants.makeIterator()
            var result: [TenantID] = []
            for _ in 0..<width {
                guard let tenant = iterator.next() else { break }
                group.addTask { stale(try await router.route(for: tenant)) ? tenant : nil }
            }
            while let done = try await group.next() {
                if let done { result.append(done) }
                if let tenant = iterator.next() { group.addTask { stale(try await router.route(for: tenant)) ? tenant : nil } }
            }
            return result
        }
    }

    private static func times(_ count: Int, _ body: () async throws -> Void) async throws -> [Double] {
        var times: [Double] = []
        for _ in 0..<count { times.append(try await Bench.time(body) * 1000) }
        return times
    }

    /// Milliseconds of one run of the real `tenantry` with `arguments` against `url`.
    private static func runCLI(_ binary: String, _ arguments: [String], url: PostgresURL) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        var environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "DATABASE_URL": url.urlStringWithPassword]
        environment["HOME"] = ProcessInfo.processInfo.environment["HOME"]
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        let start = ContinuousClock.now
        try process.run()
        process.waitUntilExit()
        let elapsed = (ContinuousClock.now - start).totalSeconds * 1000
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw TenantryError(code: .invalidArgument, message: "tenantry \(arguments.joined(separator: " ")) failed: \(message.prefix(300))")
        }
        return elapsed
    }

    private static func median(_ values: [Double]) -> Double { ConsoleBench.percentile(values, 50) }
}
