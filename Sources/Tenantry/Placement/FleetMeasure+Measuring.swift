import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension FleetMeasure {
    /// Measures every server in `directory` (the default one too) and every `active` tenant
    /// database the catalog places on them.
    ///
    /// - Parameters:
    ///   - sample: the interval between the two samples of the transaction counters (zero: one
    ///     sample, queries per second 0).
    ///   - defaultMaxConnections: the default server's connection cap (the pool's per-server cap).
    ///   - skipUnreachable: leave out a server that cannot be reached (placement) instead of
    ///     failing (rebalance, drain: a plan must see the whole fleet).
    public static func measure(
        catalog: Catalog, directory: ServerDirectory, defaultMaxConnections: Int, sample: Duration = .seconds(1),
        skipUnreachable: Bool = false, logger: Logger
    ) async throws -> FleetMeasure {
        let defaultName = ServerDirectory.defaultServerName
        let records = try await catalog.tenants().filter { $0.status == .active && $0.databaseName != nil }
        // Each tenant's shared → dedicated phase, in one query per phase (not one per tenant).
        var phases: [TenantID: MovePhase] = [:]
        for phase in MovePhase.all where phase != .shared {
            for id in try await catalog.tenants(inPhases: [phase]) { phases[id] = phase }
        }
        let moving = Dictionary(try await catalog.activeServerMoves().map { ($0.tenant, $0) }, uniquingKeysWith: { a, _ in a })
        var byServer: [String: [TenantRecord]] = [:]
        for record in records { byServer[record.serverName ?? defaultName, default: []].append(record) }

        let registered = directory.servers.sorted { $0.name < $1.name }
        // Caps and budgets as the catalog has them now (a long-lived directory may predate a
        // `servers set`); the directory gives the logins.
        let current = Dictionary(try await catalog.servers().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var servers = [Server(
            name: defaultName, host: directory.databaseURL.host, port: directory.databaseURL.port,
            maxConnections: defaultMaxConnections, maxBytes: nil, acceptsTenants: registered.isEmpty, tenants: 0, bytes: 0,
            connections: 0, queriesPerSecond: 0)]
        for record in registered {
            let limits = current[record.name] ?? record
            servers.append(Server(
                name: record.name, host: record.host, port: record.port, maxConnections: limits.maxConnections,
                maxBytes: limits.maxBytes, acceptsTenants: true, tenants: 0, bytes: 0, connections: 0, queriesPerSecond: 0))
        }

        let seconds = Double(sample.components.seconds) + Double(sample.components.attoseconds) / 1e18
        var first: [String: [String: Sample]] = [:]
        var unreachable: Set<String> = []
        for server in servers {
            let databases = (byServer[server.name] ?? []).compactMap(\.databaseName)
            do {
                first[server.name] = try await Self.sample(server: server.name, databases: databases, directory: directory, logger: logger)
            } catch let error where skipUnreachable {
                logger.warning("placement skips a server it cannot measure", metadata: ["server.name": "\(server.name)", "error": "\(error)"])
                unreachable.insert(server.name)
            }
        }
        var second = first
        if seconds > 0 {
            try await Task.sleep(for: sample)
            for server in servers where !unreachable.contains(server.name) {
                let databases = (byServer[server.name] ?? []).compactMap(\.databaseName)
                guard !databases.isEmpty else { continue }
                if let again = try? await Self.sample(server: server.name, databases: databases, directory: directory, logger: logger) {
                    second[server.name] = again
                }
            }
        }

        var tenants: [Tenant] = []
        for index in servers.indices {
            let name = servers[index].name
            guard !unreachable.contains(name) else { continue }
            for record in (byServer[name] ?? []).sorted(by: { $0.id < $1.id }) {
                guard let database = record.databaseName, let now = second[name]?[database] else { continue }
                let before = first[name]?[database] ?? now
                let rate = seconds > 0 ? Double(max(now.transactions - before.transactions, 0)) / seconds : 0
                var pinned: String?
                let phase = phases[record.id] ?? .shared
                if let move = moving[record.id] {
                    pinned = "a server move to \(move.targetServer) is \(move.phase.rawValue)"
                } else if phase < .dedicated {
                    pinned = "it is on the shared → dedicated path (phase \(phase)): only a dedicated tenant moves between servers"
                }
                tenants.append(Tenant(
                    id: record.id, server: name, database: database, bytes: now.bytes, connections: now.connections,
                    transactions: now.transactions, queriesPerSecond: rate, pinned: pinned))
                servers[index].tenants += 1
                servers[index].bytes += now.bytes
                servers[index].connections += now.connections
                servers[index].queriesPerSecond += rate
            }
        }
        servers.removeAll { unreachable.contains($0.name) }
        return FleetMeasure(servers: servers, tenants: tenants, sampleSeconds: seconds)
    }
}
