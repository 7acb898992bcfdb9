import Foundation
import Metrics
import NIOConcurrencyHelpers
import TenantryCore

/// Records every routed query and answers with latency percentiles, error rates, slow queries,
/// a unified-vs-tenant comparison and threshold alerts (the seed's `PerformanceMonitor`).
///
/// ``record(_:)`` is O(1) and safe from any thread: under one lock it updates cumulative latency
/// series (overall, and per tenant; each split by source, kind and table), appends to a ring
/// buffer of the newest raw samples (``Configuration/maxRetention``) and to the list of recent
/// slow queries; then, outside the lock, it emits swift-metrics: a `Timer`
/// `tenantry_query_duration_seconds` and `Counter`s `tenantry_queries_total` and
/// `tenantry_slow_queries_total`. See `docs/monitoring.md`.
public final class PerformanceMonitor: Sendable {
    /// The monitor's settings.
    public struct Configuration: Sendable, Equatable {
        /// Queries strictly slower than this are slow. Default 1 s (`SLOW_QUERY_THRESHOLD_MS`).
        public var slowQueryThreshold: Duration
        /// Raw samples kept, newest first out (`MAX_METRICS_RETENTION`). Default 10,000. Bounds
        /// memory and the window of ``PerformanceStats/queriesPerSecond`` and alerts; the
        /// percentiles and counts are cumulative and not bounded by it.
        public var maxRetention: Int
        /// Slow queries kept for ``PerformanceMonitor/slowQueries()`` (the newest). Default 100.
        public var maxSlowQueries: Int
        /// When ``PerformanceMonitor/alerts()`` fires.
        public var alertThresholds: AlertThresholds
        /// Adds a `tenant` label to the emitted metrics. Default `false`: one series per tenant
        /// multiplies the series a Prometheus server stores; turn on only for small fleets.
        public var labelTenants: Bool

        /// Settings with documented defaults.
        public init(
            slowQueryThreshold: Duration = .milliseconds(1000),
            maxRetention: Int = 10_000,
            maxSlowQueries: Int = 100,
            alertThresholds: AlertThresholds = AlertThresholds(),
            labelTenants: Bool = false
        ) {
            self.slowQueryThreshold = slowQueryThreshold
            self.maxRetention = Swift.max(1, maxRetention)
            self.maxSlowQueries = Swift.max(1, maxSlowQueries)
            self.alertThresholds = alertThresholds
            self.labelTenants = labelTenants
        }

        /// Settings from the environment (`SLOW_QUERY_THRESHOLD_MS`, `MAX_METRICS_RETENTION`),
        /// other values at their defaults.
        public init(_ monitor: TenantryConfiguration.Monitor) {
            self.init(slowQueryThreshold: monitor.slowQueryThreshold, maxRetention: monitor.maxRetention)
        }
    }

    /// The settings this monitor runs with.
    public let configuration: Configuration
    let state: NIOLockedValueBox<State>
    let instruments: Instruments
    let onAlert: (@Sendable (Alert) -> Void)?

    /// A monitor.
    ///
    /// - Parameters:
    ///   - configuration: thresholds and retention.
    ///   - metricsFactory: where swift-metrics go; default the factory the executable bootstrapped
    ///     (`MetricsSystem.bootstrap`; `tenantry serve` bootstraps a Prometheus one) at the time
    ///     of this call. Tests pass a factory over their own registry (TenantryHummingbird's
    ///     `PrometheusExporter().metricsFactory`).
    ///   - onAlert: called, outside any lock, for each alert that starts firing at a call of
    ///     ``alerts()``.
    public init(
        configuration: Configuration = Configuration(),
        metricsFactory: (any MetricsFactory)? = nil,
        onAlert: (@Sendable (Alert) -> Void)? = nil
    ) {
        self.configuration = configuration
        self.state = NIOLockedValueBox(State(configuration))
        self.instruments = Instruments(
            factory: metricsFactory ?? MetricsSystem.factory, labelTenants: configuration.labelTenants)
        self.onAlert = onAlert
    }

    /// Records one query: amortized O(1), one short lock. Call it for every query, failed ones too.
    public func record(_ metric: QueryMetric) {
        let microseconds = metric.duration.wholeMicroseconds
        let slow = metric.duration > configuration.slowQueryThreshold
        state.withLockedValue { $0.record(metric, microseconds: microseconds, slow: slow) }
        instruments.emit(metric, slow: slow)
    }

