import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// What the console shows of the fleet at one moment: the catalog's overview, each captured
/// tenant's capture state, the relay's counters, each server's open connections.
struct ConsoleFleet: Sendable {
    var overview: FleetOverview
    /// Capture states by tenant id (empty when capture is not installed).
    var capture: [String: Capture.State]
    var captureInstalled: Bool
    /// The relay in this process, if any.
    var relay: Relay.Statistics?
    /// Open client connections per server name, sampled every few seconds (absent: unreachable).
    var connections: [String: Int]
    /// Tenant names from the unified database's tenant table, when it has a `name` column.
    var names: [String: String]
    var at: Date

    /// The tenants by phase.
    var byPhase: [String: Int] {
        overview.tenants.reduce(into: [:]) { $0[$1.phase, default: 0] += 1 }
    }

    /// The tenants by placement.
    var byPlacement: [String: Int] {
        overview.tenants.reduce(into: [:]) { $0[$1.placement, default: 0] += 1 }
    }

    /// Tenant databases per server.
    var databasesByServer: [String: Int] {
        overview.tenants.filter { $0.database != nil && $0.status == "active" }.reduce(into: [:]) { $0[$1.server, default: 0] += 1 }
    }
}

/// Reads the fleet for every console page and live channel, at most once per ``interval``
/// however many browsers watch: concurrent callers share one read in flight, and callers within
/// the interval get the last one. A read costs the catalog ONE query (``Catalog/overview()``) and
/// the unified database one (capture states); servers' connection counts are sampled every
/// ``connectionsInterval`` and tenant names every minute.
actor ConsoleFleetCache {
    let operations: Operations
    let relay: Relay?
    let interval: TimeInterval
    let connectionsInterval: TimeInterval
    private var current: ConsoleFleet?
    private var inFlight: Task<ConsoleFleet, any Error>?
    private var directory: ServerDirectory
    private var connections: [String: Int] = [:]
    private var connectionsAt: Date = .distantPast
    private var names: [String: String] = [:]
    private var namesAt: Date = .distantPast
    private var captureInstalled: Bool?
    private var captureCheckedAt: Date = .distantPast
    /// Per tenant: (time, lag seconds, queue depth) at each read while a page watched, newest last.
    private var history: [String: [(at: Double, lag: Double, queue: Int)]] = [:]
    /// Reads of the catalog so far (one query each), for tests and the benchmark.
    private(set) var catalogQueries = 0
    /// The most samples of history kept per tenant.
    static let historyLimit = 300

    init(operations: Operations, relay: Relay?, interval: TimeInterval = 1, connectionsInterval: TimeInterval = 5) {
        self.operations = operations
        self.relay = relay
        self.interval = interval
        self.connectionsInterval = connectionsInterval
        self.directory = operations.servers
    }

    /// The fleet, read now or at most ``interval`` ago (and not before `after`: a job that ended
    /// since the last read changed what it shows).
    func fleet(after: Date? = nil) async throws -> ConsoleFleet {
        if let current, Date().timeIntervalSince(current.at) < interval, current.at >= after ?? .distantPast { return current }
        if let inFlight { return try await inFlight.value }
        let task = Task { try await self.read() }
        inFlight = task
        defer { inFlight = nil }
        let fleet = try await task.value
        current = fleet
        return fleet
    }

    /// `tenant`'s lag and queue samples, oldest first.
    func history(of tenant: String) -> [(at: Double, lag: Double, queue: Int)] { history[tenant] ?? [] }

    private func read() async throws -> ConsoleFleet {
        let now = Date()
        let logger = operations.logger
        let unifiedURL = try directory.adminURL(server: nil, database: operations.databaseURL.database)
        let capture = Capture(unifiedURL: unifiedURL, discriminator: operations.configuration.naming.discriminator, logger: logger)
        if captureInstalled != true || now.timeIntervalSince(captureCheckedAt) > 30 {
            captureInstalled = (try? await capture.isInstalled()) ?? false
            captureCheckedAt = now
        }
        // The catalog and the unified database answer at the same time.
        async let overviewRead = operations.catalog.overview()
        // The catalog's pool when the catalog lives in the unified database (the default): no new
        // connection per read.
        let shared = operations.catalog.url.map { $0.host == unifiedURL.host && $0.port == unifiedURL.port && $0.database == unifiedURL.database } ?? false
        let client = operations.catalog.client
        async let statesRead = captureInstalled != true ? [] : Self.states(capture, client: shared ? client : nil)
        let overview = try await overviewRead
        catalogQueries += 1
        var states: [String: Capture.State] = [:]
        for state in try await statesRead { states[state.tenant.rawValue] = state }
        if now.timeIntervalSince(connectionsAt) >= connectionsInterval {
            connections = await sampleConnections(overview)
            connectionsAt = now
        }
        if now.timeIntervalSince(namesAt) >= 60 {
            names = await readNames(unifiedURL)
            namesAt = now
        }
        for (tenant, state) in states where state.capturing || state.queueDepth > 0 || history[tenant] != nil {
            var samples = history[tenant] ?? []
            samples.append((now.timeIntervalSince1970, state.lagSeconds, state.queueDepth))
            if samples.count > Self.historyLimit { samples.removeFirst(samples.count - Self.historyLimit) }
            history[tenant] = samples
        }
        return ConsoleFleet(
            overview: overview, capture: states, captureInstalled: captureInstalled == true, relay: relay?.statistics,
            connections: connections, names: names, at: now)
    }

    /// Client connections on each server (the default one and every registered one); a server
    /// that does not answer is left out.
    private func sampleConnections(_ overview: FleetOverview) async -> [String: Int] {
        let known = Set(directory.servers.map(\.name))
        if overview.servers.contains(where: { !known.contains($0.name) && $0.name != ServerDirectory.defaultServerName }),
           let refreshed = try? await operations.refreshed() {
            directory = refreshed.servers
        }
        var result: [String: Int] = [:]
        let names = [ServerDirectory.defaultServerName] + overview.servers.map(\.name).filter { $0 != ServerDirectory.defaultServerName }
        for name in names {
            guard let url = try? directory.adminURL(server: name, database: "postgres") else { continue }
            if let count = try? await Self.clientConnections(url, logger: operations.logger) { result[name] = count }
        }
        return result
    }

    /// Capture states over `client` when given (falling back to a connection of the unified
    /// database's admin login if the catalog's login may not read them), else over a new connection.
    private static func states(_ capture: Capture, client: PostgresClient?) async throws -> [Capture.State] {
        if let client, let states = try? await capture.states(using: client) { return states }
        return try await capture.states()
    }

    private static func clientConnections(_ url: PostgresURL, logger: Logger) async throws -> Int {
        try await Database.withConnection(url, logger: logger) { connection in
            let rows = try await connection.query(
                "SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend'", logger: logger)
            for try await value in rows.decode(Int.self) { return value }
            return 0
        }
    }

    /// `id → name` from the unified database's tenant table, if it has a `name` column.
    private func readNames(_ unifiedURL: PostgresURL) async -> [String: String] {
        guard let table = try? SQLIdentifier.quoted(operations.configuration.naming.tenantTable) else { return [:] }
        return await Self.names(unifiedURL, table: table, logger: operations.logger)
    }

    private static func names(_ unifiedURL: PostgresURL, table: String, logger: Logger) async -> [String: String] {
        (try? await Database.withConnection(unifiedURL, logger: logger) { connection in
            var names: [String: String] = [:]
            let rows = try await connection.query(PostgresQuery(unsafeSQL: "SELECT id::text, name::text FROM \(table) LIMIT 100000"), logger: logger)
            for try await (id, name) in rows.decode((String, String?).self) { names[id] = name }
            return names
        }) ?? [:]
    }
}
