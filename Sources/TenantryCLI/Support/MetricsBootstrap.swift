import Metrics
import NIOConcurrencyHelpers
import Prometheus
import TenantryHummingbird

/// The process's one swift-metrics bootstrap: the executable's job, never a library's.
enum MetricsBootstrap {
    private static let global = NIOLockedValueBox<PrometheusExporter?>(nil)

    /// Bootstraps swift-metrics with an exporter over Prometheus' default registry, once per
    /// process; later calls return the same exporter. (swift-metrics allows one bootstrap per
    /// process: anything else that calls `MetricsSystem.bootstrap` must not run too.)
    @discardableResult
    static func prometheus() -> PrometheusExporter {
        global.withLockedValue { current in
            if let current { return current }
            let exporter = PrometheusExporter(registry: PrometheusMetricsFactory.defaultRegistry)
            MetricsSystem.bootstrap(exporter.factory)
            current = exporter
            return exporter
        }
    }
}
