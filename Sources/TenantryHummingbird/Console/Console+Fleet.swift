import Foundation
import Hummingbird
import Tenantry
import TenantryCore

extension Console {
    /// `GET /console`: tenants by phase and placement, the filterable tenant table (with
    /// checkboxes for actions), servers with their connections against the cap, the read policy,
    /// the relay's counters and running jobs.
    func fleetPage(_ session: ConsoleSessions.Session, _ request: Request) async throws -> Response {
        let fleet = try await fleet()
        return ConsoleHTML.response(ConsoleHTML.page(
            title: "Fleet", session: session, live: "/console/events", body: renderFleet(fleet, session: session)))
    }

    /// The fleet page's body (separate for the benchmark: it is the server time of a render).
    func renderFleet(_ fleet: ConsoleFleet, session: ConsoleSessions.Session) -> String {
        let e = ConsoleHTML.escape
        let live = Self.liveValues(fleet).merging(Self.liveValues(jobs: api.jobs.all())) { _, job in job }
        var html = "<h1>Fleet <small>\(ConsoleHTML.count(fleet.overview.tenants.count)) tenants</small></h1>\n"
        html += "<section class=\"cards\" id=\"phase-counts\" aria-label=\"tenants by phase\"><div class=\"legend\">by phase</div>"
        let byPhase = fleet.byPhase
        for phase in MovePhase.all.map(\.rawValue) {
            html += "<div class=\"card phase-\(phase)\" data-phase=\"\(phase)\"><span class=\"count\" data-live=\"phase.\(phase)\">"
                + "\(byPhase[phase] ?? 0)</span><span class=\"name\">\(phase)</span></div>"
        }
        html += "</section>\n<section class=\"cards\" id=\"placement-counts\" aria-label=\"tenants by placement\"><div class=\"legend\">by placement</div>"
        for (placement, count) in fleet.byPlacement.sorted(by: { $0.key < $1.key }) {
            html += "<div class=\"card\" data-placement=\"\(e(placement))\"><span class=\"count\">\(count)</span><span class=\"name\">\(e(placement))</span></div>"
        }
        html += "</section>\n"
        html += "<section class=\"row\"><div><h2>Relay</h2>" + relaySummary(fleet, live: live) + "</div>"
        html += "<div><h2>Reads</h2><p id=\"read-policy\">\(e(Self.describe(fleet.overview.readPolicy)))</p></div>"
        html += "<div><h2>Jobs</h2><p>running <span id=\"jobs-running\" data-live=\"jobs.running\">\(live["jobs.running"] ?? "0")</span>, "
            + "queued <span data-live=\"jobs.queued\">\(live["jobs.queued"] ?? "0")</span> · <a href=\"/console/jobs\">all jobs</a></p>"
            + activeJobs() + "</div></section>\n"
        html += serversTable(fleet, live: live)
        html += "<h2>Tenants</h2>\n"
        if session.role == .admin {
            html += "<form id=\"fleet-actions\" method=\"post\" action=\"/console/actions/verify\" class=\"actions\">"
                + "<input type=\"hidden\" name=\"csrf\" value=\"\(e(session.csrf))\"><span>Selected tenants:</span>"
            for action in ConsoleAction.all where action.fleet {
                html += "<button type=\"submit\" formaction=\"/console/actions/\(action.name)\" data-action=\"\(action.name)\">\(e(action.title))</button>"
            }
            html += "</form>\n"
        }
        html += "<p><input type=\"search\" id=\"filter\" placeholder=\"Filter: id, name, phase, server, error…\" aria-label=\"Filter tenants\"> "
            + "<span id=\"filter-count\"></span></p>\n"
        html += "<table id=\"tenants\" class=\"data\"><thead><tr>"
        if session.role == .admin { html += "<th><input type=\"checkbox\" id=\"select-all\" aria-label=\"Select all shown\"></th>" }
        html += "<th>id</th><th>name</th><th>phase</th><th>placement</th><th>server</th><th>database</th><th>schema</th>"
            + "<th>queue</th><th>lag</th><th>dead letters</th><th>last error</th></tr></thead><tbody>\n"
        for tenant in fleet.overview.tenants {
            let id = e(tenant.id)
            let state = fleet.capture[tenant.id]
            html += "<tr data-tenant=\"\(id)\">"
            if session.role == .admin {
                html += "<td><input type=\"checkbox\" name=\"tenants\" value=\"\(id)\" form=\"fleet-actions\" aria-label=\"select \(id)\"></td>"
            }
            html += "<td><a href=\"/console/tenants/\(id)\">\(id)</a></td><td>\(e(fleet.names[tenant.id] ?? ""))</td>"
            html += "<td class=\"phase\"><span class=\"badge phase-\(e(tenant.phase))\" data-badge=\"phase-\" data-live=\"tenant.\(id).phase\">\(e(live["tenant.\(tenant.id).phase"] ?? tenant.phase))</span></td>"
            html += "<td>\(e(tenant.placement))</td><td class=\"server\">\(e(tenant.server))</td><td>\(e(tenant.database ?? "—"))</td>"
            html += "<td>\(tenant.schemaVersion.map(String.init) ?? "—")</td>"
            html += "<td class=\"queue num\" data-live=\"tenant.\(id).queue\">\(state.map { String($0.queueDepth) } ?? "—")</td>"
            html += "<td class=\"lag num\" data-live=\"tenant.\(id).lag\">\(e(live["tenant.\(tenant.id).lag"] ?? "—"))</td>"
            html += "<td class=\"dead num\" data-live=\"tenant.\(id).dead\">\(state.map { String($0.deadLetters) } ?? "—")</td>"
            html += "<td class=\"error\">\(ConsoleHTML.message(String((tenant.lastError ?? "").prefix(160))))</td></tr>\n"
        }
        html += "</tbody></table>\n"
        return html
    }

