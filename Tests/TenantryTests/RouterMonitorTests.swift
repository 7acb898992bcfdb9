import Foundation
import Logging
import Metrics
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryHummingbird
import TenantryTestSupport
import Testing

extension RouterFixture {
    /// Like `withRouter`, with `monitor` and a metrics factory in the router's configuration.
    func withRouter<T: Sendable>(
        pool: TenantPool.Configuration, monitor: PerformanceMonitor?, metricsFactory: (any MetricsFactory)? = nil,
        _ body: @escaping @Sendable (TenantRouter, Catalog) async throws -> T
    ) async throws -> T {
        try await Catalog.withCatalog(base.catalogURL, logger: TestPostgres.logger) { catalog in
            var configuration = TenantRouter.Configuration(unifiedURL: base.catalogURL, pool: pool)
            configuration.monitor = monitor
            configuration.metricsFactory = metricsFactory
            let router = TenantRouter(
                configuration: configuration, catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: base.keyring),
                servers: ServerDirectory(
                    databaseURL: base.catalogURL, superuser: nil, superuserPassword: nil, servers: [], keyring: base.keyring),
                logger: TestPostgres.logger)
            return try await router.running { try await body(router, catalog) }
        }
    }
}

@Suite("router → performance monitor", .timeLimit(.minutes(5)))
struct RouterMonitorTests {
    @Test("every routed query is recorded once with tenant, table, kind, duration, outcome and source")
    func queriesAreRecorded() async throws {
        let fixture = try await RouterFixture.make(count: 2)
        let (a, b) = (fixture.ids[0], fixture.ids[1])
        let monitor = PerformanceMonitor(metricsFactory: PrometheusExporter().metricsFactory)
        try await fixture.withRouter(pool: RouterFixture.pool(cap: 5), monitor: monitor) { router, catalog in
            try await fixture.seedTenantDatabases(router)
            monitor.reset()  // only what follows counts
            var policy = ReadPolicy()
            policy.strategy = .shopList
            policy.shopIDs = [a]  // a reads its database, b reads unified
            policy.enableFallback = true  // a failed tenant read is tried on unified too
            try await catalog.setReadPolicy(policy)

            #expect(try await RouterFixture.readName(router, a) == ("Ada 1", .tenant))
            #expect(try await RouterFixture.readName(router, b) == ("Ada 2", .unified))
            // Writes stay on unified while tenants are shared; in a transaction too.
            try await router.withTransaction(tenant: b, intent: .write) { connection in
                try await connection.query("INSERT INTO customers (shop_id, id, name) VALUES (\(b.rawValue), 2, 'Bo')")
                try await connection.query("UPDATE customers SET name = 'Bob' WHERE shop_id = \(b.rawValue) AND id = 2")
            }
            try await router.withConnection(tenant: b, intent: .write) { connection in
                try await connection.query("DELETE FROM public.customers WHERE shop_id = \(b.rawValue) AND id = 2")
            }
            await #expect(throws: PSQLError.self) {
                try await router.withConnection(tenant: a, intent: .read) { connection in
                    try await connection.query("SELECT * FROM missing_table")
                }
            }
            try await router.withConnection(tenant: a, intent: .read) { connection in
                try await connection.query("SELECT pg_sleep(0.05)")
            }
        }

