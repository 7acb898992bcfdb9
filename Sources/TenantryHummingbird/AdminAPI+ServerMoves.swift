import Foundation
import Hummingbird
import Tenantry
import TenantryCore

extension AdminAPI {
    /// `/api/superadmin/moves…`: server moves (`tenantry move …`). `GET moves[?tenant=ID]` answers
    /// at once; `POST moves/start` and `POST moves/{tenant}/verify|switch|reverse|complete|cancel`
    /// run as jobs.
    func addServerMoveRoutes<Context: ActorRequestContext>(to group: RouterGroup<Context>) {
        let limit = AdminRequestContext.bodyLimit
        group.get { request, context in
            let tenant = try request.uri.queryParameters.get("tenant").map { try Self.tenantID(String($0)) }
            let operations = try await operations(for: context)
            try await requireKnown(tenant.map { [$0] }, operations)
            let moves = try await operations.move().withServerMoves { try await $0.status(tenant) }
            return try Self.json(ServerMovesResponse(moves: moves))
        }

        group.post("start") { request, context in
            try await audited(context, "moves.start") {
                var request = request
                let body = try await request.decodeAdminBody(ServerMoveStartRequest.self, limit: limit)
                let concurrency = try checked(body.concurrency, "concurrency", in: 1...16, default: 2)
                let operations = try await operations(for: context)
                try Self.requireServer(body.to, operations)
                let ids: [TenantID]
                switch (try parseTenants(body.tenants), body.allFrom) {
                case (let listed?, nil):
                    try await requireKnown(listed, operations)
                    ids = listed
                case (nil, let source?):
                    try Self.requireServer(source, operations)
                    guard source != body.to else {
                        throw AdminError(.badRequest, code: "invalid_argument", "allFrom and to name the same server")
                    }
                    ids = try await operations.tenants(onServer: source)
                    guard !ids.isEmpty else {
                        throw AdminError(.badRequest, code: "invalid_argument", "no tenant database on server '\(source.prefix(40))'")
                    }
                default:
                    throw AdminError(.badRequest, code: "invalid_argument", "send \"tenants\": [ids] or \"allFrom\": server (one of them)")
                }
                let move = try await operations.move()
                let (server, reason) = (body.to, body.reason)
                return try await accepted(context, kind: "moves.start", detail: ["tenants": Self.describe(ids), "to": server]) { reporter in
                    try await move.withServerMoves { moves in
                        var result = ServerMoveStartResult(targetServer: server, started: [], failed: [:])
                        try await forEachConcurrently(ids, concurrency: concurrency, { id in
                            try await moves.start(id, to: server, reason: reason) { progress in
                                reporter.note("tenant \(progress.tenant): table \(progress.tablesDone + 1)/\(progress.tablesTotal) "
                                    + "\(progress.table), \(progress.rows) rows")
                            }
                        }) { index, outcome, done in
                            switch outcome {
                            case .success(let report):
                                result.started.append(report)
                                reporter.update(done: done, total: ids.count, message: "tenant \(ids[index]): moving to \(server)")
                            case .failure(let error):
                                let message = AdminError.from(error, bodyLimit: limit).message
                                result.failed[ids[index].rawValue] = message
                                reporter.update(done: done, total: ids.count, message: "tenant \(ids[index]): FAILED: \(message)")
                            }
                        }
                        result.started.sort { $0.tenant < $1.tenant }
                        return AdminJobs.Outcome(result: try JSONValue(encoding: result), failure: Self.partialFailure(result.failed))
                    }
                }
            }
        }

        group.post(":tenant/verify") { request, context in
            try await serverMoveJob(
                request, context, "verify", decode: { try await $0.decodeAdminBody(ServerMoveVerifyRequest.self, limit: limit) }
            ) { body, tenant, moves in
                let chunkSize = try checked(body.chunkSize, "chunkSize", in: 2...10_000_000, default: 10_000)
                return { reporter in
                    reporter.note("tenant \(tenant): catching up")
                    let report = try await moves { moves in
                        try await moves.catchUp(tenant)
                        return try await moves.verify(tenant, chunkSize: chunkSize)
                    }
                    reporter.update(done: 1, total: 1, message: "tenant \(tenant): \(report.equal ? "equal" : "differs")")
                    let failure = report.equal ? nil : AdminError(
                        .conflict, code: "not_equal",
                        "tenant \(tenant): \(report.tables.reduce(0) { $0 + $1.differenceCount }) row(s) differ between source and target")
                    return AdminJobs.Outcome(result: try JSONValue(encoding: report), failure: failure)
                }
            }
        }
        for (verb, reversed) in [("switch", false), ("reverse", true)] {
            group.post(RouterPath(":tenant/\(verb)")) { request, context in
                try await serverMoveJob(
                request, context, verb, decode: { try await $0.decodeAdminBody(ServerMoveSwitchRequest.self, limit: limit) }
            ) { body, tenant, moves in
                    let pause = Duration.milliseconds(try checked(body.maxPauseMs, "maxPauseMs", in: 1...600_000, default: 500))
                    return { reporter in
                        let report = try await moves { moves in
                            reversed ? try await moves.reverse(tenant, maxPause: pause) : try await moves.switchTraffic(tenant, maxPause: pause)
                        }
                        reporter.update(done: 1, total: 1, message: "tenant \(tenant): writes on \(report.to), "
                            + "paused \(String(format: "%.1f", report.pauseMilliseconds)) ms")
                        return AdminJobs.Outcome(result: try JSONValue(encoding: report))
                    }
                }
            }
        }
        group.post(":tenant/complete") { request, context in
            let directory = configuration.archiveDirectory
            return try await serverMoveJob(
                request, context, "complete", decode: { try await $0.decodeAdminBody(ServerMoveCompleteRequest.self, limit: limit) }
            ) { body, tenant, moves in
                let archive = body.archive == true ? directory : nil
                return { reporter in
                    let report = try await moves { try await $0.complete(tenant, archiveDirectory: archive) }
                    reporter.update(done: 1, total: 1, message: "tenant \(tenant): complete on \(report.server)")
                    return AdminJobs.Outcome(result: try JSONValue(encoding: report))
                }
            }
        }
        group.post(":tenant/cancel") { request, context in
            try await serverMoveJob(
                request, context, "cancel", decode: { try await $0.decodeAdminBody(EmptyRequest.self, limit: limit) }
            ) { _, tenant, moves in
                { reporter in
                    let report = try await moves { try await $0.cancel(tenant) }
                    reporter.update(done: 1, total: 1, message: "tenant \(tenant): cancelled, stays on \(report.server)")
                    return AdminJobs.Outcome(result: try JSONValue(encoding: report))
                }
            }
        }
    }

