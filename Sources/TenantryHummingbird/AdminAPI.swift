import Foundation
import Hummingbird
import Logging
import Tenantry
import TenantryCore

/// The admin API: the seeds' superadmin migration endpoints under `/api/superadmin/migration/`,
/// jobs under `/api/superadmin/jobs/`, and the unauthenticated `/health`, `/metrics` and
/// `/openapi.json`. Long operations run as ``AdminJobs``; every action goes to the audit log
/// with the caller's actor (`api:<token fingerprint>`).
public struct AdminAPI: Sendable {
    /// API settings.
    public struct Configuration: Sendable {
        /// The bearer token (`TENANTRY_ADMIN_TOKEN`).
        public var token: String
        /// Where `retire-legacy` writes its archives (never chosen by a client).
        public var archiveDirectory = "./archives"
        /// Fleet migrations for `provision-all` (`nil`: `TENANTRY_MIGRATIONS`).
        public var migrationsDirectory: String?
        /// Newly copied tenants start with sync paused (`ENABLE_DUAL_WRITE=false` set explicitly).
        public var pauseSyncAfterCopy = false
        /// The longest sample workload `GET performance?measureSeconds=` may run.
        public var maxMeasureSeconds = 30

        /// Settings with `token`.
        public init(token: String) {
            self.token = token
        }
    }

    /// The settings.
    public let configuration: Configuration
    /// The operations (catalog, servers, configuration); the actor is set per request.
    public let operations: Operations
    /// The job runner (run it as a service).
    public let jobs: AdminJobs
    /// What `/metrics` renders (`nil`: 404).
    public let metrics: PrometheusExporter?
    /// The monitor `GET performance` reports (and its sample workload records into).
    public let monitor: PerformanceMonitor
    /// The relay running in the service, if any (its statistics appear in `GET status`).
    public let relay: Relay?
    let logger: Logger

    /// An API over `operations`. Jobs are audited when they end.
    public init(
        configuration: Configuration, operations: Operations, metrics: PrometheusExporter?, monitor: PerformanceMonitor,
        relay: Relay? = nil, logger: Logger
    ) {
        self.configuration = configuration
        self.operations = operations
        self.metrics = metrics
        self.monitor = monitor
        self.relay = relay
        self.logger = logger
        let catalog = operations.catalog
        self.jobs = AdminJobs(logger: logger) { job in
            var detail = ["job": job.id, "state": job.state.rawValue]
            if let error = job.error { detail["error"] = "\(error.code): \(error.message.prefix(300))" }
            try? await catalog.audit(
                actor: job.actor, action: "api.\(job.kind)", outcome: job.state == .succeeded ? .ok : .failed, detail: detail)
        }
    }

