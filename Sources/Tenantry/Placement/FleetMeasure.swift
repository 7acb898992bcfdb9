import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// What every server and its tenant databases weigh now: the input of placement and of the
/// rebalance planner (``RebalancePlanner``).
///
/// Per tenant database (an `active` tenant with a database): its size (`pg_database_size`), its
/// open connections (`pg_stat_database.numbackends`) and its transactions
/// (`xact_commit + xact_rollback`, which counts queries outside explicit transactions one by one).
/// Queries per second are the difference of two samples of that counter taken
/// ``sampleSeconds`` apart (0 when sampled once: the totals since the statistics were last reset
/// stay in ``Tenant/transactions``). Per server: its connection cap (the catalog's
/// `max_connections`; the default server's is the pool's per-server cap) and its byte budget
/// (`max_bytes`, none for the default server).
public struct FleetMeasure: Sendable, Codable, Equatable {
    /// A server's capacity and totals.
    public struct Server: Sendable, Codable, Equatable {
        /// Its name (`default` for the catalog's own server).
        public var name: String
        /// Host.
        public var host: String
        /// Port.
        public var port: Int
        /// Connection cap.
        public var maxConnections: Int
        /// Byte budget (`nil`: none).
        public var maxBytes: Int64?
        /// Whether placement and rebalance put tenants on it (the default server does not once
        /// servers are registered).
        public var acceptsTenants: Bool
        /// Tenant databases on it.
        public var tenants: Int
        /// Their bytes.
        public var bytes: Int64
        /// Their open connections.
        public var connections: Int
        /// Their transactions per second.
        public var queriesPerSecond: Double
    }

    /// One tenant database's figures.
    public struct Tenant: Sendable, Codable, Equatable {
        /// The tenant.
        public var id: TenantID
        /// Its server.
        public var server: String
        /// Its database.
        public var database: String
        /// `pg_database_size`.
        public var bytes: Int64
        /// `numbackends`.
        public var connections: Int
        /// `xact_commit + xact_rollback` at the last sample.
        public var transactions: Int64
        /// Transactions per second between the two samples (0 with one sample).
        public var queriesPerSecond: Double
        /// Why it cannot move between servers now (`nil`: it can).
        public var pinned: String?
    }

    /// Every server, by name (the default server first).
    public var servers: [Server]
    /// Every measured tenant database, by tenant.
    public var tenants: [Tenant]
    /// Seconds between the two samples (0: one sample).
    public var sampleSeconds: Double

    /// The planner's view, with `draining` servers marked.
    public func planner(draining: Set<String> = []) -> (servers: [RebalancePlanner.Server], tenants: [RebalancePlanner.Tenant]) {
        let servers = servers.map {
            RebalancePlanner.Server(
                name: $0.name, maxConnections: $0.maxConnections, maxBytes: $0.maxBytes, draining: draining.contains($0.name),
                acceptsTenants: $0.acceptsTenants)
        }
        let tenants = tenants.map {
            RebalancePlanner.Tenant(
                id: $0.id, server: $0.server, bytes: $0.bytes, connections: $0.connections, queriesPerSecond: $0.queriesPerSecond,
                pinned: $0.pinned)
        }
        return (servers, tenants)
    }
}

extension FleetMeasure {
    /// One sample of one server's tenant databases, by database name.
    struct Sample: Sendable {
        var bytes: Int64
        var connections: Int
        var transactions: Int64
    }

    /// Samples the tenant databases `databases` on `server` (`default` or a registered name); a
    /// server that cannot be reached is one clear error naming it (never its URL or password).
    static func sample(
        server: String, databases: [String], directory: ServerDirectory, logger: Logger
    ) async throws -> [String: Sample] {
        let isDefault = server == ServerDirectory.defaultServerName
        let url = try directory.adminURL(
            server: isDefault ? nil : server, database: isDefault ? directory.databaseURL.database : "postgres")
        do {
            return try await Database.withConnection(url, logger: logger) { connection in
                var result: [String: Sample] = [:]
                guard !databases.isEmpty else { return result }
                let rows = try await connection.query("""
                    SELECT d.datname::text, pg_database_size(d.oid), coalesce(s.numbackends, 0)::int,
                           coalesce(s.xact_commit + s.xact_rollback, 0)::bigint
                    FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
                    WHERE d.datname = ANY(\(databases))
                    """, logger: logger)
                for try await (name, bytes, connections, transactions) in rows.decode((String, Int64, Int, Int64).self) {
                    result[name] = Sample(bytes: bytes, connections: connections, transactions: transactions)
                }
                return result
            }
        } catch let error as TenantryError {
            throw TenantryError(
                code: error.code == .connectionFailed ? .connectionFailed : .database,
                message: "cannot measure server '\(server)' (\(url.host):\(url.port)): \(error.message)", underlying: error)
        } catch {
            let described = Database.describe(error, connectingTo: url)
            throw TenantryError(
                code: .database, message: "cannot measure server '\(server)' (\(url.host):\(url.port)): \(described.message)",
                underlying: error)
        }
    }
}
