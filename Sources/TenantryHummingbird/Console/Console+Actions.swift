import Foundation
import Hummingbird
import Tenantry
import TenantryCore

extension Console {
    /// `POST /console/actions/<name>`: needs an admin session and the session's CSRF token; the
    /// first POST shows what will happen and asks for confirmation, the confirmed one (`confirm=yes`)
    /// submits the job, audits it with the operator's identity (per tenant, so each tenant's
    /// timeline shows it) and goes to the job's page.
    func action<Context: ActorRequestContext>(_ request: Request, name: String, context: Context) async throws -> Response {
        guard let session = sessions.session(for: request) else { throw ConsoleError(.unauthorized, "log in first: /console/login") }
        let form = try await ConsoleForm.read(request)
        do {
            try requireCSRF(form, session)
            guard session.role == .admin else { throw ConsoleError(.forbidden, "the viewer token is read-only: log in with the admin token to act") }
        } catch let error as ConsoleError {
            // Refusals of a logged-in session are audited (a forged form's trace, a viewer's attempt).
            try? await api.operations.catalog.audit(
                actor: session.actor, action: "console.\(String(name.prefix(40)))", outcome: .refused, detail: ["reason": error.message])
            throw error
        }
        guard let action = ConsoleAction.named(name) else { throw ConsoleError(.notFound, "no action '\(name.prefix(40))'") }
        let tenants = try await selectedTenants(form, action: action)
        let options = try ActionOptions(form, action: action)
        guard form.first("confirm") == "yes" else {
            return ConsoleHTML.response(ConsoleHTML.page(
                title: "Confirm \(action.title)", session: session, body: await confirmation(action, tenants: tenants, options: options, session: session)))
        }
        let operations = try await api.operations.refreshed().acting(as: session.actor)
        let work = try await work(action, tenants: tenants, options: options, operations: operations)
        let job = api.jobs.submit(kind: "console.\(action.name)", actor: session.actor, work)
        let detail = ["job": job.id, "tenants": AdminAPI.describe(tenants.isEmpty ? nil : tenants)].merging(options.audit) { a, _ in a }
        // One entry per tenant the action is for (each tenant's timeline shows it); a read strategy
        // other than a list is the whole fleet's, and gets one entry for the fleet.
        let perTenant = action.needsTenants && !(action.name == "reads" && !options.isList)
        try? await api.operations.catalog.audit(
            actor: session.actor, action: "console.\(action.name)", tenants: perTenant ? tenants : [], outcome: .ok, detail: detail)
        return ConsoleHTML.redirect("/console/jobs/\(job.id)")
    }

