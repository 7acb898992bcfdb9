import ArgumentParser
import Foundation
import HTTPTypes
import HandyShop
import Hummingbird
import HummingbirdTesting
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryHummingbird

/// `tenantry-bench console`: the operator's console over a fleet of N tenants (default 1,000) in
/// the catalog, a third of them captured with writes waiting: the server time of `GET /console`
/// (the fleet page), of a tenant page and of a live update, each with the fleet read from the
/// catalog (a cache miss) and from the shared read of the last second (a hit); and the catalog
/// queries per second while B browsers watch the live channel.
///
/// Requests go through Hummingbird's router in-process (`app.test(.router)`): the time is the
/// server's (middleware, handler, catalog and unified-database reads, rendering), without a
/// network or a browser. Catalog rows are written directly (the console reads the catalog; it
/// does not open tenant databases), so 1,000 tenants need no 1,000 databases.
struct ConsoleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "The console's server time for a fleet of N tenants (fleet page, tenant page, live update) and its catalog cost with B watching browsers.")

    @Option(help: "Tenants in the catalog.") var tenants = 1000
    @Option(help: "Browsers watching the live channel at once.") var browsers = 20
    @Option(help: "Seconds the browsers watch.") var seconds = 10.0
    @Option(name: .customLong("repeat"), help: "Measured requests of each kind (the median and p95 count).") var repeats = 15
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (1...20_000).contains(tenants), (1...500).contains(browsers), (1...120).contains(seconds), (3...200).contains(repeats) else {
            throw ValidationError("--tenants 1-20000, --browsers 1-500, --seconds 1-120, --repeat 3-200")
        }
    }

    func run() async throws {
        let options = self
        var report: [String: any Sendable]
        do {
            report = try await Bench.withServer { _, admin in try await options.measure(admin) }
        } catch let error as PSQLError {
            throw TenantryError(code: .database, message: "\(error.serverInfo?[.message] ?? String(reflecting: error).prefix(300).description)")
        }
        report["benchmark"] = "console"
        report["tenants"] = tenants
        report["browsers"] = browsers
        report["cores"] = ProcessInfo.processInfo.activeProcessorCount
        report["goal_server_ms"] = 200
        report["goal_catalog_queries_per_second"] = 1
        try Bench.report(report, json: json)
    }

    private func measure(_ admin: PostgresURL) async throws -> [String: any Sendable] {
        let logger = Bench.logger
        let url = try await Self.makeFleet(admin, database: "console_bench", tenants: tenants)
        var settings = TenantryConfiguration()
        settings.databaseURL = url
        let configuration = settings
        let (tenants, browsers, seconds, repeats) = (tenants, browsers, seconds, repeats)
        return try await Operations.with(configuration: configuration, databaseURL: url, actor: "bench", logger: logger) { operations in
            let token = Self.token
            let api = Self.adminAPI(operations)
            var settings = Console.Configuration(adminToken: token)
            settings.streamLifetime = seconds
            let console = Console(configuration: settings, api: api)
            let app = Application(router: api.makeRouter(console: console), services: [api.jobs], logger: logger)
            return try await app.test(.router) { client in
                let cookie = try await Self.logIn(client, token: token)
                var result: [String: any Sendable] = [:]
                // A miss: wait out the shared read first, so this request reads the catalog.
                func timed(_ path: String, miss: Bool) async throws -> (ms: [Double], bytes: Int) {
                    var times: [Double] = [], bytes = 0
                    for _ in 0..<repeats {
                        if miss { try await Task.sleep(for: .milliseconds(1_050)) }
                        let start = ContinuousClock.now
                        let answer = try await client.execute(uri: path, method: .get, headers: [.cookie: cookie]) { $0 }
                        times.append((ContinuousClock.now - start).totalSeconds * 1000)
                        guard answer.status == .ok else { throw TenantryError(code: .invalidArgument, message: "\(path): \(answer.status)") }
                        bytes = answer.body.readableBytes
                    }
                    return (times, bytes)
                }
                Bench.note("fleet page, tenant page, live update: \(repeats) each, with and without a catalog read")
                let middle = String(tenants / 2 + 1)
                for (name, path) in [("fleet_page", "/console"), ("tenant_page", "/console/tenants/\(middle)")] {
                    let miss = try await timed(path, miss: true), hit = try await timed(path, miss: false)
                    result["\(name)_ms_p50"] = Bench.round(Self.percentile(miss.ms, 50), 2)
                    result["\(name)_ms_p95"] = Bench.round(Self.percentile(miss.ms, 95), 2)
                    result["\(name)_cached_ms_p50"] = Bench.round(Self.percentile(hit.ms, 50), 2)
                    result["\(name)_bytes"] = miss.bytes
                }
                var live: [Double] = [], liveHit: [Double] = [], liveBytes = 0
                for _ in 0..<repeats {
                    try await Task.sleep(for: .milliseconds(1_050))
                    var start = ContinuousClock.now
                    liveBytes = try await console.liveMessage().utf8.count
                    live.append((ContinuousClock.now - start).totalSeconds * 1000)
                    start = ContinuousClock.now
                    _ = try await console.liveMessage()
                    liveHit.append((ContinuousClock.now - start).totalSeconds * 1000)
                }
                result["live_update_ms_p50"] = Bench.round(Self.percentile(live, 50), 2)
                result["live_update_ms_p95"] = Bench.round(Self.percentile(live, 95), 2)
                result["live_update_cached_ms_p50"] = Bench.round(Self.percentile(liveHit, 50), 2)
                result["live_update_first_message_bytes"] = liveBytes

                Bench.note("\(browsers) browsers watch the live channel for \(seconds) s")
                let before = await console.catalogQueries()
                let transactionsBefore = try await Self.transactions(url)
                let start = ContinuousClock.now
                let messages = try await withThrowingTaskGroup(of: Int.self) { group in
                    for index in 0..<browsers {
                        group.addTask {
                            let path = index % 4 == 0 ? "/console/events?tenant=\(index % tenants + 1)" : "/console/events"
                            return try await client.execute(uri: path, method: .get, headers: [.cookie: cookie]) { response in
                                String(buffer: response.body).components(separatedBy: "\n\ndata: ").count - 1
                            }
                        }
                    }
                    return try await group.reduce(0, +)
                }
                let elapsed = (ContinuousClock.now - start).totalSeconds
                let queries = await console.catalogQueries() - before
                let transactions = try await Self.transactions(url) - transactionsBefore
                result["watch_seconds"] = Bench.round(elapsed, 2)
                result["catalog_queries_per_second"] = Bench.round(Double(queries) / elapsed, 2)
                result["database_transactions_per_second"] = Bench.round(Double(transactions) / elapsed, 2)
                result["live_messages"] = messages
                return result
            }
        }
    }

    /// The admin token of the benchmarks' admin APIs.
    static let token = "bench-admin-token-0123456789"

    /// An admin API over `operations` (no metrics), as `tenantry serve` makes it.
    static func adminAPI(_ operations: Operations) -> AdminAPI {
        AdminAPI(
            configuration: .init(token: token), operations: operations, metrics: nil,
            monitor: PerformanceMonitor(configuration: .init(operations.configuration.monitor)), logger: Bench.logger)
    }

    /// A new database `database` on `admin`'s server holding HandyShop with N shops (few rows),
    /// the catalog with a tenant per shop in every phase (rows written directly: no tenant
    /// database exists), capture on for a third of them with writes waiting in their queues.
    static func makeFleet(_ admin: PostgresURL, database: String, tenants: Int, rowsPerShop: Int = 20) async throws -> PostgresURL {
        let logger = Bench.logger
        let url = admin.with(database: database)
        try await Database.withConnection(admin, logger: logger) {
            try await $0.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(try SQLIdentifier.quoted(database))"), logger: logger)
        }
        Bench.note("seeding \(tenants) shops and their catalog rows")
        try await Database.withConnection(url, logger: logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: logger)
            _ = try await HandyShopGenerator(options: .init(shops: tenants, rowsPerShop: rowsPerShop, seed: 7)).generate(on: connection, logger: logger)
        }
        try await Catalog.withCatalog(url, logger: logger) { _ = try await $0.migrate() }
        let capture = Capture(unifiedURL: url, logger: logger)
        _ = try await capture.install()
        let phases = MovePhase.all.map(\.rawValue)
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO tenantry.tenants (id, status, placement, database_name, role_name, schema_version)
                SELECT g::text, 'active', CASE WHEN g % 8 >= 5 THEN 'dedicated' ELSE 'shared' END, 'shop_' || g || '_db', 'shop_user_' || g, 1
                FROM generate_series(1, \(tenants)) g
                """), logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO tenantry.moves (tenant_id, phase, rows_copied)
                SELECT g::text, (ARRAY['\(phases.joined(separator: "','"))'])[1 + g % \(phases.count)], g * 17
                FROM generate_series(1, \(tenants)) g
                """), logger: logger)
        }
        // Capture on for every third tenant, as `Capture.enable` records it (without its wait for
        // older transactions: nothing else runs yet): the rows first (the state guard skipped), then
        // the triggers list them.
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query("SET session_replication_role = replica", logger: logger)
            for id in stride(from: 3, through: tenants, by: 3) {
                let tenant = try TenantID(String(id))
                try await connection.query("""
                    INSERT INTO tenantry.capture_state (tenant_id, lock_key, capturing, capture_enabled_at)
                    VALUES (\(tenant.rawValue), \(AdvisoryLock.tenant(tenant)), true, clock_timestamp())
                    """, logger: logger)
            }
        }
        try await capture.refreshTriggerList()
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO customers (shop_id, first_name, last_name)
                SELECT s, 'Waiting', 'Write ' || n FROM generate_series(3, \(tenants), 3) s, generate_series(1, 5) n
                """), logger: logger)
        }
        return url
    }

    private static func logIn(_ client: any TestClientProtocol, token: String) async throws -> String {
        let page = try await client.execute(uri: "/console/login", method: .get) { $0 }
        let loginCookie = String((page.headers[.setCookie] ?? "").split(separator: ";")[0])
        let text = String(buffer: page.body)
        guard let range = text.range(of: "name=\"csrf\" value=\"") else { throw TenantryError(code: .invalidArgument, message: "no login form") }
        let csrf = text[range.upperBound...].prefix { $0 != "\"" }
        let answer = try await client.execute(
            uri: "/console/login", method: .post,
            headers: [.cookie: loginCookie, .contentType: "application/x-www-form-urlencoded"],
            body: ByteBuffer(string: "csrf=\(csrf)&token=\(token)")) { $0 }
        guard let session = answer.headers[values: .setCookie].first(where: { $0.hasPrefix("tenantry_console=") }) else {
            throw TenantryError(code: .invalidArgument, message: "login failed: \(answer.status)")
        }
        return String(session.split(separator: ";")[0])
    }

    private static func transactions(_ url: PostgresURL) async throws -> Int {
        try await Database.withConnection(url, logger: Bench.logger) { connection in
            let rows = try await connection.query(
                "SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database WHERE datname = current_database()", logger: Bench.logger)
            for try await value in rows.decode(Int.self) { return value }
            return 0
        }
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p / 100).rounded()))]
    }
}