        let samples = monitor.samples()
        // Only the bodies' queries: BEGIN, COMMIT and set_config of the router are not measured.
        #expect(samples.count == 8, "\(samples.map { "\($0.kind) \($0.table ?? "-")" })")
        let shape = samples.map { "\($0.tenant) \($0.source) \($0.kind) \($0.table ?? "-") \($0.success)" }
        #expect(shape == [
            "1 tenant select customers true",
            "2 unified select customers true",
            "2 unified insert customers true",
            "2 unified update customers true",
            "2 unified delete customers true",
            "1 tenant select missing_table false",
            "1 unified select missing_table false",  // the fallback's attempt
            "1 tenant select - true",
        ])
        for failed in samples.filter({ !$0.success }) {
            #expect(failed.error == "PostgreSQL error 42P01 (server)", "no SQL text, no message: \(failed.error ?? "")")
        }
        #expect(samples.last!.duration >= .milliseconds(50) && samples.last!.duration < .seconds(5))
        #expect(samples.dropLast().allSatisfy { $0.duration > .zero && $0.duration < .seconds(5) })

        let stats = monitor.stats()
        #expect(stats.bySource["tenant"]?.count == 3 && stats.bySource["unified"]?.count == 5)
        #expect(stats.byKind["select"]?.count == 5 && stats.byKind["insert"]?.count == 1)
        #expect(stats.byTable["missing_table"]?.errors == 2 && stats.errors == 2)
        #expect(monitor.stats(tenant: "1").errors == 2 && monitor.stats(tenant: "2").errors == 0)
        // p50/p95/p99 are the nearest-rank values of the recorded samples.
        let micros = samples.map { Int64($0.duration.wholeMicroseconds) }
            .sorted()
        for (percentile, got) in [(50.0, stats.p50LatencyMs), (95.0, stats.p95LatencyMs), (99.0, stats.p99LatencyMs)] {
            let rank = max(1, Int((percentile / 100 * Double(micros.count)).rounded(.up)))
            #expect(abs(got * 1000 - Double(micros[rank - 1])) <= 1, "p\(Int(percentile))")
        }
    }

    @Test("the pool and read-path metrics are emitted to Prometheus as events happen, with a lease-wait histogram")
    func poolMetrics() async throws {
        let fixture = try await RouterFixture.make(count: 2)
        let exporter = PrometheusExporter()
        let text = try await fixture.withRouter(
            pool: RouterFixture.pool(cap: 5), monitor: nil, metricsFactory: exporter.metricsFactory
        ) { router, catalog in
            var policy = ReadPolicy()
            policy.strategy = .canary
            policy.canaryIDs = [fixture.ids[0]]
            try await catalog.setReadPolicy(policy)
            for id in fixture.ids { _ = try await RouterFixture.readName(router, id) }
            _ = try await RouterFixture.readName(router, fixture.ids[0])
            // No publishing step: every metric was emitted when its event happened.
            return exporter.render()
        }
        let lines = Set(text.split(separator: "\n").map(String.init))
        for expected in [
            #"tenantry_pool_connects_total{server="default"} 2"#,  // the tenant database of 1, unified
            #"tenantry_pool_leases_total{server="default"} 3"#,
            #"tenantry_pool_connections{server="default",state="open"} 2.0"#,
            #"tenantry_pool_connections{server="default",state="idle"} 2.0"#,
            #"tenantry_pool_connections{server="default",state="leased"} 0.0"#,
            #"tenantry_pool_waiting{server="default"} 0.0"#,
            #"tenantry_pool_evictions_total{server="default"} 0"#,
            #"tenantry_reads_total{source="tenant"} 2"#,
            #"tenantry_reads_total{source="unified"} 1"#,
            #"tenantry_read_fallbacks_total 0"#,
        ] {
            #expect(lines.contains(expected), "\(expected) in:\n\(text)")
        }
        #expect(text.contains(#"tenantry_pool_lease_wait_seconds_total{server="default"} "#))
        // One observation per lease; every lease waited less than 30 s.
        #expect(lines.contains(#"tenantry_pool_lease_wait_seconds_count{server="default"} 3"#), "\(text)")
        #expect(lines.contains(#"tenantry_pool_lease_wait_seconds_bucket{server="default",le="30.0"} 3"#), "\(text)")
        // Tenantry's buckets (from 100 µs: an idle connection is handed out in microseconds).
        #expect(text.contains(#"tenantry_pool_lease_wait_seconds_bucket{server="default",le="0.0001"} "#), "\(text)")
    }
}
