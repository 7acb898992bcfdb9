import Metrics

extension TenantRouter {
    /// The swift-metrics names the router and its pools emit as events happen (besides the
    /// monitor's per-query metrics, ``PerformanceMonitor/MetricName``). Pool metrics carry the
    /// label `server`.
    public enum MetricName: Sendable {
        /// `Gauge` of the pool's connections, label `state`: `open` (idle + leased + being
        /// opened; never above the server cap), `idle`, `leased`.
        public static let connections = "tenantry_pool_connections"
        /// `Gauge` of callers waiting for a connection.
        public static let waiting = "tenantry_pool_waiting"
        /// `Counter` of connections opened.
        public static let connects = "tenantry_pool_connects_total"
        /// `Counter` of failed connection attempts.
        public static let connectFailures = "tenantry_pool_connect_failures_total"
        /// `Counter` of idle connections closed to make room for another tenant at the cap.
        public static let evictions = "tenantry_pool_evictions_total"
        /// `Counter` of idle connections closed by the idle timeout.
        public static let idleClosed = "tenantry_pool_idle_closed_total"
        /// `Counter` of broken connections discarded.
        public static let discarded = "tenantry_pool_discarded_total"
        /// `Counter` of leases granted.
        public static let leases = "tenantry_pool_leases_total"
        /// `Counter` of leases that timed out (`TENANT_DB_CONNECTION_TIMEOUT`).
        public static let leaseTimeouts = "tenantry_pool_lease_timeouts_total"
        /// `FloatingPointCounter` of seconds leases waited; divided by `leases` it is the mean wait
        /// (the same as ``leaseWaitDuration``'s `_sum`; kept for existing dashboards).
        public static let leaseWait = "tenantry_pool_lease_wait_seconds_total"
        /// `Timer` of how long each granted lease waited (from the call to the connection in hand,
        /// connecting included). Prometheus renders it as a histogram in seconds, buckets
        /// ``PrometheusExporter/leaseWaitBuckets``.
        public static let leaseWaitDuration = "tenantry_pool_lease_wait_seconds"
        /// `Counter` of reads, label `source` (`unified`, `tenant`).
        public static let reads = "tenantry_reads_total"
        /// `Counter` of failed tenant reads served from unified instead.
        public static let fallbacks = "tenantry_read_fallbacks_total"
        /// `Counter` of shadow reads compared (consistency verification).
        public static let consistencyChecks = "tenantry_read_consistency_checks_total"
        /// `Counter` of shadow reads whose results differed.
        public static let inconsistencies = "tenantry_read_inconsistencies_total"
    }

    /// Brings the pool gauges up to date: idle connections the server closed (a restart) are
    /// dropped and counted as discarded. Every other metric is emitted when its event happens, and
    /// ``run()`` drops closed connections with each idle sweep, so this is only needed by a caller
    /// that reads the gauges without a running router.
    public func publishMetrics() async {
        for pool in state.withLockedValue({ Array($0.pools.values) }) { _ = await pool.statistics() }
    }
}

/// The read path's swift-metrics instruments, made once with the router (so each series exists
/// at 0 from the start) and emitted when a read is counted.
struct ReadInstruments: Sendable {
    let unifiedReads: Counter
    let tenantReads: Counter
    let fallbacks: Counter
    let consistencyChecks: Counter
    let inconsistencies: Counter

    init(factory: any MetricsFactory) {
        typealias Name = TenantRouter.MetricName
        unifiedReads = Counter(label: Name.reads, dimensions: [("source", "unified")], factory: factory)
        tenantReads = Counter(label: Name.reads, dimensions: [("source", "tenant")], factory: factory)
        fallbacks = Counter(label: Name.fallbacks, factory: factory)
        consistencyChecks = Counter(label: Name.consistencyChecks, factory: factory)
        inconsistencies = Counter(label: Name.inconsistencies, factory: factory)
    }
}
