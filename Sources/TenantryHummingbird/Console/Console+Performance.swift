import Foundation
import Hummingbird
import Tenantry

extension Console {
    /// `GET /console/performance`: the seeds' "Performance Targets" (unified before, tenant
    /// databases after) as measured by the performance monitor, and a latency histogram of the
    /// retained queries by source.
    func performancePage(_ session: ConsoleSessions.Session) -> Response {
        let e = ConsoleHTML.escape
        let comparison = api.monitor.compare()
        func ms(_ value: Double, _ count: Int) -> String { count == 0 ? "—" : String(format: "%.2f ms", value) }
        func rate(_ value: Double, _ count: Int) -> String { count == 0 ? "—" : String(format: "%.2f%%", value * 100) }
        func change(_ value: Double?) -> String { value.map { String(format: "%+.0f%%", $0) } ?? "—" }
        let (u, t) = (comparison.unified, comparison.tenantDatabases)
        var html = "<h1>Performance</h1><p>Measured by the performance monitor of this service (queries it routed or its sample workload ran). "
            + "The seeds' expectations are claims to check, not results.</p>"
        html += "<table id=\"targets\" class=\"data\"><thead><tr><th></th><th>unified DB (before)</th><th>tenant DBs (after)</th>"
            + "<th>change</th><th>seeds' expectation: before</th><th>after</th></tr></thead><tbody>"
        let rows: [(String, String, String, String, String, String)] = [
            ("queries", ConsoleHTML.count(u.count), ConsoleHTML.count(t.count), "", "", ""),
            ("P50 latency", ms(u.p50Ms, u.count), ms(t.p50Ms, t.count), change(comparison.change.p50), "40–60 ms", "20–35 ms (−40%)"),
            ("P95 latency", ms(u.p95Ms, u.count), ms(t.p95Ms, t.count), change(comparison.change.p95), "200–350 ms", "100–200 ms (−45%)"),
            ("P99 latency", ms(u.p99Ms, u.count), ms(t.p99Ms, t.count), change(comparison.change.p99), "500–850 ms", "250–500 ms (−45%)"),
            ("Error rate", rate(u.errorRate, u.count), rate(t.errorRate, t.count), change(comparison.change.errorRate), "0.3–0.5%", "< 0.2% (−60%)"),
        ]
        for row in rows {
            html += "<tr><th>\(e(row.0))</th><td class=\"num\">\(row.1)</td><td class=\"num\">\(row.2)</td><td class=\"num\">\(row.3)</td>"
                + "<td>\(e(row.4))</td><td>\(e(row.5))</td></tr>"
        }
        html += "</tbody></table>"
        if session.role == .admin {
            html += "<form method=\"post\" action=\"/console/actions/measure\" data-action=\"measure\"><input type=\"hidden\" name=\"csrf\" value=\"\(e(session.csrf))\">"
                + "<button type=\"submit\">Measure for 10 s (sample workload)</button></form>"
        }
        html += "<h2>Latency histogram</h2>" + histogram()
        return ConsoleHTML.response(ConsoleHTML.page(title: "Performance", session: session, body: html))
    }

    /// The retained queries' latencies in buckets, unified vs tenant databases, as inline SVG.
    func histogram() -> String {
        let bounds: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500]
        let labels = ["<1", "1–2", "2–5", "5–10", "10–20", "20–50", "50–100", "100–200", "200–500", "≥500"]
        var unified = [Double](repeating: 0, count: labels.count), tenant = unified
        for sample in api.monitor.samples() {
            let milliseconds = Double(sample.duration.components.seconds) * 1000 + Double(sample.duration.components.attoseconds) / 1e15
            let bucket = bounds.firstIndex { milliseconds < $0 } ?? bounds.count
            if sample.source == .unified { unified[bucket] += 1 } else { tenant[bucket] += 1 }
        }
        let groups = labels.indices.map { (labels[$0], [unified[$0], tenant[$0]]) }
        return ConsoleHTML.barChart(id: "histogram", groups: groups, series: ["unified", "tenant databases"], unit: "queries per ms bucket")
    }
}