    /// Running and queued jobs with their progress (live), newest first.
    func activeJobs() -> String {
        let e = ConsoleHTML.escape
        let active = api.jobs.all().filter { $0.state == .running || $0.state == .queued }.prefix(10)
        guard !active.isEmpty else { return "" }
        var html = "<ul id=\"active-jobs\">"
        for job in active {
            let key = "job.\(e(job.id))."
            html += "<li><a href=\"/console/jobs/\(e(job.id))\">\(e(job.kind))</a> "
                + "<span class=\"badge state-\(job.state.rawValue)\" data-badge=\"state-\" data-live=\"\(key)state\">\(job.state.rawValue)</span> "
                + "<span data-live=\"\(key)progress\">\(e(Self.progressText(job)))</span></li>"
        }
        return html + "</ul>"
    }

    func relaySummary(_ fleet: ConsoleFleet, live: [String: String]) -> String {
        guard fleet.relay != nil else {
            return "<p id=\"relay\">not running in this process (<code>tenantry sync run</code> runs it elsewhere)</p>"
        }
        return "<p id=\"relay\">applied <strong id=\"relay-applied\" data-live=\"relay.applied\">\(live["relay.applied"] ?? "0")</strong>, "
            + "dead-lettered <span data-live=\"relay.deadLettered\">\(live["relay.deadLettered"] ?? "0")</span>, "
            + "retried <span data-live=\"relay.retried\">\(live["relay.retried"] ?? "0")</span>, "
            + "connection failures <span data-live=\"relay.connectionFailures\">\(live["relay.connectionFailures"] ?? "0")</span></p>"
    }

