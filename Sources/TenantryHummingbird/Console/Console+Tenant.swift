import Foundation
import Hummingbird
import Tenantry
import TenantryCore

extension Console {
    /// `GET /console/tenants/<id>`: the tenant's phase and placement, its phase timeline (the
    /// audit log), rows copied, queue and lag (live, and lag over time), dead letters with their
    /// errors, latency before/after, and the actions an admin may run for it.
    func tenantPage(_ session: ConsoleSessions.Session, id text: String) async throws -> Response {
        let id: TenantID
        do { id = try TenantID(text) } catch { throw ConsoleError(.badRequest, error.message) }
        let fleet = try await fleet()
        guard let tenant = fleet.overview.tenants.first(where: { $0.id == id.rawValue }) else {
            throw ConsoleError(.notFound, "tenant \(id) is not in the catalog")
        }
        let e = ConsoleHTML.escape
        let key = "tenant.\(e(id.rawValue))."
        let live = Self.liveValues(fleet)
        let state = fleet.capture[id.rawValue]
        var html = "<p class=\"crumbs\"><a href=\"/console\">Fleet</a> › tenant</p>"
        html += "<h1>Tenant \(e(id.rawValue)) <small>\(e(fleet.names[id.rawValue] ?? ""))</small></h1>\n"
        html += "<section class=\"cards\">"
        html += card("phase", "<span id=\"tenant-phase\" class=\"badge phase-\(e(tenant.phase))\" data-badge=\"phase-\" data-live=\"\(key)phase\">\(e(live["tenant.\(id).phase"] ?? tenant.phase))</span>")
        html += card("placement", "\(e(tenant.placement)) on \(e(tenant.server))")
        html += card("database", e(tenant.database ?? "—") + (tenant.schemaVersion.map { " (schema \($0))" } ?? ""))
        html += card("rows copied", "<span id=\"rows-copied\" data-live=\"\(key)rowsCopied\">\(ConsoleHTML.count(tenant.rowsCopied))</span>")
        html += card("queue", "<span id=\"queue-depth\" data-live=\"\(key)queue\">\(state.map { String($0.queueDepth) } ?? "—")</span>")
        html += card("lag", "<span id=\"lag\" data-live=\"\(key)lag\">\(e(live["tenant.\(id).lag"] ?? "—"))</span>")
        html += card("sync", "<span id=\"sync\" data-live=\"\(key)sync\">\(e(live["tenant.\(id).sync"] ?? "not captured"))</span>")
        html += card("relay applied (all tenants)", "<span id=\"relay-applied\" data-live=\"relay.applied\">\(live["relay.applied"] ?? "—")</span>")
        html += "</section>\n"
        if let error = tenant.lastError { html += "<p class=\"error\" id=\"last-error\">Last error: \(ConsoleHTML.message(String(error.prefix(500))))</p>" }
        if session.role == .admin { html += actionForms(for: id, tenant: tenant, session: session) }

        html += "<section class=\"row\"><div><h2>Lag over time</h2>"
        let history = await cache.history(of: id.rawValue)
        html += ConsoleHTML.lineChart(id: "lag-chart", points: history.map { ($0.at, $0.lag) }, unit: "s lag") + "</div>"
        let comparison = api.monitor.compare(tenant: id.rawValue)
        html += "<div><h2>Latency before / after</h2>"
        html += ConsoleHTML.barChart(
            id: "latency-chart",
            groups: [("p50", [comparison.unified.p50Ms, comparison.tenantDatabases.p50Ms]),
                     ("p95", [comparison.unified.p95Ms, comparison.tenantDatabases.p95Ms]),
                     ("p99", [comparison.unified.p99Ms, comparison.tenantDatabases.p99Ms])],
            series: ["unified (\(comparison.unified.count) queries)", "tenant database (\(comparison.tenantDatabases.count))"], unit: "ms")
        html += "</div></section>\n"

        html += "<h2>Dead letters</h2>" + (try await deadLetters(id, count: state?.deadLetters ?? 0, installed: fleet.captureInstalled))
        html += "<h2>Timeline</h2><ol id=\"timeline\" class=\"timeline\">"
        let entries = try await api.operations.catalog.auditLog(tenant: id, limit: 200).reversed()
        if entries.isEmpty { html += "<li class=\"empty\">no audited action for this tenant yet</li>" }
        for entry in entries {
            html += "<li class=\"outcome-\(entry.outcome.rawValue)\"><time>\(ConsoleHTML.date(entry.at))</time> "
                + "<strong>\(e(entry.action))</strong> <span class=\"outcome\">\(entry.outcome.rawValue)</span> "
                + "<span class=\"actor\">by \(e(entry.actor))</span>\(Self.detailLine(entry.detail))</li>"
        }
        if let changed = tenant.phaseChangedAt {
            html += "<li class=\"current\"><time>\(ConsoleHTML.date(Date(timeIntervalSince1970: changed)))</time> "
                + "<strong>phase \(e(tenant.phase))</strong> (current)</li>"
        }
        html += "</ol>\n"
        return ConsoleHTML.response(ConsoleHTML.page(
            title: "Tenant \(id)", session: session, live: "/console/events?tenant=\(id.rawValue)", body: html))
    }