    /// The form's `tenants` (repeated, or separated by commas or spaces): valid ids in the catalog.
    private func selectedTenants(_ form: ConsoleForm, action: ConsoleAction) async throws -> [TenantID] {
        let texts = form.all("tenants").flatMap { $0.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" }) }.map(String.init)
        guard action.needsTenants else { return [] }
        guard !texts.isEmpty else { throw ConsoleError(.badRequest, "choose at least one tenant (the form field 'tenants')") }
        guard texts.count <= 10_000 else { throw ConsoleError(.badRequest, "at most 10,000 tenants at once") }
        var ids: [TenantID] = []
        for text in texts {
            do { ids.append(try TenantID(text)) } catch { throw ConsoleError(.badRequest, error.message) }
        }
        let known = Set(try await fleet().overview.tenants.map(\.id))
        if let unknown = ids.first(where: { !known.contains($0.rawValue) }) {
            throw ConsoleError(.notFound, "tenant \(unknown) is not in the catalog")
        }
        var seen = Set<TenantID>()
        return ids.filter { seen.insert($0).inserted }
    }

    private func confirmation(_ action: ConsoleAction, tenants: [TenantID], options: ActionOptions, session: ConsoleSessions.Session) async -> String {
        let e = ConsoleHTML.escape
        var html = "<h1>\(e(action.title))?</h1><p>\(e(action.help))</p>"
        if !tenants.isEmpty {
            let shown = tenants.prefix(100).map(\.rawValue).joined(separator: ", ")
            html += "<p id=\"confirm-tenants\">For \(tenants.count) tenant(s): <strong>\(e(shown))\(tenants.count > 100 ? ", …" : "")</strong></p>"
        }
        html += "<form id=\"confirm\" method=\"post\" action=\"/console/actions/\(action.name)\">"
            + "<input type=\"hidden\" name=\"csrf\" value=\"\(e(session.csrf))\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">"
        for tenant in tenants { html += "<input type=\"hidden\" name=\"tenants\" value=\"\(e(tenant.rawValue))\">" }
        if action.name == "reads" {
            let policy = (try? await fleet())?.overview.readPolicy
            html += "<p id=\"reads-effect\">The read policy is now <strong>\(e(Self.describe(policy)))</strong>. "
                + "With <code>shop-list</code> or <code>canary</code> the selected tenants are <em>added</em> to that list "
                + "(the others on it stay); <code>unified</code>, <code>tenant</code> and <code>percentage</code> apply to "
                + "<strong>every tenant</strong>, not only the selected ones.</p>"
            html += "<label>Strategy <select name=\"strategy\">"
            for strategy in ReadPolicy.Strategy.all.map(\.rawValue) {
                html += "<option value=\"\(strategy)\"\(strategy == options.strategy ? " selected" : "")>\(strategy)</option>"
            }
            html += "</select></label> <label>Percentage (strategy percentage) <input type=\"number\" name=\"percentage\" min=\"0\" max=\"100\" value=\"\(options.percentage)\"></label>"
        }
        html += " <button type=\"submit\" id=\"confirm-submit\">\(e(action.title))</button> <a href=\"/console\" id=\"cancel\">Cancel</a></form>"
        return html
    }

    /// The job's work for `action`.
    private func work(
        _ action: ConsoleAction, tenants: [TenantID], options: ActionOptions, operations: Operations
    ) async throws -> @Sendable (AdminJobs.Reporter) async throws -> AdminJobs.Outcome {
        let selection = TenantSelection.tenants(tenants)
        switch action.name {
        case "migrate-data":
            let move = try await operations.move()
            try await move.requireCapture()
            return AdminJobs.migrateData(
                move, selection, concurrency: 2, captureTimeout: .seconds(30), pauseSync: api.configuration.pauseSyncAfterCopy)
        case "verify":
            return AdminJobs.verify(try await operations.move(), selection, chunkSize: 10_000)
        case "reads":
            guard let strategy = ReadPolicy.Strategy(options.strategy) else { throw ConsoleError(.badRequest, "unknown strategy") }
            var change = Operations.ReadPolicyChange(strategy: strategy)
            change.percentage = strategy == .percentage ? options.percentage : nil
            // A list strategy adds the selection to the current list: the tenants already on it stay.
            let current = try await fleet().overview.readPolicy
            func union(_ list: [String]?) -> [TenantID] {
                var seen = Set<String>()
                return ((list ?? []) + tenants.map(\.rawValue)).filter { seen.insert($0).inserted }.compactMap { try? TenantID($0) }
            }
            if strategy == .shopList { change.shopIDs = union(current?.shops) }
            if strategy == .canary { change.canaryIDs = union(current?.canary) }
            do { try change.validate() } catch { throw ConsoleError(.badRequest, error.message) }
            let policy = change
            return { reporter in
                let report = try await operations.setReads(policy)
                reporter.update(done: 1, total: 1, message: "reads: \(strategy.rawValue)")
                return AdminJobs.Outcome(result: try JSONValue(encoding: report))
            }
        case "cutover":
            return AdminJobs.cutover(try await operations.move(), selection, maxPause: .milliseconds(500))
        case "rollback":
            return AdminJobs.rollback(try await operations.move(), tenants, maxPause: .seconds(5))
        case "retire-dry-run":
            return AdminJobs.retire(try await operations.move(), tenants, archiveDirectory: api.configuration.archiveDirectory, dryRun: true)
        case "replay-dead-letters":
            let move = try await operations.move()
            try await move.requireCapture()
            return { reporter in
                let replayed = try await move.deadLetters().replay(tenants: tenants)
                reporter.update(done: tenants.count, total: tenants.count, message: "\(replayed) dead letter(s) replayed")
                return AdminJobs.Outcome(result: .object(["replayed": .integer(Int64(replayed))]))
            }
        default:  // measure
            let monitor = api.monitor
            return { reporter in
                reporter.note("running the sample workload for 10 s")
                let report = try await operations.measurePerformance(tenants: nil, duration: .seconds(10), monitor: monitor)
                reporter.update(done: 1, total: 1, message: "measured")
                return AdminJobs.Outcome(result: try JSONValue(encoding: report))
            }
        }
    }
}

/// An action's options from its form (the read strategy and percentage for `reads`).
struct ActionOptions: Sendable {
    var strategy = "shop-list"
    var percentage = 10
    private var isReads = false

    init(_ form: ConsoleForm, action: ConsoleAction) throws {
        guard action.name == "reads" else { return }
        isReads = true
        if let strategy = form.first("strategy"), !strategy.isEmpty {
            guard ReadPolicy.Strategy(strategy) != nil else {
                throw ConsoleError(.badRequest, "unknown strategy '\(strategy.prefix(40))': use one of "
                    + ReadPolicy.Strategy.all.map(\.rawValue).joined(separator: ", "))
            }
            self.strategy = strategy
        }
        if let text = form.first("percentage"), !text.isEmpty {
            guard let value = Int(text), (0...100).contains(value) else { throw ConsoleError(.badRequest, "percentage must be from 0 to 100") }
            percentage = value
        }
    }

    var audit: [String: String] { isReads ? ["strategy": strategy, "percentage": "\(percentage)"] : [:] }

    /// A read strategy naming tenants (`shop-list`, `canary`).
    var isList: Bool { strategy == "shop-list" || strategy == "canary" }
}
