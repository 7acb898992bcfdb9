import Foundation
import TenantryCore

/// Plans which tenant databases to move between servers (`tenantry rebalance`, `servers drain`):
/// pure, from measured figures (``FleetMeasure``), deterministic (ties go to the lower tenant id,
/// then the lower server name).
///
/// In order:
/// 1. Every tenant on a **draining** server moves to the server with the most room that fits it
///    (largest tenants first).
/// 2. A server **over its byte budget or connection cap** sheds tenants (the smallest one whose
///    departure brings it under, else the largest) to servers that stay within theirs.
/// 3. **Evening**: while the fill of the fullest and the emptiest member differ by more than
///    ``Options/evenTolerance``, the move that most reduces the weighted variance of the fills is
///    made if it lowers that variance by at least ``Options/minimumGain`` of it. A move must
///    narrow the gap between its own two servers' fills, and one that overshoots (its source ends
///    emptier than its target) must at least halve it: otherwise it only swaps which one is full.
///
/// A server's *fill* is its bytes ÷ its byte budget when every member has a budget, else its share
/// of the members' bytes. Members are the servers that accept tenants and are not draining; the
/// others are never targets and are not evened. A tenant moves at most once; at most
/// ``Options/maxMoves`` evening moves are planned (draining and relief are not bounded: they are
/// required). What cannot be fixed is listed in ``Plan/unresolved``.
public struct RebalancePlanner: Sendable {
    /// A server as the planner sees it.
    public struct Server: Sendable, Codable, Equatable {
        /// Its name.
        public var name: String
        /// Its connection cap.
        public var maxConnections: Int
        /// Its byte budget (`nil`: none).
        public var maxBytes: Int64?
        /// Every tenant must leave it.
        public var draining: Bool
        /// It may receive tenants and is evened (false for the default server once servers are
        /// registered: placement does not use it either).
        public var acceptsTenants: Bool

        /// Creates a server.
        public init(name: String, maxConnections: Int, maxBytes: Int64? = nil, draining: Bool = false, acceptsTenants: Bool = true) {
            self.name = name
            self.maxConnections = maxConnections
            self.maxBytes = maxBytes
            self.draining = draining
            self.acceptsTenants = acceptsTenants
        }
    }

    /// A tenant database as the planner sees it.
    public struct Tenant: Sendable, Codable, Equatable {
        /// The tenant.
        public var id: TenantID
        /// The server hosting its database.
        public var server: String
        /// `pg_database_size`.
        public var bytes: Int64
        /// Open connections (`numbackends`).
        public var connections: Int
        /// Transactions per second (`xact_commit + xact_rollback`).
        public var queriesPerSecond: Double
        /// Why it cannot move now (`nil`: it can).
        public var pinned: String?

        /// Creates a tenant.
        public init(id: TenantID, server: String, bytes: Int64, connections: Int = 0, queriesPerSecond: Double = 0, pinned: String? = nil) {
            self.id = id
            self.server = server
            self.bytes = bytes
            self.connections = connections
            self.queriesPerSecond = queriesPerSecond
            self.pinned = pinned
        }
    }

    /// Tuning.
    public struct Options: Sendable, Codable, Equatable {
        /// Evening stops when the fullest and the emptiest member's fills differ by at most this
        /// (default 0.10: ten percentage points).
        public var evenTolerance: Double
        /// An evening move must lower the imbalance (the weighted variance of the fills) by at
        /// least this share of it (default 0.001).
        public var minimumGain: Double
        /// The most evening moves one plan holds (default 20; 0: no evening).
        public var maxMoves: Int
        /// Whether servers over a budget or cap shed tenants (default true).
        public var relieve: Bool

        /// Creates options.
        public init(evenTolerance: Double = 0.10, minimumGain: Double = 0.001, maxMoves: Int = 20, relieve: Bool = true) {
            self.evenTolerance = evenTolerance
            self.minimumGain = minimumGain
            self.maxMoves = maxMoves
            self.relieve = relieve
        }

        /// A drain: only the draining servers' tenants move (no relief, no evening).
        public static let drainOnly = Options(maxMoves: 0, relieve: false)
    }

    /// One planned move.
    public struct Move: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// The server it leaves.
        public var from: String
        /// The server it goes to.
        public var to: String
        /// Its size.
        public var bytes: Int64
        /// Why (`server a is over its byte budget (12.1 GB of 10 GB)`).
        public var reason: String
    }

    /// A server's totals.
    public struct Load: Sendable, Codable, Equatable {
        /// Tenant databases on it.
        public var tenants: Int = 0
        /// Their bytes.
        public var bytes: Int64 = 0
        /// Their open connections.
        public var connections: Int = 0
        /// Their transactions per second.
        public var queriesPerSecond: Double = 0
        /// Its fill (see ``RebalancePlanner``), `nil` when it is not a member.
        public var fill: Double?
    }

    /// A server before and after the plan.
    public struct ServerFigures: Sendable, Codable, Equatable {
        /// The server.
        public var server: Server
        /// Before the moves.
        public var before: Load
        /// After them.
        public var after: Load
    }

    /// The plan.
    public struct Plan: Sendable, Codable, Equatable {
        /// The moves, in the order to run them.
        public var moves: [Move]
        /// Every server, by name.
        public var servers: [ServerFigures]
        /// What the moves cannot fix (a draining server's tenant with nowhere to go, a server that
        /// stays over budget); empty when the plan reaches every goal.
        public var unresolved: [String]
        /// Whether fills are shares of byte budgets (`true`) or of the members' bytes.
        public var fillIsOfBudget: Bool
    }

    /// The tuning.
    public var options: Options

    /// Creates a planner.
    public init(options: Options = Options()) {
        self.options = options
    }

    /// The plan for `tenants` on `servers` (a tenant on a server not in `servers` is ignored).
    public func plan(servers: [Server], tenants: [Tenant]) -> Plan {
        var state = State(servers: servers.sorted { $0.name < $1.name }, tenants: tenants.sorted { $0.id < $1.id })
        let before = state.figures()
        state.drain()
        if options.relieve { state.relieve() }
        state.even(options)
        let after = state.figures()
        let figures = state.servers.map { ServerFigures(server: $0, before: before[$0.name] ?? Load(), after: after[$0.name] ?? Load()) }
        return Plan(moves: state.moves, servers: figures, unresolved: state.unresolved, fillIsOfBudget: state.fillIsOfBudget)
    }
}