    /// Summary of all queries (`tenant == nil`) or of one tenant's; a tenant never seen gives
    /// zeros.
    public func stats(tenant: String? = nil) -> PerformanceStats {
        let (slices, rate) = state.withLockedValue { state in
            let slices = tenant.map { state.tenants[$0] ?? Slices() } ?? state.overall
            return (slices, state.queriesPerSecond(tenant: tenant))
        }
        // Percentiles are computed outside the lock: `slices` is a copy-on-write snapshot.
        let all = PerformanceStats.Breakdown(slices.all)
        return PerformanceStats(
            tenant: tenant, totalQueries: all.count, errors: all.errors, avgLatencyMs: all.avgMs,
            p50LatencyMs: all.p50Ms, p95LatencyMs: all.p95Ms, p99LatencyMs: all.p99Ms,
            errorRate: all.errorRate, queriesPerSecond: rate, slowQueries: all.slowQueries,
            byTable: slices.byTable.mapValues(PerformanceStats.Breakdown.init),
            byKind: Dictionary(uniqueKeysWithValues: slices.byKind.map { ($0.rawValue, .init($1)) }),
            bySource: Dictionary(uniqueKeysWithValues: slices.bySource.map { ($0.rawValue, .init($1)) }))
    }

    /// The tenants seen since the start or the last reset, sorted.
    public func tenants() -> [String] {
        state.withLockedValue { $0.tenants.keys.sorted() }
    }

    /// The retained raw samples, oldest first (at most ``Configuration/maxRetention``).
    public func samples() -> [QueryMetric] {
        state.withLockedValue { $0.samples.elements }
    }

    /// The most recent slow queries, oldest first (at most ``Configuration/maxSlowQueries``).
    public func slowQueries() -> [QueryMetric] {
        state.withLockedValue { $0.slowQueries.elements }
    }

    /// Forgets everything recorded, and which alerts were firing. Counters already emitted to
    /// swift-metrics are not reset: Prometheus counters only grow.
    public func reset() {
        state.withLockedValue { $0 = State(configuration) }
    }
}

/// Cumulative series for one population (all queries, or one tenant's), split every way.
struct Slices: Sendable {
    var all = LatencySeries()
    var bySource: [QuerySource: LatencySeries] = [:]
    var byKind: [QueryKind: LatencySeries] = [:]
    var byTable: [String: LatencySeries] = [:]

    mutating func record(_ metric: QueryMetric, microseconds: UInt64, slow: Bool) {
        all.record(microseconds: microseconds, success: metric.success, slow: slow)
        bySource[metric.source, default: LatencySeries()]
            .record(microseconds: microseconds, success: metric.success, slow: slow)
        byKind[metric.kind, default: LatencySeries()]
            .record(microseconds: microseconds, success: metric.success, slow: slow)
        if let table = metric.table {
            byTable[table, default: LatencySeries()]
                .record(microseconds: microseconds, success: metric.success, slow: slow)
        }
    }
}

/// Everything the monitor's lock guards.
struct State: Sendable {
    var overall = Slices()
    var tenants: [String: Slices] = [:]
    var samples: RingBuffer<QueryMetric>
    var slowQueries: RingBuffer<QueryMetric>
    /// Alerts firing at the last ``PerformanceMonitor/alerts()``, to call `onAlert` only on change.
    var firing: Set<PerformanceMonitor.Alert.Key> = []

    init(_ configuration: PerformanceMonitor.Configuration) {
        samples = RingBuffer(capacity: configuration.maxRetention)
        slowQueries = RingBuffer(capacity: configuration.maxSlowQueries)
    }

    mutating func record(_ metric: QueryMetric, microseconds: UInt64, slow: Bool) {
        overall.record(metric, microseconds: microseconds, slow: slow)
        tenants[metric.tenant, default: Slices()].record(metric, microseconds: microseconds, slow: slow)
        samples.append(metric)
        if slow { slowQueries.append(metric) }
    }

    /// (n − 1) / (newest − oldest) over the retained samples of `tenant` (or all).
    func queriesPerSecond(tenant: String?) -> Double {
        var count = 0
        var oldest = Date.distantFuture
        var newest = Date.distantPast
        samples.forEach { metric in
            guard tenant == nil || metric.tenant == tenant else { return }
            count += 1
            oldest = min(oldest, metric.timestamp)
            newest = max(newest, metric.timestamp)
        }
        let span = newest.timeIntervalSince(oldest)
        return count >= 2 && span > 0 ? Double(count - 1) / span : 0
    }
}