    /// A one-tenant server-move job: the body decoded and checked (`prepare` throws a 400 before
    /// the job is queued), the tenant parsed (400) and known (404), then the work as job
    /// `moves.<verb>`.
    private func serverMoveJob<Context: ActorRequestContext, Body: AdminRequestBody>(
        _ request: Request, _ context: Context, _ verb: String, decode: (inout Request) async throws -> Body,
        prepare: (Body, TenantID, ServerMovesRunner) throws -> @Sendable (AdminJobs.Reporter) async throws -> AdminJobs.Outcome
    ) async throws -> Response {
        try await audited(context, "moves.\(verb)") {
            var request = request
            let body = try await decode(&request)
            let tenant = try Self.tenantID(context.parameters.get("tenant") ?? "")
            let operations = try await operations(for: context)
            try await requireKnown([tenant], operations)
            let runner = ServerMovesRunner(move: try await operations.move())
            let work = try prepare(body, tenant, runner)
            return try await accepted(context, kind: "moves.\(verb)", detail: ["tenants": tenant.rawValue], work)
        }
    }

    /// A tenant id from a path or query (400 `invalid_tenant_id`).
    static func tenantID(_ text: String) throws -> TenantID {
        do { return try TenantID(text) } catch { throw AdminError(.badRequest, code: "invalid_tenant_id", error.message) }
    }

    /// `name` is the default server or a registered one (400 `invalid_argument` otherwise).
    static func requireServer(_ name: String, _ operations: Operations) throws {
        guard name == ServerDirectory.defaultServerName || operations.servers.servers.contains(where: { $0.name == name }) else {
            throw AdminError(.badRequest, code: "invalid_argument", "server '\(name.prefix(40))' is not registered")
        }
    }
}

/// Runs a job's server-move operation with a relay of its own, closed afterwards.
struct ServerMovesRunner: Sendable {
    let move: MoveOperations

    func callAsFunction<Result: Sendable>(_ body: (ServerMoves) async throws -> Result) async throws -> Result {
        try await move.withServerMoves { try await body($0) }
    }
}

/// `GET moves`.
struct ServerMovesResponse: Encodable {
    var moves: [ServerMoves.Status]
}

/// The result of a `moves.start` job.
struct ServerMoveStartResult: Encodable, Sendable {
    var targetServer: String
    var started: [ServerMoves.StartReport]
    var failed: [String: String]
}

/// `moves/start`: `tenants` or `allFrom`, and `to`.
struct ServerMoveStartRequest: AdminRequestBody {
    static let fields: Set<String> = ["tenants", "allFrom", "to", "concurrency", "reason"]
    var tenants: [String]?
    /// Every tenant database on this server.
    var allFrom: String?
    /// The target server.
    var to: String
    var concurrency: Int?
    var reason: String?
}

/// `moves/{tenant}/verify`.
struct ServerMoveVerifyRequest: AdminRequestBody {
    static let fields: Set<String> = ["chunkSize"]
    var chunkSize: Int?
}

/// `moves/{tenant}/switch` and `reverse`.
struct ServerMoveSwitchRequest: AdminRequestBody {
    static let fields: Set<String> = ["maxPauseMs"]
    var maxPauseMs: Int?
}

/// `moves/{tenant}/complete`.
struct ServerMoveCompleteRequest: AdminRequestBody {
    static let fields: Set<String> = ["archive"]
    /// `true`: a pg_dump archive of the source in the service's archive directory before it is dropped.
    var archive: Bool?
}
