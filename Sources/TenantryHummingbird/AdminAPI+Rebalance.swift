import Foundation
import Hummingbird
import Tenantry
import TenantryCore

/// `rebalance/apply`.
struct RebalanceApplyRequest: AdminRequestBody {
    static let fields: Set<String> = ["concurrency", "maxPauseMs", "maxMoves", "tolerancePercent", "archive"]
    var concurrency: Int?
    var maxPauseMs: Int?
    var maxMoves: Int?
    var tolerancePercent: Int?
    /// `true`: archive each source database (pg_dump, in the service's archive directory) before it is dropped.
    var archive: Bool?
}

/// `servers/{name}/drain`.
struct DrainRequest: AdminRequestBody {
    static let fields: Set<String> = ["concurrency", "maxPauseMs", "archive"]
    var concurrency: Int?
    var maxPauseMs: Int?
    var archive: Bool?
}

/// What a rebalance or drain job returns: the plan it ran and what happened.
struct RebalanceJobResult: Encodable {
    var plan: RebalancePlanner.Plan
    var applied: RebalanceApplyReport
}

extension AdminAPI {
    /// `GET rebalance/plan`, `POST rebalance/apply` and `POST servers/{name}/drain` (the last two
    /// as jobs). The plan is made when the request arrives, so a drain without room, or a server
    /// that cannot be measured, is one error (409, 503) and no job; the job runs the moves
    /// (``Operations/applyRebalance(_:concurrency:maxPause:archiveDirectory:progress:)``).
    func addRebalanceRoutes<Context: ActorRequestContext>(to routes: some RouterMethods<Context>) {
        let limit = AdminRequestContext.bodyLimit
        routes.get("rebalance/plan") { request, context in
            try await audited(context, "rebalance-plan") {
                let maxMoves = try Self.queryInteger(request, "maxMoves", in: 0...1000) ?? 20
                let tolerance = try Self.queryInteger(request, "tolerancePercent", in: 0...100) ?? 10
                let sample = try Self.queryInteger(request, "sampleSeconds", in: 0...10) ?? 1
                let options = RebalancePlanner.Options(evenTolerance: Double(tolerance) / 100, maxMoves: maxMoves)
                let operations = try await operations(for: context)
                return try Self.json(try await operations.rebalancePlan(options: options, sample: .seconds(sample)))
            }
        }

        routes.post("rebalance/apply") { request, context in
            try await audited(context, "rebalance-apply") {
                var request = request
                let body = try await request.decodeAdminBody(RebalanceApplyRequest.self, limit: limit)
                let concurrency = try checked(body.concurrency, "concurrency", in: 1...64, default: 1)
                let pause = try checked(body.maxPauseMs, "maxPauseMs", in: 1...600_000, default: 500)
                let maxMoves = try checked(body.maxMoves, "maxMoves", in: 0...1000, default: 20)
                let tolerance = try checked(body.tolerancePercent, "tolerancePercent", in: 0...100, default: 10)
                let operations = try await operations(for: context)
                let report = try await operations.rebalancePlan(
                    options: RebalancePlanner.Options(evenTolerance: Double(tolerance) / 100, maxMoves: maxMoves))
                return try await submitMoves(context, kind: "rebalance-apply", report, operations, concurrency, pause, body.archive)
            }
        }

        routes.post("servers/:name/drain") { request, context in
            try await audited(context, "servers-drain") {
                var request = request
                let body = try await request.decodeAdminBody(DrainRequest.self, limit: limit)
                let concurrency = try checked(body.concurrency, "concurrency", in: 1...64, default: 1)
                let pause = try checked(body.maxPauseMs, "maxPauseMs", in: 1...600_000, default: 500)
                let name = context.parameters.get("name") ?? ""
                let operations = try await operations(for: context)
                guard name == ServerDirectory.defaultServerName || operations.servers.servers.contains(where: { $0.name == name }) else {
                    throw AdminError(.notFound, code: "server_not_found", "server '\(name.prefix(40))' is not registered")
                }
                let report = try await operations.drainPlan(name, sample: .zero)
                return try await submitMoves(context, kind: "servers-drain", report, operations, concurrency, pause, body.archive)
            }
        }
    }

    /// Submits the job that runs `report`'s moves.
    private func submitMoves(
        _ context: some ActorRequestContext, kind: String, _ report: RebalancePlanReport, _ operations: Operations,
        _ concurrency: Int, _ pause: Int, _ archive: Bool?
    ) async throws -> Response {
        let archiveDirectory = archive == true ? configuration.archiveDirectory : nil
        var detail = ["moves": "\(report.plan.moves.count)"]
        if let server = report.draining { detail["server"] = server }
        return try await accepted(context, kind: kind, detail: detail) { reporter in
            reporter.note("\(report.plan.moves.count) move(s) planned")
            let applied = try await operations.applyRebalance(
                report, concurrency: concurrency, maxPause: .milliseconds(pause), archiveDirectory: archiveDirectory
            ) { event in
                if event.tenant == nil { reporter.note(event.message) } else { reporter.update(event) }
            }
            return AdminJobs.Outcome(
                result: try JSONValue(encoding: RebalanceJobResult(plan: report.plan, applied: applied)),
                failure: Self.partialFailure(applied.failed))
        }
    }
}
