import Metrics

extension TenantRouter {
    /// The swift-metrics names the router publishes (besides the monitor's per-query metrics,
    /// ``PerformanceMonitor/MetricName``). Pool metrics carry the label `server`.
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
        /// `FloatingPointCounter` of seconds leases waited; divided by `leases` it is the mean wait.
        public static let leaseWait = "tenantry_pool_lease_wait_seconds_total"
        /// `Counter` of reads, label `source` (`unified`, `tenant`).
        public static let reads = "tenantry_reads_total"
        /// `Counter` of failed tenant reads served from unified instead.
        public static let fallbacks = "tenantry_read_fallbacks_total"
        /// `Counter` of shadow reads compared (consistency verification).
        public static let consistencyChecks = "tenantry_read_consistency_checks_total"
        /// `Counter` of shadow reads whose results differed.
        public static let inconsistencies = "tenantry_read_inconsistencies_total"
    }

    /// Publishes the pools' counters and the read path's (``run()`` calls it twice a second):
    /// gauges are set, counters grow by what changed since the last call.
    public func publishMetrics() async {
        let factory = configuration.metricsFactory ?? MetricsSystem.factory
        for (server, pool) in state.withLockedValue({ $0.pools }) {
            let now = await pool.statistics()
            let before = state.withLockedValue { state in
                let before = state.published[server] ?? TenantPool.Statistics()
                // Two concurrent calls may arrive out of order: snapshots of the actor grow in every
                // counter, so the larger total is the later one; an older one adds nothing.
                if Self.counterTotal(now) >= Self.counterTotal(before) { state.published[server] = now }
                return before
            }
            let labels = [("server", server)]
            for (state, value) in [("open", now.open), ("idle", now.idle), ("leased", now.leased)] {
                Gauge(label: MetricName.connections, dimensions: labels + [("state", state)], factory: factory).record(value)
            }
            Gauge(label: MetricName.waiting, dimensions: labels, factory: factory).record(now.waiting)
            let counters: [(String, Int, Int)] = [
                (MetricName.connects, now.connects, before.connects),
                (MetricName.connectFailures, now.connectFailures, before.connectFailures),
                (MetricName.evictions, now.evictions, before.evictions),
                (MetricName.idleClosed, now.idleClosed, before.idleClosed),
                (MetricName.discarded, now.discarded, before.discarded),
                (MetricName.leases, now.leases, before.leases),
                (MetricName.leaseTimeouts, now.leaseTimeouts, before.leaseTimeouts),
            ]
            for (name, value, previous) in counters {
                Counter(label: name, dimensions: labels, factory: factory).increment(by: max(0, value - previous))
            }
            FloatingPointCounter(label: MetricName.leaseWait, dimensions: labels, factory: factory)
                .increment(by: max(0, now.leaseWaitTotalMs - before.leaseWaitTotalMs) / 1000)
        }
        let (now, before) = state.withLockedValue { state in
            defer { state.publishedReads = state.reads }
            return (state.reads, state.publishedReads)
        }
        let counters: [(String, [(String, String)], Int, Int)] = [
            (MetricName.reads, [("source", "unified")], now.unifiedReads, before.unifiedReads),
            (MetricName.reads, [("source", "tenant")], now.tenantReads, before.tenantReads),
            (MetricName.fallbacks, [], now.fallbacks, before.fallbacks),
            (MetricName.consistencyChecks, [], now.consistencyChecks, before.consistencyChecks),
            (MetricName.inconsistencies, [], now.inconsistencies, before.inconsistencies),
        ]
        for (name, labels, value, previous) in counters {
            Counter(label: name, dimensions: labels, factory: factory).increment(by: max(0, value - previous))
        }
    }

    static func counterTotal(_ statistics: TenantPool.Statistics) -> Int {
        statistics.connects + statistics.connectFailures + statistics.evictions + statistics.idleClosed
            + statistics.discarded + statistics.leases + statistics.leaseTimeouts
    }
}
