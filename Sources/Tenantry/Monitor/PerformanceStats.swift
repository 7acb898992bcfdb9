/// A summary of recorded queries, for all tenants or one: the seed's `PerformanceStats`.
///
/// Counts and percentiles are cumulative since the monitor started or was last reset (they come
/// from the histograms, which retention does not bound); `queriesPerSecond` is measured over the
/// retained raw samples. Latencies are milliseconds.
public struct PerformanceStats: Sendable, Codable, Equatable {
    /// The tenant summarised, or `nil` for all tenants.
    public var tenant: String?
    /// Queries recorded.
    public var totalQueries: Int
    /// Queries that failed.
    public var errors: Int
    /// Mean latency, exact.
    public var avgLatencyMs: Double
    /// Median latency.
    public var p50LatencyMs: Double
    /// 95th percentile latency.
    public var p95LatencyMs: Double
    /// 99th percentile latency.
    public var p99LatencyMs: Double
    /// Failed fraction of `totalQueries`, 0…1.
    public var errorRate: Double
    /// Rate over the retained samples: (n − 1) / (newest − oldest timestamp); 0 with fewer than
    /// two samples or no time between them.
    public var queriesPerSecond: Double
    /// Queries slower than the slow-query threshold.
    public var slowQueries: Int
    /// Per table (queries whose table is known).
    public var byTable: [String: Breakdown]
    /// Per ``QueryKind`` (`select`, `insert`, `update`, `delete`, `other`).
    public var byKind: [String: Breakdown]
    /// Per ``QuerySource`` (`unified`, `tenant`).
    public var bySource: [String: Breakdown]

    /// Counts and latencies of one slice of the queries (a table, a kind, a source).
    public struct Breakdown: Sendable, Codable, Equatable {
        /// Queries recorded.
        public var count: Int
        /// Queries that failed.
        public var errors: Int
        /// Mean latency in milliseconds, exact.
        public var avgMs: Double
        /// Median latency in milliseconds.
        public var p50Ms: Double
        /// 95th percentile latency in milliseconds.
        public var p95Ms: Double
        /// 99th percentile latency in milliseconds.
        public var p99Ms: Double
        /// Failed fraction, 0…1.
        public var errorRate: Double
        /// Queries slower than the slow-query threshold.
        public var slowQueries: Int

        /// A breakdown with every field given.
        public init(
            count: Int, errors: Int, avgMs: Double, p50Ms: Double, p95Ms: Double, p99Ms: Double,
            errorRate: Double, slowQueries: Int
        ) {
            self.count = count
            self.errors = errors
            self.avgMs = avgMs
            self.p50Ms = p50Ms
            self.p95Ms = p95Ms
            self.p99Ms = p99Ms
            self.errorRate = errorRate
            self.slowQueries = slowQueries
        }

        /// No queries.
        public static let empty = Breakdown(
            count: 0, errors: 0, avgMs: 0, p50Ms: 0, p95Ms: 0, p99Ms: 0, errorRate: 0, slowQueries: 0)
    }
}

extension PerformanceStats.Breakdown {
    init(_ series: LatencySeries) {
        let values = series.values(atPercentiles: [50, 95, 99]).map { Double($0) / 1000 }
        self.init(
            count: series.count, errors: series.errors, avgMs: series.meanMicroseconds / 1000,
            p50Ms: values[0], p95Ms: values[1], p99Ms: values[2], errorRate: series.errorRate,
            slowQueries: series.slow)
    }
}