    func serversTable(_ fleet: ConsoleFleet, live: [String: String]) -> String {
        let e = ConsoleHTML.escape
        var html = "<h2>Servers</h2><table id=\"servers\" class=\"data\"><thead><tr><th>server</th><th>tenant databases</th>"
            + "<th>connections</th><th>cap</th><th>use</th><th>byte budget</th></tr></thead><tbody>"
        let databases = fleet.databasesByServer
        var rows: [(name: String, cap: Int?, budget: Int64?)] = [(ServerDirectory.defaultServerName, api.operations.configuration.pool.maxPerServer, nil)]
        rows += fleet.overview.servers.filter { $0.name != ServerDirectory.defaultServerName }.map { ($0.name, $0.maxConnections, $0.maxBytes) }
        for row in rows {
            let name = e(row.name)
            let open = fleet.connections[row.name]
            let use = open.flatMap { open in row.cap.map { cap in cap > 0 ? "\(open * 100 / cap)%" : "—" } } ?? "—"
            html += "<tr data-server=\"\(name)\"><td>\(name)</td><td class=\"num\">\(databases[row.name] ?? 0)</td>"
                + "<td class=\"num\" data-live=\"server.\(name).connections\">\(open.map(String.init) ?? (fleet.connectionsSampled ? "unreachable" : "…"))</td>"
                + "<td class=\"num\">\(row.cap.map(String.init) ?? "—")</td><td class=\"num\" data-live=\"server.\(name).use\">\(use)</td>"
                + "<td>\(row.budget.map { e(ByteSize.format($0)) } ?? "none")</td></tr>"
        }
        return html + "</tbody></table>\n"
    }

    /// The read policy in a line.
    static func describe(_ policy: FleetOverview.Policy?) -> String {
        guard let policy else { return "unified (no policy yet)" }
        var text = policy.strategy
        switch policy.strategy {
        case "percentage": text += " \(policy.percentage)%"
        case "shop-list": text += ": " + policy.shops.prefix(20).joined(separator: ", ") + (policy.shops.count > 20 ? ", …" : "")
        case "canary": text += ": " + policy.canary.prefix(20).joined(separator: ", ")
        default: break
        }
        return text + (policy.fallback ? " (fallback to unified on errors)" : "")
    }

    /// Every live value of the fleet, by the key pages carry in `data-live` (jobs: ``liveValues(jobs:)``).
    static func liveValues(_ fleet: ConsoleFleet) -> [String: String] {
        var values: [String: String] = [:]
        values.reserveCapacity(fleet.overview.tenants.count * 5 + 32)
        let byPhase = fleet.byPhase
        for phase in MovePhase.all.map(\.rawValue) { values["phase.\(phase)"] = String(byPhase[phase] ?? 0) }
        for tenant in fleet.overview.tenants {
            let key = "tenant.\(tenant.id)."
            values[key + "phase"] = tenant.serverMove.map { "\(tenant.phase) · moving to \(tenant.serverMoveTarget ?? "?") (\($0))" } ?? tenant.phase
            values[key + "rowsCopied"] = ConsoleHTML.count(tenant.rowsCopied)
            if let state = fleet.capture[tenant.id] {
                values[key + "queue"] = String(state.queueDepth)
                values[key + "lag"] = state.queueDepth == 0 ? "0 s" : ConsoleHTML.seconds(state.lagSeconds)
                values[key + "dead"] = String(state.deadLetters)
                values[key + "sync"] = state.syncPaused ? "paused" + (state.pausedReason.map { ": \(ConsoleHTML.sanitize(String($0.prefix(120))))" } ?? "") : (state.capturing ? "capturing" : "off")
            }
        }
        if let relay = fleet.relay {
            values["relay.applied"] = ConsoleHTML.count(relay.applied)
            values["relay.deadLettered"] = ConsoleHTML.count(relay.deadLettered)
            values["relay.retried"] = ConsoleHTML.count(relay.retried)
            values["relay.connectionFailures"] = ConsoleHTML.count(relay.connectionFailures)
        }
        for (server, open) in fleet.connections { values["server.\(server).connections"] = String(open) }
        values["updated"] = ConsoleHTML.date(fleet.at)
        return values
    }

    /// The jobs' live values: how many run and wait, and each of the newest 20 (the active ones
    /// and those that ended lately), which the fleet page may show.
    static func liveValues(jobs: [AdminJobs.Snapshot]) -> [String: String] {
        var values: [String: String] = [:]
        for job in jobs.prefix(20) { values.merge(liveValues(job: job)) { _, new in new } }
        values["jobs.running"] = String(jobs.filter { $0.state == .running }.count)
        values["jobs.queued"] = String(jobs.filter { $0.state == .queued }.count)
        return values
    }
}
