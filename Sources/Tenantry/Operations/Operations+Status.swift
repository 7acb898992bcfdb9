import Foundation
import TenantryCore

extension Operations {
    /// The catalog at a glance plus each captured tenant's capture state (`status --json`: the
    /// summary's fields at the top level, `capture`, null when capture is not installed,
    /// `byServer` and `serverMoves`).
    public struct StatusReport: Sendable, Codable, Equatable {
        /// Tenants by status, placement and phase; servers; the read policy.
        public var summary: CatalogSummary
        /// Per captured tenant: capture, sync, queue depth, lag, dead letters (`nil`: not installed).
        public var capture: [Capture.State]?
        /// Tenant databases per server (`default`: the unified database's server).
        public var byServer: [String: Int]
        /// The active server moves (`tenantry move status` has their queues and lag).
        public var serverMoves: [ServerMoveSummary]

        /// A report.
        public init(
            summary: CatalogSummary, capture: [Capture.State]?, byServer: [String: Int] = [:], serverMoves: [ServerMoveSummary] = []
        ) {
            self.summary = summary
            self.capture = capture
            self.byServer = byServer
            self.serverMoves = serverMoves
        }

        enum Keys: String, CodingKey { case capture, byServer, serverMoves }

        public init(from decoder: any Decoder) throws {
            summary = try CatalogSummary(from: decoder)
            let container = try decoder.container(keyedBy: Keys.self)
            capture = try container.decodeIfPresent([Capture.State].self, forKey: .capture)
            byServer = try container.decodeIfPresent([String: Int].self, forKey: .byServer) ?? [:]
            serverMoves = try container.decodeIfPresent([ServerMoveSummary].self, forKey: .serverMoves) ?? []
        }

        public func encode(to encoder: any Encoder) throws {
            try summary.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(capture, forKey: .capture)
            try container.encode(byServer, forKey: .byServer)
            try container.encode(serverMoves, forKey: .serverMoves)
        }
    }

    /// An active server move at a glance: where the tenant leaves from, where it goes, and which
    /// of the two takes its writes now.
    public struct ServerMoveSummary: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// The move's phase.
        public var phase: ServerMoveRecord.Phase
        /// The server it leaves.
        public var sourceServer: String
        /// The server it moves to.
        public var targetServer: String
        /// The server that takes its writes now.
        public var liveServer: String

        /// The summary of `record`.
        public init(_ record: ServerMoveRecord) {
            tenant = record.tenant
            phase = record.phase
            sourceServer = record.sourceServer
            targetServer = record.targetServer
            liveServer = record.liveServer
        }
    }

    /// A tenant as `tenantry tenants --json` lists it: the catalog record's fields (`serverName`
    /// absent on the default server), `server` (always a name, `default` included) and, during a
    /// server move, `serverMove`.
    public struct TenantListing: Sendable, Codable, Equatable {
        /// The catalog record.
        public var record: TenantRecord
        /// The server of its database (`default`: the unified database's server).
        public var server: String
        /// Its active server move, if any.
        public var serverMove: ServerMoveSummary?

        enum Keys: String, CodingKey { case server, serverMove }

        /// A listing.
        public init(record: TenantRecord, serverMove: ServerMoveSummary?) {
            self.record = record
            self.server = record.serverName ?? ServerDirectory.defaultServerName
            self.serverMove = serverMove
        }

        public init(from decoder: any Decoder) throws {
            record = try TenantRecord(from: decoder)
            let container = try decoder.container(keyedBy: Keys.self)
            server = try container.decode(String.self, forKey: .server)
            serverMove = try container.decodeIfPresent(ServerMoveSummary.self, forKey: .serverMove)
        }

        public func encode(to encoder: any Encoder) throws {
            try record.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(server, forKey: .server)
            try container.encodeIfPresent(serverMove, forKey: .serverMove)
        }
    }

    /// The migration status (the seeds' status overview; `tenantry status`).
    public func status() async throws -> StatusReport {
        let summary = try await catalog.summary()
        let unifiedURL = try servers.adminURL(server: nil, database: databaseURL.database)
        let capture = Capture(unifiedURL: unifiedURL, discriminator: configuration.naming.discriminator, logger: logger)
        let states = try await capture.isInstalled() ? try await capture.states() : nil
        var byServer: [String: Int] = [:]
        for tenant in try await catalog.tenants() where Self.hasDatabase(tenant) {
            byServer[tenant.serverName ?? ServerDirectory.defaultServerName, default: 0] += 1
        }
        let moves = try await catalog.activeServerMoves().map(ServerMoveSummary.init)
        return StatusReport(summary: summary, capture: states, byServer: byServer, serverMoves: moves)
    }

    /// The tenants whose database is on `server` (`default`: the unified database's server), for
    /// `tenantry move start --all-from`.
    public func tenants(onServer server: String) async throws -> [TenantID] {
        try await catalog.tenants()
            .filter { Self.hasDatabase($0) && ($0.serverName ?? ServerDirectory.defaultServerName) == server }
            .map(\.id)
    }

    /// Whether `tenant` has a database (provisioned and active).
    static func hasDatabase(_ tenant: TenantRecord) -> Bool { tenant.databaseName != nil && tenant.status == .active }

    /// Every tenant with its server and active server move (`tenantry tenants --json`).
    public func tenantListing() async throws -> [TenantListing] {
        let moves = Dictionary(try await catalog.activeServerMoves().map { ($0.tenant, $0) }) { _, last in last }
        return try await catalog.tenants().map { TenantListing(record: $0, serverMove: moves[$0.id].map(ServerMoveSummary.init)) }
    }
}
