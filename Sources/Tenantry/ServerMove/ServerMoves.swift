import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// Moves a dedicated tenant's database from one server to another, online (`tenantry move …`,
/// modelled on Vitess MoveTables): ``start(_:to:reason:progress:)`` provisions and copies the
/// target and keeps it current, ``switchTraffic(_:maxPause:)`` moves the writes under a short
/// fence, ``reverse(_:maxPause:)`` moves them back, ``complete(_:archiveDirectory:)`` drops the
/// source, ``cancel(_:)`` drops the target before a switch.
///
/// The change chain (docs/server-moves.md): each database's `tenantry.changes` has exactly one
/// consumer, named by `capture_state.forward_to` in that database. While a tenant moves, the
/// database that takes its writes (the *live* one) forwards to the other (the *follower*), and the
/// follower forwards to unified: `live → follower → unified`. A switch turns the first link
/// around; complete and cancel hand the follower's queue to the front of the live one's.
public struct ServerMoves: Sendable {
    /// What ``start(_:to:reason:progress:)`` did.
    public struct StartReport: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// The server it leaves.
        public var sourceServer: String
        /// The server it moves to.
        public var targetServer: String
        /// Its database there.
        public var targetDatabase: String
        /// Rows copied.
        public var rowsCopied: Int
        /// How long the copy took.
        public var copySeconds: Double
        /// `true` when the move was already past its copy (nothing done again).
        public var alreadyStarted: Bool
    }

    /// One move's state (`tenantry move status`).
    public struct Status: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// The move's phase.
        public var phase: ServerMoveRecord.Phase
        /// The server it leaves, and its database there.
        public var sourceServer: String
        /// The source database.
        public var sourceDatabase: String
        /// The server it moves to.
        public var targetServer: String
        /// The target database.
        public var targetDatabase: String
        /// The server that takes the tenant's writes now.
        public var liveServer: String
        /// Rows the copy wrote.
        public var rowsCopied: Int64
        /// Changes waiting in the live database for the follower (nil when it cannot be reached).
        public var queueDepth: Int?
        /// Age of the oldest of them, in seconds (0 when none).
        public var lagSeconds: Double?
        /// Changes waiting in the follower for unified (nil when it cannot be reached).
        public var unifiedQueueDepth: Int?
        /// Dead letters in either database.
        public var deadLetters: Int?
        /// The last switch's or reverse's write pause.
        public var lastPauseMilliseconds: Double?
        /// Switches and reverses so far.
        public var switches: Int
        /// Why the move was started.
        public var reason: String?
        /// The last error.
        public var lastError: String?
        /// When it started.
        public var startedAt: Date
    }

    /// What a switch or reverse did.
    public struct SwitchReport: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// The server that took the writes before.
        public var from: String
        /// The server that takes them now.
        public var to: String
        /// How long the tenant's writes were paused, in milliseconds.
        public var pauseMilliseconds: Double
        /// Changes drained during the pause.
        public var drained: Int
    }

    /// What complete or cancel did.
    public struct EndReport: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// `complete` or `cancelled`.
        public var phase: ServerMoveRecord.Phase
        /// The server that keeps the tenant.
        public var server: String
        /// The server whose database and role were dropped.
        public var droppedServer: String
        /// The dropped database.
        public var droppedDatabase: String
        /// The archive written first (`--archive-dir`), if any.
        public var archive: String?
        /// Changes handed over from the dropped database's queue.
        public var handedOver: Int
    }

    /// Faults a test injects at the points where a killed mover would stop: each hook runs there and may throw.
    struct Faults: Sendable {
        /// Start: the source's stream has stopped; nothing copied yet.
        var afterStreamStopped: (@Sendable () async throws -> Void)?
        /// Switch or reverse: the live database's COMMIT decided; the follower and catalog not yet changed.
        var afterDecisiveCommit: (@Sendable () async throws -> Void)?
        /// Complete or cancel: the link has stopped; the follower still forwards to unified.
        var afterLinkStopped: (@Sendable () async throws -> Void)?
        /// Complete or cancel: the follower's stream has stopped; its queue not handed over yet.
        var afterFollowerStopped: (@Sendable () async throws -> Void)?
    }

    var faults = Faults()
    let operations: Operations
    let unifiedURL: PostgresURL
    let plan: MovePlan
    let relay: Relay
    let logger: Logger

    /// Creates the server-move operations over `relay` (which runs the move's streams when asked
    /// to drain; a relay service running elsewhere runs them in the background).
    public init(operations: Operations, unifiedURL: PostgresURL, plan: MovePlan, relay: Relay) {
        self.operations = operations
        self.unifiedURL = unifiedURL
        self.plan = plan
        self.relay = relay
        self.logger = operations.logger
    }

    var catalog: Catalog { operations.catalog }
    var servers: ServerDirectory { operations.servers }

    /// Runs one move command for `tenant` while holding its server-move lock in the catalog
    /// database (a session lock on a connection of its own): a second command for the same tenant
    /// (another process, a retried API request) fails at once with one clear error instead of
    /// racing this one.
    func exclusively<Result: Sendable>(_ tenant: TenantID, _ what: String, _ body: () async throws -> Result) async throws -> Result {
        try await catalog.exclusively(tenant, what, body)
    }
}
