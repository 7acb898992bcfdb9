import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import Tenantry
import TenantryCore

/// `query`: a fleet query (``FleetQuery``), the options of `tenantry query`.
struct FleetQueryRequest: AdminRequestBody, TenantSelecting {
    static let fields: Set<String> = [
        "sql", "tenants", "all", "server", "combine", "format", "concurrency", "timeoutMs", "partial", "async"]
    /// The per-tenant SQL (required).
    var sql: String
    var tenants: [String]?
    var all: Bool?
    /// Only tenants served by this server.
    var server: String?
    /// SQL over the temporary table `results`.
    var combine: String?
    /// `json` (the only one: the CLI's other formats are for terminals).
    var format: String?
    var concurrency: Int?
    /// Statement timeout per tenant, in milliseconds (default 30000).
    var timeoutMs: Int?
    var partial: Bool?
    /// `true`: run as a job whatever the fleet's size.
    var async: Bool?
}

extension AdminAPI {
    /// Fleets above this many chosen tenants run as a job.
    static let inlineQueryTenants = 50

    /// `POST query`: runs the per-tenant SQL across the chosen tenants (read-only, through a
    /// router of the service's operations). Up to ``inlineQueryTenants`` tenants (and without
    /// `"async": true`) it answers 200 with `{"rows": […], "tenants": N, "missing": […]}` (the
    /// object of `tenantry query --format json`); larger fleets run as a job (202, `Location` names
    /// it; the job's result is the same object). Bad input is one 400; an unknown tenant 404.
    func addQueryRoute<Context: ActorRequestContext>(to routes: some RouterMethods<Context>) {
        let limit = AdminRequestContext.bodyLimit
        routes.post("query") { request, context in
            try await audited(context, "query") {
                var request = request
                let body = try await request.decodeAdminBody(FleetQueryRequest.self, limit: limit)
                if let format = body.format, format != "json" {
                    throw AdminError(.badRequest, code: "invalid_argument", "format must be json (the only format of the API)")
                }
                let selection: TenantSelection = try body.selection().map { .tenants($0) } ?? .all
                let operations = try await operations(for: context)
                let query = FleetQuery(
                    sql: body.sql, tenants: selection, server: body.server, combine: body.combine,
                    concurrency: try checked(body.concurrency, "concurrency", in: 1...64, default: 32),
                    timeout: .milliseconds(try checked(body.timeoutMs, "timeoutMs", in: 1...3_600_000, default: 30_000)),
                    partial: body.partial ?? false, discriminator: operations.configuration.naming.discriminator)
                try query.validate()
                let chosen = try await query.chooseTenants(operations.catalog).count
                if body.async != true, chosen <= Self.inlineQueryTenants {
                    let result = try await operations.fleetQuery(query)
                    var headers = HTTPFields()
                    headers[.contentType] = "application/json; charset=utf-8"
                    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: result.json())))
                }
                return try await accepted(context, kind: "query", detail: ["tenants": "\(chosen)"]) { reporter in
                    reporter.update(done: 0, total: chosen, message: "querying \(chosen) tenant(s)")
                    let done = NIOLockedValueBox(0)
                    let result = try await operations.fleetQuery(query) { batch in
                        let count = done.withLockedValue { $0 += 1; return $0 }
                        reporter.update(done: count, total: chosen, message: "tenant \(batch.tenant): \(batch.rows.count) row(s)")
                    }
                    reporter.update(
                        done: result.answered, total: chosen,
                        message: "\(result.rows.count) row(s) from \(result.answered) of \(chosen) tenant(s)")
                    return AdminJobs.Outcome(result: try JSONDecoder().decode(JSONValue.self, from: Data(result.json().utf8)))
                }
            }
        }
    }
}