    private func card(_ name: String, _ value: String) -> String {
        "<div class=\"card\"><span class=\"count\">\(value)</span><span class=\"name\">\(ConsoleHTML.escape(name))</span></div>"
    }

    /// One form per action that applies to the tenant now.
    private func actionForms(for id: TenantID, tenant: FleetOverview.Tenant, session: ConsoleSessions.Session) -> String {
        let e = ConsoleHTML.escape
        var html = "<section class=\"actions\" id=\"actions\"><h2>Actions</h2>"
        for action in ConsoleAction.all where action.needsTenants {
            html += "<form method=\"post\" action=\"/console/actions/\(action.name)\" data-action=\"\(action.name)\" class=\"inline\">"
                + "<input type=\"hidden\" name=\"csrf\" value=\"\(e(session.csrf))\"><input type=\"hidden\" name=\"tenants\" value=\"\(e(id.rawValue))\">"
                + "<button type=\"submit\" title=\"\(e(action.help))\">\(e(action.title))</button></form> "
        }
        return html + "</section>\n"
    }

    private func deadLetters(_ id: TenantID, count: Int, installed: Bool) async throws -> String {
        guard installed, count > 0 else { return "<p id=\"dead-letters\">none</p>" }
        let letters = try await api.operations.move().deadLetters().list(tenants: [id])
        let e = ConsoleHTML.escape
        var html = "<table id=\"dead-letters\" class=\"data\"><thead><tr><th>id</th><th>table</th><th>operation</th><th>key</th>"
            + "<th>attempts</th><th>error</th><th>dead since</th></tr></thead><tbody>"
        for letter in letters.prefix(200) {
            html += "<tr><td>\(letter.id)</td><td>\(e(letter.table))</td><td>\(e(letter.operation))</td><td>\(e(String(letter.key.prefix(80))))</td>"
                + "<td class=\"num\">\(letter.attempts)</td><td class=\"error\">\(ConsoleHTML.message(String(letter.error.prefix(300))))</td>"
                + "<td>\(ConsoleHTML.date(letter.deadAt))</td></tr>"
        }
        return html + "</tbody></table>"
    }

    /// An audit entry's detail (`{"job": …, "tenants": …}`) as ` — job …, tenants …`.
    static func detailLine(_ detail: String) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(detail.utf8)) as? [String: Any], !object.isEmpty else { return "" }
        let text = object.keys.sorted().map { "\($0) \(object[$0].map { "\($0)" } ?? "")" }.joined(separator: ", ")
        return " <span class=\"detail\">— \(ConsoleHTML.escape(String(text.prefix(300))))</span>"
    }
}
