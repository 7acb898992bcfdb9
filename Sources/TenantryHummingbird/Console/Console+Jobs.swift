import Foundation
import Hummingbird
import Tenantry

extension Console {
    /// `GET /console/jobs`: every known job, newest first.
    func jobsPage(_ session: ConsoleSessions.Session) -> Response {
        let e = ConsoleHTML.escape
        var html = "<h1>Jobs</h1><table id=\"jobs\" class=\"data\"><thead><tr><th>job</th><th>kind</th><th>by</th><th>state</th>"
            + "<th>progress</th><th>submitted</th></tr></thead><tbody>"
        let jobs = api.jobs.all()
        if jobs.isEmpty { html += "<tr><td colspan=\"6\">no jobs since the service started</td></tr>" }
        for job in jobs.prefix(500) {
            html += "<tr data-job=\"\(e(job.id))\"><td><a href=\"/console/jobs/\(e(job.id))\">\(e(String(job.id.prefix(8))))</a></td>"
                + "<td>\(e(job.kind))</td><td>\(e(job.actor))</td><td><span class=\"badge state-\(job.state.rawValue)\">\(job.state.rawValue)</span></td>"
                + "<td>\(e(Self.progressText(job)))</td><td>\(ConsoleHTML.date(job.createdAt))</td></tr>"
        }
        html += "</tbody></table>"
        return ConsoleHTML.response(ConsoleHTML.page(title: "Jobs", session: session, body: html))
    }

    /// `GET /console/jobs/<id>`: the job's state and progress (live until it ends), then its
    /// result or error.
    func jobPage(_ session: ConsoleSessions.Session, id: String) throws -> Response {
        guard let job = api.jobs.job(id) else { throw ConsoleError(.notFound, "no job \(id.prefix(40)) (jobs are kept in memory until the service restarts)") }
        let e = ConsoleHTML.escape
        let finished = job.state == .succeeded || job.state == .failed
        let key = "job.\(e(job.id))."
        var html = "<p class=\"crumbs\"><a href=\"/console/jobs\">Jobs</a> › \(e(String(job.id.prefix(8))))</p>"
        html += "<h1>\(e(job.kind)) <span id=\"job-state\" class=\"badge state-\(job.state.rawValue)\" data-badge=\"state-\" data-live=\"\(key)state\""
            + "\(finished ? " data-final=\"true\"" : "")>\(job.state.rawValue)</span></h1>"
        html += "<p>Submitted by \(e(job.actor)) at \(ConsoleHTML.date(job.createdAt))"
            + (job.finishedAt.map { ", finished at \(ConsoleHTML.date($0))" } ?? "") + "</p>"
        let fraction = job.progress.total > 0 ? Double(job.progress.done) / Double(job.progress.total) : (job.state == .succeeded ? 1 : 0)
        html += "<p><progress id=\"job-bar\" max=\"1\" value=\"\(String(format: "%.3f", fraction))\" data-live-value=\"\(key)fraction\"></progress> "
            + "<span id=\"job-progress\" data-live=\"\(key)progress\">\(e(Self.progressText(job)))</span></p>"
        if let error = job.error {
            html += "<p class=\"error\" id=\"job-error\">\(e(error.code)): \(ConsoleHTML.message(error.message))</p>"
        }
        if let result = job.result, let data = try? AdminAPI.encode(result),
           let object = try? JSONSerialization.jsonObject(with: data),
           let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) {
            html += "<h2>Result</h2><pre id=\"job-result\">\(ConsoleHTML.message(String(decoding: pretty.prefix(200_000), as: UTF8.self)))</pre>"
        }
        return ConsoleHTML.response(ConsoleHTML.page(
            title: "Job \(job.kind)", session: session, live: finished ? nil : "/console/events?job=\(job.id)", body: html))
    }

    /// `12/40 — tenant 7: copying` style progress.
    static func progressText(_ job: AdminJobs.Snapshot) -> String {
        let counts = job.progress.total > 0 ? "\(job.progress.done)/\(job.progress.total) — " : ""
        return counts + ConsoleHTML.sanitize(job.progress.message)
    }

    /// A job's live values.
    static func liveValues(job: AdminJobs.Snapshot) -> [String: String] {
        let key = "job.\(job.id)."
        let fraction = job.progress.total > 0 ? Double(job.progress.done) / Double(job.progress.total) : (job.state == .succeeded ? 1 : 0)
        return [key + "state": job.state.rawValue, key + "progress": progressText(job), key + "fraction": String(format: "%.3f", fraction)]
    }
}
