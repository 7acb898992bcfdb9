import Foundation
import Hummingbird
import Tenantry
import TenantryCore

/// A JSON request body of the admin API: every field optional unless the endpoint needs it,
/// fields the endpoint does not use refused (a typo, or another endpoint's field, must not be
/// silently ignored), `null` refused wherever it appears (it never means "everything").
protocol AdminRequestBody: Decodable, Sendable {
    /// The fields this body accepts.
    static var fields: Set<String> { get }
}

extension Request {
    /// Decodes the body as `T`: an empty body is `{}`; a body that is not a JSON object, has a
    /// field `T` does not accept, a `null` value or a field of the wrong type is a 400; one over
    /// the limit a 413.
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
            let accepted = T.fields.isEmpty ? "this endpoint takes no fields" : "accepted: \(T.fields.sorted().joined(separator: ", "))"
            throw AdminError(.badRequest, code: "unknown_field", "unknown field '\(unknown.prefix(40))' (\(accepted))")
        }
        // JSONDecoder reads a null as "absent", and absent tenants used to mean every tenant.
        if let null = object.keys.sorted().first(where: { object[$0] == .null }) {
            throw AdminError.invalidRequest("field '\(null)' must not be null (omit it, or give a value)")
        }
        return try JSONDecoder().decode(T.self, from: data)
    }
}

/// The tenants a request acts on: a non-empty `tenants` list, or `"all": true` — never implied.
protocol TenantSelecting {
    /// Tenant ids.
    var tenants: [String]? { get }
    /// `true`: every tenant the operation applies to.
    var all: Bool? { get }
}

extension TenantSelecting {
    /// The listed tenants, or `nil` for `"all": true`; 400 `invalid_argument` when the request says
    /// neither, or both.
    func selection() throws -> [TenantID]? {
        switch (tenants, all) {
        case (nil, nil):
            throw AdminError(.badRequest, code: "invalid_argument", "say which tenants: \"tenants\": [ids], or \"all\": true for every tenant")
        case (.some, .some):
            throw AdminError(.badRequest, code: "invalid_argument", "send \"tenants\" or \"all\", not both")
        case (nil, false?):
            throw AdminError(.badRequest, code: "invalid_argument", "\"all\" must be true (to choose tenants, send \"tenants\": [ids])")
        case (nil, true?):
            return nil
        case (let values?, nil):
            return try parseTenants(values)
        }
    }
}

/// `provision-all`.
struct ProvisionRequest: AdminRequestBody, TenantSelecting {
    static let fields: Set<String> = ["tenants", "all", "concurrency", "server"]
    var tenants: [String]?
    var all: Bool?
    var concurrency: Int?
    var server: String?
}

/// `migrate-data`.
struct MigrateDataRequest: AdminRequestBody, TenantSelecting {
    static let fields: Set<String> = ["tenants", "all", "concurrency", "captureTimeoutSeconds"]
    var tenants: [String]?
    var all: Bool?
    var concurrency: Int?
    var captureTimeoutSeconds: Int?
}

/// `verify-sync`.
struct VerifySyncRequest: AdminRequestBody, TenantSelecting {
    static let fields: Set<String> = ["tenants", "all", "chunkSize"]
    var tenants: [String]?
    var all: Bool?
    var chunkSize: Int?
}

/// `cutover`.
struct CutoverRequest: AdminRequestBody, TenantSelecting {
    static let fields: Set<String> = ["tenants", "all", "maxPauseMs"]
    var tenants: [String]?
    var all: Bool?
    var maxPauseMs: Int?
}

/// `rollback` (always named tenants).
struct RollbackRequest: AdminRequestBody {
    static let fields: Set<String> = ["tenants", "maxPauseMs"]
    var tenants: [String]?
    var maxPauseMs: Int?
}

/// `enable-dual-write`.
struct DualWriteRequest: AdminRequestBody, TenantSelecting {
    static let fields: Set<String> = ["tenants", "all", "enabled"]
    var tenants: [String]?
    var all: Bool?
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
struct RetireRequest: AdminRequestBody, TenantSelecting {
    static let fields: Set<String> = ["tenants", "all", "dryRun", "confirm"]
    var tenants: [String]?
    var all: Bool?
    /// Default `true`: only verify and count. `false` archives and deletes, with `confirm`.
    var dryRun: Bool?
    /// Must be `true` when `dryRun` is `false`: rows are deleted from the unified database.
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
        throw AdminError(.badRequest, code: "invalid_argument", "\(field) must not be empty")
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
