import Foundation
import HandyShop
import Tenantry
import TenantryCore
import TenantryHummingbird
import Testing

/// Pure tests of the performance monitor: no database. Each test has its own monitor and, where
/// metrics are checked, its own Prometheus registry (nothing is bootstrapped globally).
@Suite("PerformanceMonitor")
struct PerformanceMonitorTests {
    // MARK: Percentiles

    @Test("p50/p95/p99 match a brute-force computation, overall, per tenant, per source, per table")
    func percentilesMatchBruteForce() {
        var random = SeededRandom(seed: 0x7e4a_17)
        let monitor = PerformanceMonitor(configuration: .init(maxRetention: 50_000))
        let tables = ["orders", "customers", "repairs", "parts"]
        var recorded: [QueryMetric] = []
        for index in 0..<10_100 {
            // 100 samples for "tiny" (kept exactly), 10,000 over five busy tenants (histograms).
            let tenant = index < 100 ? "tiny" : "shop-\(random.next() % 5)"
            let metric = QueryMetric(
                tenant: tenant, table: tables[Int(random.next() % 4)], kind: QueryKind.allCases[Int(random.next() % 5)],
                duration: .microseconds(random.logNormalMicroseconds(median: 20_000, sigma: 1.2)),
                success: random.unit() > 0.01, source: random.unit() < 0.6 ? .unified : .tenant)
            recorded.append(metric)
            monitor.record(metric)
        }
        func check(_ breakdown: PerformanceStats.Breakdown?, _ samples: [QueryMetric], _ what: String) {
            guard let breakdown else { Issue.record("no breakdown for \(what)"); return }
            let micros = samples.map { Int64($0.duration.wholeMicroseconds) }.sorted()
            #expect(breakdown.count == micros.count, "\(what)")
            #expect(breakdown.errors == samples.filter { !$0.success }.count, "\(what)")
            let mean = Double(micros.reduce(0, +)) / Double(micros.count) / 1000
            #expect(abs(breakdown.avgMs - mean) < 1e-9 * mean, "\(what) mean")
            for (percentile, got) in [(50.0, breakdown.p50Ms), (95.0, breakdown.p95Ms), (99.0, breakdown.p99Ms)] {
                let rank = max(1, Int((percentile / 100 * Double(micros.count)).rounded(.up)))
                let exact = Double(micros[rank - 1])
                let tolerance = exact * 0.001 + 1
                #expect(abs(got * 1000 - exact) <= tolerance, "\(what) p\(Int(percentile)): \(got * 1000) vs \(exact)")
            }
        }
        func breakdown(_ stats: PerformanceStats) -> PerformanceStats.Breakdown {
            .init(
                count: stats.totalQueries, errors: stats.errors, avgMs: stats.avgLatencyMs, p50Ms: stats.p50LatencyMs,
                p95Ms: stats.p95LatencyMs, p99Ms: stats.p99LatencyMs, errorRate: stats.errorRate,
                slowQueries: stats.slowQueries)
        }

        let overall = monitor.stats()
        check(breakdown(overall), recorded, "overall")
        for source in QuerySource.allCases {
            check(overall.bySource[source.rawValue], recorded.filter { $0.source == source }, "source \(source)")
        }
        for table in tables {
            check(overall.byTable[table], recorded.filter { $0.table == table }, "table \(table)")
        }
        for kind in QueryKind.allCases {
            check(overall.byKind[kind.rawValue], recorded.filter { $0.kind == kind }, "kind \(kind)")
        }
        #expect(monitor.tenants() == ["shop-0", "shop-1", "shop-2", "shop-3", "shop-4", "tiny"])
        for tenant in monitor.tenants() {
            let mine = recorded.filter { $0.tenant == tenant }
            let stats = monitor.stats(tenant: tenant)
            #expect(stats.tenant == tenant)
            check(breakdown(stats), mine, "tenant \(tenant)")
            for source in QuerySource.allCases {
                check(stats.bySource[source.rawValue], mine.filter { $0.source == source }, "tenant \(tenant) \(source)")
            }
            check(stats.byTable["orders"], mine.filter { $0.table == "orders" }, "tenant \(tenant) orders")
        }
        #expect(monitor.stats(tenant: "never-seen").totalQueries == 0)
    }

