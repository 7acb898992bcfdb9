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
    /// Whether connections were sampled yet (the first sample runs in the background).
    var connectionsSampled: Bool
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
    private var inFlight: (task: Task<ConsoleFleet, any Error>, started: Date)?
    private var failure: (at: Date, error: any Error)?
    private var sampling = false
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
    /// since the last read changed what it shows). A failed read is not retried within
    /// ``interval`` either: while the catalog is down, every caller gets its error, and the
    /// catalog still sees at most one attempt a second.
    func fleet(after: Date? = nil) async throws -> ConsoleFleet {
        let after = after ?? .distantPast
        while true {
            let now = Date()
            if let current, now.timeIntervalSince(current.at) < interval, current.at >= after { return current }
            if let failure, now.timeIntervalSince(failure.at) < interval, failure.at >= after { throw failure.error }
            if let inFlight {
                // A read that began before `after` cannot show what changed since: wait, then read anew.
                let result = await inFlight.task.result
                if inFlight.started >= after { return try result.get() }
                continue
            }
            let task = Task { try await self.read() }
            inFlight = (task, now)
            defer { inFlight = nil }
            do {
                let fleet = try await task.value
                current = fleet
                failure = nil
                return fleet
            } catch {
                failure = (now, error)
                throw error
            }
        }
    }

    /// `tenant`'s lag and queue samples, oldest first.
    func history(of tenant: String) -> [(at: Double, lag: Double, queue: Int)] { history[tenant] ?? [] }

    private func read() async throws -> ConsoleFleet {
        let now = Date()
        let logger = operations.logger
        let unifiedURL = try directory.adminURL(server: nil, database: operations.databaseURL.database)
        let capture = Capture(unifiedURL: unifiedURL, discriminator: operations.configuration.naming.discriminator, logger: logger)
        if captureInstalled == nil {  // once; then refreshed in the background with the rest
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
        // Connection counts, names and whether capture is installed come from other servers and
        // databases, any of which may be slow or unreachable: sampled in the background, never
        // waited for by a read (which shows the last sample).
        if !sampling, now.timeIntervalSince(connectionsAt) >= connectionsInterval || now.timeIntervalSince(namesAt) >= 60
            || now.timeIntervalSince(captureCheckedAt) > 30 {
            sampling = true
            Task { await self.sample(overview, unifiedURL: unifiedURL, capture: capture) }
        }
        for (tenant, state) in states where state.capturing || state.queueDepth > 0 || history[tenant] != nil {
            var samples = history[tenant] ?? []
            samples.append((now.timeIntervalSince1970, state.lagSeconds, state.queueDepth))
            if samples.count > Self.historyLimit { samples.removeFirst(samples.count - Self.historyLimit) }
            history[tenant] = samples
        }
        return ConsoleFleet(
            overview: overview, capture: states, captureInstalled: captureInstalled == true, relay: relay?.statistics,
            connections: connections, connectionsSampled: connectionsAt != .distantPast, names: names, at: now)
    }

    /// The background samples that are due; each timestamp is set when its sample is taken.
    private func sample(_ overview: FleetOverview, unifiedURL: PostgresURL, capture: Capture) async {
        defer { sampling = false }
        if Date().timeIntervalSince(captureCheckedAt) > 30 {
            if let installed = try? await capture.isInstalled() { captureInstalled = installed }
            captureCheckedAt = Date()
        }
        if Date().timeIntervalSince(connectionsAt) >= connectionsInterval {
            connections = await sampleConnections(overview)
            connectionsAt = Date()
        }
        if Date().timeIntervalSince(namesAt) >= 60 {
            names = await readNames(unifiedURL)
            namesAt = Date()
        }
    }

    /// Client connections on each server (the default one and every registered one), all at
    /// once; a server that does not answer is left out.
    private func sampleConnections(_ overview: FleetOverview) async -> [String: Int] {
        let known = Set(directory.servers.map(\.name))
        if overview.servers.contains(where: { !known.contains($0.name) && $0.name != ServerDirectory.defaultServerName }),
           let refreshed = try? await operations.refreshed() {
            directory = refreshed.servers
        }
        let names = [ServerDirectory.defaultServerName] + overview.servers.map(\.name).filter { $0 != ServerDirectory.defaultServerName }
        let targets = names.compactMap { name in (try? directory.adminURL(server: name, database: "postgres")).map { (name, $0) } }
        let logger = operations.logger
        return await withTaskGroup(of: (String, Int?).self) { group in
            for (name, url) in targets {
                group.addTask { (name, try? await Self.clientConnections(url, logger: logger)) }
            }
            var result: [String: Int] = [:]
            for await (name, count) in group { if let count { result[name] = count } }
            return result
        }
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
