import Foundation
import Hummingbird
import Tenantry
import TenantryCore

/// A JSON request body of the admin API: every field optional unless the endpoint needs it,
/// unknown fields refused (a typo must not silently mean "all tenants").
protocol AdminRequestBody: Decodable, Sendable {
    /// The fields this body accepts.
    static var fields: Set<String> { get }
}

extension Request {
    /// Decodes the body as `T`: an empty body is `{}`; a body that is not a JSON object, has an
    /// unknown field or a field of the wrong type is a 400; one over the limit a 413.
    mutating func decodeAdminBody<T: AdminRequestBody>(_ type: T.Type, limit: Int) async throws -> T {
        let buffer = try await collectBody(upTo: limit)
        let data = buffer.readableBytes == 0 ? Data("{}".utf8) : Data(buffer.readableBytesView)
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw AdminError.invalidRequest("the body is not valid JSON")
        }
        guard let object = value.object else { throw AdminError.invalidRequest("the body must be a JSON object") }
        if let unknown = object.keys.sorted().first(where: { !T.fields.contains($0) }) {
            throw AdminError(
                .badRequest, code: "unknown_field",
                "unknown field '\(unknown.prefix(40))' (accepted: \(T.fields.sorted().joined(separator: ", ")))")
        }
        return try JSONDecoder().decode(T.self, from: data)
    }
}

/// Tenants and how many at once (`provision-all`, `migrate-data`, `verify-sync`, `cutover`, …).
struct TenantsRequest: AdminRequestBody {
    static let fields: Set<String> = ["tenants", "concurrency", "captureTimeoutSeconds", "chunkSize", "maxPauseMs", "server"]
    /// Tenant ids; omitted: every tenant the operation applies to.
    var tenants: [String]?
    var concurrency: Int?
    var captureTimeoutSeconds: Int?
    var chunkSize: Int?
    var maxPauseMs: Int?
    var server: String?
}

/// `enable-dual-write`.
struct DualWriteRequest: AdminRequestBody {
    static let fields: Set<String> = ["tenants", "enabled"]
    var tenants: [String]?
    /// `false` pauses sync instead (capture keeps the backlog). Default `true`.
    var enabled: Bool?
}

/// `activate-reads`.
struct ActivateReadsRequest: AdminRequestBody {
    static let fields: Set<String> = [
        "strategy", "percentage", "shops", "canary", "enableFallback", "verifyConsistency", "sampleRate",
    ]
    var strategy: String
    var percentage: Int?
    var shops: [String]?
    var canary: [String]?
    var enableFallback: Bool?
    var verifyConsistency: Bool?
    var sampleRate: Double?
}

/// `retire-legacy`.
struct RetireRequest: AdminRequestBody {
    static let fields: Set<String> = ["tenants", "dryRun", "confirm"]
    var tenants: [String]?
    var dryRun: Bool?
    /// Must be `true` unless `dryRun`: rows are deleted from the unified database.
    var confirm: Bool?
}

/// An integer field checked against a range (400 `invalid_argument` otherwise).
func checked(_ value: Int?, _ name: String, in range: ClosedRange<Int>, default fallback: Int) throws -> Int {
    guard let value else { return fallback }
    guard range.contains(value) else {
        throw AdminError(.badRequest, code: "invalid_argument", "\(name) must be from \(range.lowerBound) to \(range.upperBound)")
    }
    return value
}

/// Parses tenant ids from a request (400 `invalid_tenant_id` for a bad one, 400 for an empty list).
func parseTenants(_ values: [String]?, field: String = "tenants") throws -> [TenantID]? {
    guard let values else { return nil }
    guard !values.isEmpty else {
        throw AdminError(.badRequest, code: "invalid_argument", "\(field) must not be empty (omit it for every tenant)")
    }
    guard values.count <= 10_000 else { throw AdminError(.badRequest, code: "invalid_argument", "\(field): at most 10000 ids") }
    var ids: [TenantID] = []
    for value in values {
        do {
            let id = try TenantID(value)
            if !ids.contains(id) { ids.append(id) }
        } catch {
            throw AdminError(.badRequest, code: "invalid_tenant_id", "\(field): \(error.message)")
        }
    }
    return ids
}
