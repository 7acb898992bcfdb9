import Metrics
import NIOConcurrencyHelpers

extension PerformanceMonitor {
    /// The swift-metrics names the monitor emits.
    public enum MetricName: Sendable {
        /// `Timer` of query durations, labels `source`, `kind` (and `tenant` when
        /// ``Configuration/labelTenants``). Prometheus renders it as a histogram in seconds.
        public static let queryDuration = "tenantry_query_duration_seconds"
        /// `Counter` of queries, labels `source`, `kind`, `outcome` (`ok` or `error`), and
        /// `tenant` when ``Configuration/labelTenants``.
        public static let queries = "tenantry_queries_total"
        /// `Counter` of queries slower than ``Configuration/slowQueryThreshold``; no labels.
        public static let slowQueries = "tenantry_slow_queries_total"
    }
}

/// The swift-metrics instruments of one monitor, made once and reused: making a metric goes
/// through the factory (and a Prometheus registry's lock), too slow for every query.
final class Instruments: Sendable {
    /// The instruments of one label set.
    struct Query: Sendable {
        let duration: Timer
        let succeeded: Counter
        let failed: Counter
    }

    struct Key: Hashable, Sendable {
        var tenant: String?
        var source: QuerySource
        var kind: QueryKind
    }

    private let factory: any MetricsFactory
    private let labelTenants: Bool
    private let slow: Counter
    /// Every source × kind, made up front so each series exists (at 0) from the start.
    private let shared: [Key: Query]
    /// Per tenant × source × kind, made on first use (only with `labelTenants`).
    private let perTenant = NIOLockedValueBox([Key: Query]())

    init(factory: any MetricsFactory, labelTenants: Bool) {
        self.factory = factory
        self.labelTenants = labelTenants
        self.slow = Counter(label: PerformanceMonitor.MetricName.slowQueries, factory: factory)
        var shared: [Key: Query] = [:]
        if !labelTenants {
            for source in QuerySource.allCases {
                for kind in QueryKind.allCases {
                    let key = Key(tenant: nil, source: source, kind: kind)
                    shared[key] = Self.make(key, factory: factory)
                }
            }
        }
        self.shared = shared
    }

    private static func make(_ key: Key, factory: any MetricsFactory) -> Query {
        var dimensions = [("source", key.source.rawValue), ("kind", key.kind.rawValue)]
        if let tenant = key.tenant { dimensions.append(("tenant", tenant)) }
        return Query(
            duration: Timer(label: PerformanceMonitor.MetricName.queryDuration, dimensions: dimensions, factory: factory),
            succeeded: Counter(
                label: PerformanceMonitor.MetricName.queries, dimensions: dimensions + [("outcome", "ok")],
                factory: factory),
            failed: Counter(
                label: PerformanceMonitor.MetricName.queries, dimensions: dimensions + [("outcome", "error")],
                factory: factory))
    }

    func emit(_ metric: QueryMetric, slow isSlow: Bool) {
        let query: Query
        if labelTenants {
            let key = Key(tenant: metric.tenant, source: metric.source, kind: metric.kind)
            query = perTenant.withLockedValue { cache in
                if let made = cache[key] { return made }
                let made = Self.make(key, factory: factory)
                cache[key] = made
                return made
            }
        } else {
            // Made for every source × kind in init.
            query = shared[Key(tenant: nil, source: metric.source, kind: metric.kind)]!
        }
        query.duration.record(duration: metric.duration)
        (metric.success ? query.succeeded : query.failed).increment()
        if isSlow { slow.increment() }
    }
}
