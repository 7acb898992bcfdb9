import TenantryCore

extension Relay {
    /// Relay settings.
    public struct Configuration: Sendable {
        /// Changes read and applied per tenant-side transaction.
        public var batchSize = 1_000
        /// Waits before each retry of a failing change; after the last, it becomes a dead letter.
        public var retryDelays: [Duration] = [.seconds(1), .seconds(2), .seconds(4)]
        /// How often an idle relay looks for new changes.
        public var pollInterval: Duration = .milliseconds(50)
        /// The longest wait between reconnect attempts.
        public var maxBackoff: Duration = .seconds(5)
        /// Tenants drained at once.
        public var concurrency = 8
        /// Tenant-database connections kept open between batches (the cap of the relay's pool of
        /// each tenant server, plus two per concurrent tenant; the least recently used idle one is
        /// closed first).
        public var cachedConnections = 32
        /// The longest one batch may take (read, apply, record); past it, its connections are
        /// abandoned and the batch is retried like a connection failure.
        public var batchTimeout: Duration = .seconds(60)
        /// How often a dedicated tenant's id blocks are checked, and extended when a quarter or
        /// less of a block is left.
        public var idBlockCheckInterval: Duration = .seconds(5)
        /// Creates the defaults.
        public init() {}
    }

    /// Counters since the relay started.
    public struct Statistics: Sendable, Codable, Equatable {
        /// Changes applied to tenant databases.
        public var applied = 0
        /// Changes skipped because the copy snapshot had them.
        public var skipped = 0
        /// Failed applies that will be retried.
        public var retried = 0
        /// Changes moved to the dead letter queue.
        public var deadLettered = 0
        /// Connection failures (retried with backoff).
        public var connectionFailures = 0
        /// Applied changes per table.
        public var appliedPerTable: [String: Int] = [:]
        /// Failed applies per table (retried or dead-lettered).
        public var failedPerTable: [String: Int] = [:]
        /// Dead letters per table.
        public var deadLetteredPerTable: [String: Int] = [:]
    }

    /// The swift-metrics names the relay reports under (dimension `table`).
    public enum MetricName {
        /// Changes applied to tenant databases.
        public static let applied = "tenantry_relay_applied_total"
        /// Failed applies (each retry counts).
        public static let failed = "tenantry_relay_failed_total"
        /// Changes moved to the dead letter queue.
        public static let deadLettered = "tenantry_relay_dead_letters_total"
        /// Connection failures, retried with backoff.
        public static let connectionFailures = "tenantry_relay_connection_failures_total"
        /// Seconds between a change's capture and its apply (dimension `tenant` omitted: unbounded).
        public static let lag = "tenantry_relay_lag_seconds"
    }

    /// What one pass over a tenant's stream found.
    public enum StepOutcome: Sendable, Equatable {
        /// Nothing waits.
        case idle
        /// `count` changes applied (or skipped); more may wait.
        case applied(Int)
        /// Another relay is applying this tenant's changes.
        case busy
        /// A failing change waits for its retry time.
        case waiting
        /// The stream is paused (a dead letter, or `dual-write disable`).
        case paused
        /// The tenant has no copy snapshot yet (not copied).
        case notReady
        /// A connection failed; retried after a backoff.
        case unreachable(String)
    }

    /// What ``catchUp(_:timeout:)`` found.
    public struct CatchUpReport: Sendable, Codable, Equatable {
        /// Changes applied during the call.
        public var applied: Int
        /// Tenants whose stream is paused (dead letters or `dual-write disable`), with why.
        public var paused: [String: String]
        /// Tenants drained.
        public var tenants: [TenantID]
        /// The paused tenants that hold dead letters (either direction): `sync run --until-caught-up`
        /// exits 1 for them.
        public var deadLettered: [TenantID] = []
    }
}