    /// The admin API's `/api/superadmin` routes (migration endpoints, server moves and jobs), behind the JSON
    /// error handling and the bearer token, for a host application to mount under its own router:
    ///
    /// ```swift
    /// router.addRoutes(api.routes(context: AppContext.self), atPath: "/api/superadmin")
    /// ```
    ///
    /// The paths are relative (`migration/status`, `jobs/:id`); mount them at `/api/superadmin`
    /// for the paths of docs/openapi.json (a submitted job's `Location` names
    /// `/api/superadmin/jobs/{id}`). The host's context records the caller
    /// (``ActorRequestContext``); run ``jobs`` as a service of the host's application.
    public func routes<Context: ActorRequestContext>(context: Context.Type = Context.self) -> RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.add(middleware: JSONErrorMiddleware(bodyLimit: AdminRequestContext.bodyLimit))
        routes.add(middleware: BearerTokenMiddleware<Context>(token: configuration.token))
        addMigrationRoutes(to: routes.group("migration"))
        addDoctorRoute(to: routes)
        addRebalanceRoutes(to: routes)
        addQueryRoute(to: routes)
        addServerMoveRoutes(to: routes.group("moves"))
        routes.get("tenants") { request, context in
            let server = request.uri.queryParameters.get("server").map { String($0) }
            let tenants = try await operations(for: context).tenantListing()
            return try Self.json(["tenants": server.map { name in tenants.filter { $0.server == name } } ?? tenants])
        }
        routes.get("jobs") { _, _ in try Self.json(["jobs": jobs.all()]) }
        routes.get("jobs/:id") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let job = jobs.job(id) else {
                throw AdminError(.notFound, code: "job_not_found", "no job \(id.prefix(40))")
            }
            return try Self.json(job)
        }
        return routes
    }

    /// The unauthenticated routes: `/health` (details for the token's holder), `/openapi.json`
    /// and `/metrics` (404 without ``metrics``), for a host to mount at its root or elsewhere.
    public func publicRoutes<Context: RequestContext>(context: Context.Type = Context.self) -> RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.add(middleware: JSONErrorMiddleware(bodyLimit: AdminRequestContext.bodyLimit))
        let bearer = BearerTokenMiddleware<AdminRequestContext>(token: configuration.token)
        routes.get("health") { request, _ in try await health(detailed: bearer.accepts(request)) }
        routes.get("openapi.json") { _, _ in
            guard let document = OpenAPIDocument.json else {
                throw AdminError(.notFound, code: "not_found", "the OpenAPI document is not installed next to the executable")
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: document)))
        }
        routes.get("metrics") { _, _ in
            guard let metrics else { throw AdminError(.notFound, code: "not_found", "metrics are not enabled") }
            var headers = HTTPFields()
            headers[.contentType] = PrometheusExporter.contentType
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        return routes
    }

    /// The standalone router of `tenantry serve`: ``publicRoutes(context:)`` at the root,
    /// ``routes(context:)`` at `/api/superadmin`, the operator's ``Console`` (when given) at
    /// `/console`, with JSON errors for unknown paths and 405 for a declared path with an
    /// undeclared method.
    public func makeRouter(console: Console? = nil) -> Router<AdminRequestContext> {
        let router = Router(context: AdminRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(bodyLimit: AdminRequestContext.bodyLimit))
        router.add(middleware: MethodNotAllowedMiddleware())
        router.addRoutes(publicRoutes())
        router.addRoutes(routes(), atPath: "/api/superadmin")
        if let console { router.addRoutes(console.routes(), atPath: "/console") }
        return router
    }

    /// `GET /health`: 200 when the catalog answers and is current, else 503. Only the status
    /// unless `detailed` (the caller sent the admin token): the catalog version and the error,
    /// which may name a host, port or database, are not for anonymous callers.
    func health(detailed: Bool) async throws -> Response {
        do {
            try await operations.catalog.requireCurrent()
            let version = detailed ? try await operations.catalog.version() : nil
            return try Self.json(HealthResponse(status: "ok", catalogVersion: version))
        } catch {
            let mapped = AdminError.from(error, bodyLimit: AdminRequestContext.bodyLimit)
            return try Self.json(HealthResponse(status: "unavailable", error: detailed ? mapped.message : nil), status: .serviceUnavailable)
        }
    }

    // MARK: - Helpers

    /// A JSON response (keys sorted, dates ISO 8601), as every endpoint answers.
    public static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) throws -> Response {
        var headers = extra
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encode(value))))
    }

    /// The JSON of a response body: keys sorted, dates ISO 8601.
    static func encode(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(value)
    }

    /// The operations acting as the caller, with the server directory re-read.
    func operations(for context: some ActorRequestContext) async throws -> Operations {
        try await operations.refreshed().acting(as: context.actor ?? "api:unknown")
    }

    /// Audits a synchronous action.
    func audit(
        _ context: some ActorRequestContext, _ action: String, tenant: TenantID? = nil, outcome: AuditEntry.Outcome,
        _ detail: [String: String] = [:]
    ) async {
        try? await operations.catalog.audit(
            actor: context.actor ?? "api:unknown", action: "api.\(action)", tenant: tenant, outcome: outcome, detail: detail)
    }

    /// Runs a handler; a client error (4xx) after authentication is audited as refused.
    func audited(
        _ context: some ActorRequestContext, _ action: String, _ body: () async throws -> Response
    ) async throws -> Response {
        do {
            return try await body()
        } catch {
            let mapped = AdminError.from(error, bodyLimit: AdminRequestContext.bodyLimit)
            await audit(
                context, action, outcome: mapped.status.code < 500 ? .refused : .failed,
                ["error": "\(mapped.code): \(mapped.message.prefix(300))"])
            throw mapped
        }
    }

    /// Submits a job and answers 202 `{"job": id, "state": "queued"}` with its URL in `Location`.
    func accepted(
        _ context: some ActorRequestContext, kind: String, detail: [String: String] = [:],
        _ work: @escaping @Sendable (AdminJobs.Reporter) async throws -> AdminJobs.Outcome
    ) async throws -> Response {
        let job = jobs.submit(kind: kind, actor: context.actor ?? "api:unknown", work)
        var auditDetail = detail
        auditDetail["job"] = job.id
        await audit(context, "\(kind).submit", outcome: .ok, auditDetail)
        var headers = HTTPFields()
        headers[.location] = "/api/superadmin/jobs/\(job.id)"
        return try Self.json(AcceptedResponse(job: job.id, state: job.state.rawValue, kind: kind), status: .accepted, headers: headers)
    }

    /// Checks that each tenant is in the catalog (404 `tenant_not_found` otherwise).
    func requireKnown(_ ids: [TenantID]?, _ operations: Operations) async throws {
        for id in ids ?? [] where try await operations.catalog.tenant(id) == nil {
            throw AdminError.tenantNotFound(id)
        }
    }
}