    @Test("concurrent records are all counted")
    func concurrentRecords() async {
        let monitor = PerformanceMonitor(configuration: .init(maxRetention: 100))
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for index in 0..<1000 {
                        monitor.record(.init(
                            tenant: "t\(worker)", table: "orders", kind: .select, duration: .microseconds(index + 1),
                            source: .tenant))
                    }
                }
            }
        }
        #expect(monitor.stats().totalQueries == 8000)
        #expect(monitor.stats(tenant: "t3").totalQueries == 1000)
        #expect(monitor.samples().count == 100)
    }

    // MARK: Retention and slow queries

    @Test("retention keeps exactly the newest maxRetention samples; histograms count all")
    func retentionBound() {
        let monitor = PerformanceMonitor(configuration: .init(maxRetention: 100))
        let start = Date(timeIntervalSince1970: 1_700_000_000)
        for index in 0..<1000 {
            monitor.record(.init(
                tenant: "1", table: "orders", kind: .select, duration: .microseconds(index),
                source: .unified, timestamp: start.addingTimeInterval(Double(index) * 0.01)))
        }
        let samples = monitor.samples()
        #expect(samples.count == 100)
        #expect(samples.map(\.duration) == (900..<1000).map { Duration.microseconds($0) })
        let stats = monitor.stats()
        #expect(stats.totalQueries == 1000)
        #expect(stats.byTable["orders"]?.count == 1000)
        #expect(abs(stats.p50LatencyMs - 0.499) < 0.001)  // over all 1000, not the retained 100
        #expect(abs(stats.queriesPerSecond - 100) < 1e-6)  // 99 intervals of 10 ms in the window
        monitor.reset()
        #expect(monitor.samples().isEmpty && monitor.stats().totalQueries == 0 && monitor.tenants().isEmpty)
    }

    @Test("slow queries: strictly above the threshold, listed with tenant, table and kind")
    func slowQueries() {
        let monitor = PerformanceMonitor(configuration: .init(slowQueryThreshold: .milliseconds(100), maxSlowQueries: 3))
        let cases: [(String, String, QueryKind, Duration)] = [
            ("1", "orders", .select, .milliseconds(99)),
            ("1", "orders", .select, .milliseconds(100)),  // exactly at: not slow
            ("1", "repairs", .update, .microseconds(100_001)),
            ("2", "parts", .insert, .seconds(2)),
        ]
        for (tenant, table, kind, duration) in cases {
            monitor.record(.init(tenant: tenant, table: table, kind: kind, duration: duration, source: .unified))
        }
        let slow = monitor.slowQueries()
        #expect(slow.map(\.tenant) == ["1", "2"])
        #expect(slow.map(\.table) == ["repairs", "parts"])
        #expect(slow.map(\.kind) == [.update, .insert])
        #expect(monitor.stats().slowQueries == 2)
        #expect(monitor.stats(tenant: "1").slowQueries == 1)
        #expect(monitor.stats().byTable["orders"]?.slowQueries == 0)
        for index in 0..<5 {  // the list keeps the newest maxSlowQueries
            monitor.record(.init(tenant: "3", table: "t\(index)", kind: .delete, duration: .seconds(1), source: .tenant))
        }
        #expect(monitor.slowQueries().map(\.table) == ["t2", "t3", "t4"])
        #expect(monitor.stats().slowQueries == 7)
    }

    @Test("configuration from the environment")
    func configurationFromEnvironment() throws {
        let environment = ["SLOW_QUERY_THRESHOLD_MS": "250", "MAX_METRICS_RETENTION": "42"]
        let configuration = PerformanceMonitor.Configuration(try TenantryConfiguration(environment: environment).monitor)
        #expect(configuration.slowQueryThreshold == .milliseconds(250))
        #expect(configuration.maxRetention == 42)
        let defaults = PerformanceMonitor.Configuration(TenantryConfiguration().monitor)
        #expect(defaults.slowQueryThreshold == .seconds(1) && defaults.maxRetention == 10_000)
    }

    // MARK: Error rates and comparison

    @Test("error rate per tenant and per table")
    func errorRates() {
        let monitor = PerformanceMonitor()
        for index in 0..<200 {
            let table = index.isMultiple(of: 2) ? "orders" : "customers"
            // tenant a: 4 failures, all on orders; tenant b: none
            monitor.record(.init(
                tenant: "a", table: table, kind: .select, duration: .milliseconds(1),
                success: !(table == "orders" && index < 8), error: "PostgreSQL error 57014 (server)", source: .unified))
            monitor.record(.init(tenant: "b", table: table, kind: .insert, duration: .milliseconds(1), source: .tenant))
        }
        let a = monitor.stats(tenant: "a")
        #expect(a.errors == 4 && a.errorRate == 0.02)
        #expect(a.byTable["orders"]?.errorRate == 0.04)
        #expect(a.byTable["customers"]?.errorRate == 0)
        #expect(monitor.stats(tenant: "b").errorRate == 0)
        let all = monitor.stats()
        #expect(all.errorRate == 0.01)
        #expect(all.byTable["orders"]?.errorRate == 0.02)
        #expect(all.byKind["select"]?.errorRate == 0.02 && all.byKind["insert"]?.errorRate == 0)
        #expect(all.bySource["unified"]?.errors == 4 && all.bySource["tenant"]?.errors == 0)
    }

    @Test("compare(): unified vs tenant equals the per-source stats; changes in percent")
    func comparison() {
        let monitor = PerformanceMonitor()
        // Exact (small) series: unified p50 40 ms, tenant p50 24 ms; error rates 0.5% and 0.2%.
        for index in 0..<200 {
            monitor.record(.init(
                tenant: "1", table: "orders", kind: .select, duration: .milliseconds(index < 100 ? 40 : 60),
                success: index != 0, source: .unified))
            monitor.record(.init(
                tenant: "1", table: "orders", kind: .select, duration: .milliseconds(index < 100 ? 24 : 33),
                success: true, source: .tenant))
        }
        monitor.record(.init(tenant: "2", table: nil, kind: .other, duration: .milliseconds(40), source: .unified))
        monitor.record(.init(tenant: "2", table: nil, kind: .other, duration: .milliseconds(24), source: .tenant))
        let comparison = monitor.compare()
        let stats = monitor.stats()
        #expect(comparison.unified == stats.bySource["unified"])
        #expect(comparison.tenantDatabases == stats.bySource["tenant"])
        #expect(comparison.unified.p50Ms == 40 && comparison.tenantDatabases.p50Ms == 24)
        #expect(abs(comparison.change.p50! - -40) < 1e-9)
        #expect(abs(comparison.change.p95! - -45) < 1e-9)  // 60 → 33
        #expect(abs(comparison.change.errorRate! - -100) < 1e-9)  // 1/201 → 0
        let u = comparison.unified, t = comparison.tenantDatabases
        #expect(comparison.change.p99 == (t.p99Ms - u.p99Ms) / u.p99Ms * 100)
        // Per tenant: tenant 1 only.
        #expect(monitor.compare(tenant: "1").unified == monitor.stats(tenant: "1").bySource["unified"])
        #expect(monitor.compare(tenant: "1").unified.count == 200)

        let table = monitor.comparisonTable()
        #expect(table.contains("Unified DB") && table.contains("Tenant DBs"))
        #expect(table.contains("P50 latency") && table.contains("40.00 ms") && table.contains("24.00 ms"))
        #expect(table.contains("-40%") && table.contains("-45%") && table.contains("-100%"))
        #expect(table.contains("201"))

        // Histogram-backed series: the change is still (tenant − unified) / unified of the stats.
        let big = PerformanceMonitor()
        for index in 0..<2000 {
            big.record(.init(tenant: "1", table: nil, kind: .select, duration: .milliseconds(40),
                             success: index >= 10, source: .unified))
            big.record(.init(tenant: "1", table: nil, kind: .select, duration: .milliseconds(24),
                             success: index >= 4, source: .tenant))
        }
        let measured = big.compare()
        #expect(abs(measured.change.p50! - -40) < 0.1)
        #expect(abs(measured.change.errorRate! - -60) < 1e-9)
        #expect(measured.change.p50 == (measured.tenantDatabases.p50Ms - measured.unified.p50Ms) / measured.unified.p50Ms * 100)
        #expect(PerformanceMonitor().compare().change.p50 == nil)  // nothing to compare
    }

    // MARK: Alerts

    @Test("alerts fire above the p99 and error-rate limits, and not otherwise")
    func alerts() {
        let fired = Collected<PerformanceMonitor.Alert>()
        let thresholds = PerformanceMonitor.AlertThresholds(p99Latency: .milliseconds(100), errorRate: 0.02, minimumQueries: 50)
        let monitor = PerformanceMonitor(configuration: .init(alertThresholds: thresholds), onAlert: { fired.append($0) })
        // 100 fast unified queries for tenant 1, 2 failures (exactly 2%: not over).
        for index in 0..<100 {
            monitor.record(.init(tenant: "1", table: "orders", kind: .select, duration: .milliseconds(10),
                                 success: index >= 2, source: .unified))
        }
        // p99 exactly at the limit: not over.
        for index in 0..<100 {
            monitor.record(.init(tenant: "2", table: "orders", kind: .select,
                                 duration: .milliseconds(index >= 98 ? 100 : 5), source: .tenant))
        }
        // Few queries, all failing and slow: below minimumQueries, never fires.
        for _ in 0..<49 {
            monitor.record(.init(tenant: "3", table: "x", kind: .select, duration: .seconds(5), success: false, source: .unified))
        }
        #expect(monitor.alerts().filter { $0.scope != .source(.unified) }.isEmpty)
        // The 49 failures make the unified source fail at 51/149.
        #expect(monitor.alerts().map(\.key) == [
            .init(condition: .errorRate, scope: .source(.unified)),
            .init(condition: .p99Latency, scope: .source(.unified)),
        ])

        monitor.reset()
        #expect(monitor.alerts().isEmpty)
        for index in 0..<100 {
            monitor.record(.init(tenant: "1", table: "orders", kind: .select, duration: .milliseconds(10),
                                 success: index >= 3, source: .unified))  // 3%
            monitor.record(.init(tenant: "2", table: "orders", kind: .select,
                                 duration: .milliseconds(index >= 98 ? 101 : 5), source: .tenant))  // p99 101 ms
        }
        let alerts = monitor.alerts()
        #expect(alerts.map(\.key) == [
            .init(condition: .p99Latency, scope: .source(.tenant)),
            .init(condition: .errorRate, scope: .source(.unified)),
            .init(condition: .errorRate, scope: .tenant("1")),
            .init(condition: .p99Latency, scope: .tenant("2")),
        ])
        let p99 = alerts.first { $0.key == .init(condition: .p99Latency, scope: .source(.tenant)) }
        #expect(p99?.value == 101 && p99?.threshold == 100 && p99?.samples == 100)
        #expect(p99?.description == "p99 latency of source tenant is 101.00 ms, over the 100.00 ms limit (100 recent queries)")
        let before = fired.items.count
        _ = monitor.alerts()  // still firing: onAlert is not called again
        #expect(fired.items.count == before)
        #expect(fired.items.suffix(4).map(\.key) == alerts.map(\.key))
    }

    // MARK: Prometheus

    @Test("Prometheus: counts and labels rendered from a test-local registry")
    func prometheus() {
        let exporter = PrometheusExporter()
        let monitor = PerformanceMonitor(
            configuration: .init(slowQueryThreshold: .milliseconds(500)), metricsFactory: exporter.metricsFactory)
        for index in 0..<4 {
            monitor.record(.init(tenant: "7", table: "orders", kind: .select, duration: .milliseconds(3),
                                 success: index != 0, source: .unified))
        }
        monitor.record(.init(tenant: "7", table: "orders", kind: .insert, duration: .seconds(1), source: .tenant))
        monitor.record(.init(tenant: "8", table: "orders", kind: .insert, duration: .milliseconds(2), source: .tenant))
        let text = exporter.render()
        #expect(text.contains("# TYPE tenantry_queries_total counter"))
        #expect(text.contains(#"tenantry_queries_total{source="unified",kind="select",outcome="ok"} 3"#))
        #expect(text.contains(#"tenantry_queries_total{source="unified",kind="select",outcome="error"} 1"#))
        #expect(text.contains(#"tenantry_queries_total{source="tenant",kind="insert",outcome="ok"} 2"#))
        #expect(text.contains(#"tenantry_queries_total{source="tenant",kind="delete",outcome="ok"} 0"#))
        #expect(text.contains("# TYPE tenantry_query_duration_seconds histogram"))
        #expect(text.contains(#"tenantry_query_duration_seconds_count{source="unified",kind="select"} 4"#))
        #expect(text.contains(#"tenantry_query_duration_seconds_bucket{source="tenant",kind="insert",le="0.0025"} 1"#))
        #expect(text.contains("tenantry_slow_queries_total 1"))
        #expect(!text.contains("tenant=\""))  // no tenant label by default

        let labelled = PrometheusExporter()
        let perTenant = PerformanceMonitor(configuration: .init(labelTenants: true), metricsFactory: labelled.metricsFactory)
        perTenant.record(.init(tenant: "42", table: nil, kind: .update, duration: .milliseconds(1), source: .tenant))
        #expect(labelled.render().contains(#"tenantry_queries_total{source="tenant",kind="update",tenant="42",outcome="ok"} 1"#))
    }

    // MARK: SQL inspection

    @Test("classify() by the main keyword")
    func classify() {
        let cases: [(String, QueryKind)] = [
            ("SELECT * FROM orders", .select),
            ("  \n\tinsert into orders values (1)", .insert),
            ("Update orders SET x = 1", .update),
            ("DELETE FROM orders WHERE id = $1", .delete),
            ("-- a comment\n/* block /* nested */ */ select 1", .select),
            ("(SELECT 1) UNION (SELECT 2)", .select),
            ("WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved", .insert),
            ("with recursive t(n) as (select 1 union all select n + 1 from t) select * from t", .select),
            ("WITH x AS MATERIALIZED (SELECT 'update') UPDATE y SET z = (SELECT 1 FROM x)", .update),
            ("WITH \"delete\" AS (SELECT $$insert$$) DELETE FROM y", .delete),
            ("VALUES (1), (2)", .select),
            ("CREATE TABLE t (id int)", .other),
            ("BEGIN", .other),
            ("", .other),
            ("   -- only a comment", .other),
        ]
        for (sql, kind) in cases {
            #expect(QueryKind.classify(sql: sql) == kind, "\(sql)")
        }
    }

    @Test("table(of:) for simple statements; nil when unsure")
    func tableOf() {
        let cases: [(String, String?)] = [
            ("SELECT id, total FROM orders WHERE shop_id = $1", "orders"),
            ("select extract(year from created_at) from Repairs r join parts p on p.id = r.part_id", "repairs"),
            ("SELECT * FROM public.orders", "orders"),
            ("SELECT * FROM \"Mixed Case\"", "Mixed Case"),
            ("INSERT INTO customers (name) VALUES ('FROM x')", "customers"),
            ("UPDATE ONLY invoices SET paid = true", "invoices"),
            ("DELETE FROM sms_messages WHERE id = 1", "sms_messages"),
            ("/* hi */ WITH x AS (SELECT 1) INSERT INTO audit SELECT * FROM x", "audit"),
            ("TABLE orders", "orders"),
            ("SELECT 1", nil),
            ("SELECT * FROM (SELECT 1) s", nil),
            ("SELECT * FROM generate_series(1, 3)", nil),
            ("SELECT 'a' UNION SELECT 'b' FROM t", nil),
            ("VALUES (1)", nil),
            ("CREATE TABLE t (id int)", nil),
        ]
        for (sql, table) in cases {
            #expect(QueryMetric.table(of: sql) == table, "\(sql)")
        }
        let metric = QueryMetric(tenant: "9", sql: "update Orders set x = 1", duration: .milliseconds(1), source: .tenant)
        #expect(metric.kind == .update && metric.table == "orders")
    }

    @Test("error summaries never carry an arbitrary error's text")
    func errorSummary() {
        struct Leaky: Error, CustomStringConvertible { var description: String { "postgres://u:secret@host" } }
        #expect(QueryMetric.errorSummary(Leaky()) == "Leaky")
        #expect(QueryMetric.errorSummary(TenantryError(code: .timeout, message: "lease timed out")) == "lease timed out")
        let long = QueryMetric(tenant: "1", table: nil, kind: .other, duration: .zero, success: false,
                               error: String(repeating: "x", count: 1000), source: .unified)
        #expect(long.error?.count == QueryMetric.maxErrorLength)
    }
}

extension SeededRandom {
    /// Log-normal (Box–Muller), at least 1 µs and at most 10 minutes.
    fileprivate mutating func logNormalMicroseconds(median: Double, sigma: Double) -> Int {
        let normal = (-2 * log(max(unit(), 1e-300))).squareRoot() * cos(2 * Double.pi * unit())
        return Int(min(max(median * exp(sigma * normal), 1), 600_000_000))
    }
}

/// Values appended from `@Sendable` callbacks.
private final class Collected<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Value] = []
    var items: [Value] { lock.withLock { values } }
    func append(_ value: Value) { lock.withLock { values.append(value) } }
}
