import Metrics
import Prometheus
import Tenantry

/// Collects swift-metrics in a Prometheus registry and renders them in the text exposition
/// format, for `/metrics`.
///
/// A library never bootstraps swift-metrics: the executable does, once (`tenantry serve` with an
/// exporter over `PrometheusMetricsFactory.defaultRegistry`); everything made afterwards without
/// an explicit factory (the ``PerformanceMonitor`` by default, and libraries) lands in that
/// exporter, which ``AdminAPI`` serves at `/metrics`. Tests never bootstrap: they make their own
/// `PrometheusExporter()` and pass its ``metricsFactory`` to the monitor, so parallel tests cannot see each other's counts.
public struct PrometheusExporter: Sendable {
    /// The registry metrics are collected in.
    public let registry: PrometheusCollectorRegistry
    /// A swift-metrics factory over ``registry``, with Tenantry's histogram buckets.
    public let factory: PrometheusMetricsFactory

    /// The `Content-Type` of ``render()``'s output.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Buckets of `tenantry_query_duration_seconds`: 1 ms to 30 s. Prometheus' default starts
    /// at 5 ms, which lumps every fast query (most of them, in a tenant database) together.
    public static let queryDurationBuckets: [Duration] = [
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]

    /// Buckets of `tenantry_pool_lease_wait_seconds`: 100 µs (an idle connection handed out) to
    /// 30 s (past any lease timeout).
    public static let leaseWaitBuckets: [Duration] = [
        .microseconds(100), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]

    /// An exporter over `registry` (by default a new, private one).
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[PerformanceMonitor.MetricName.queryDuration] = Self.queryDurationBuckets
        factory.durationHistogramBuckets[TenantRouter.MetricName.leaseWaitDuration] = Self.leaseWaitBuckets
        self.factory = factory
    }

    /// ``factory`` as the swift-metrics protocol, for ``PerformanceMonitor/init(configuration:metricsFactory:onAlert:)``.
    public var metricsFactory: any MetricsFactory { factory }

    /// Everything in ``registry`` in the Prometheus text exposition format.
    public func render() -> String {
        registry.emitToString()
    }
}
