import Foundation
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import Testing

/// docs/openapi.json is the source of truth for the admin API's bodies: every request type the
/// API decodes accepts exactly the document's fields, requires exactly its required ones and
/// rejects a value of another type; every response type encodes only the document's fields, all
/// its required ones, with the document's types.
@Suite("OpenAPI document: request and response types match its schemas")
struct OpenAPIConformanceTests {
    /// Every request body the admin API decodes: its schema in the document (`nil`: no body) and the
    /// endpoint (under `/api/superadmin/migration/` unless it is a whole path).
    static let requests: [(type: any AdminRequestBody.Type, schema: String?, endpoint: String)] = [
        (ProvisionRequest.self, "ProvisionRequest", "provision-all"),
        (MigrateDataRequest.self, "MigrateDataRequest", "migrate-data"),
        (DualWriteRequest.self, "DualWriteRequest", "enable-dual-write"),
        (VerifySyncRequest.self, "VerifySyncRequest", "verify-sync"),
        (ActivateReadsRequest.self, "ActivateReadsRequest", "activate-reads"),
        (EmptyRequest.self, nil, "rollback-reads"),
        (RetireRequest.self, "RetireRequest", "retire-legacy"),
        (CutoverRequest.self, "CutoverRequest", "cutover"),
        (RollbackRequest.self, "RollbackRequest", "rollback"),
        (RebalanceApplyRequest.self, "RebalanceApplyRequest", "/api/superadmin/rebalance/apply"),
        (DrainRequest.self, "DrainRequest", "/api/superadmin/servers/{name}/drain"),
        (FleetQueryRequest.self, "FleetQueryRequest", "/api/superadmin/query"),
        // Server moves (an endpoint starting with "/" is a full path).
        (ServerMoveStartRequest.self, "ServerMoveStartRequest", "/api/superadmin/moves/start"),
        (ServerMoveVerifyRequest.self, "ServerMoveVerifyRequest", "/api/superadmin/moves/{tenant}/verify"),
        (ServerMoveSwitchRequest.self, "ServerMoveSwitchRequest", "/api/superadmin/moves/{tenant}/switch"),
        (ServerMoveSwitchRequest.self, "ServerMoveSwitchRequest", "/api/superadmin/moves/{tenant}/reverse"),
        (ServerMoveCompleteRequest.self, "ServerMoveCompleteRequest", "/api/superadmin/moves/{tenant}/complete"),
        (EmptyRequest.self, nil, "/api/superadmin/moves/{tenant}/cancel"),
    ]

    /// Fields the document requires that the type leaves optional because the handler refuses
    /// their absence itself, with a message saying what to send (400 `invalid_argument`, tested
    /// in AdminAPIErrorTests).
    static let requiredByHandler: Set<String> = ["rollback.tenants"]

    let document: [String: Any]
    var schemas: [String: Any] { (document["components"] as? [String: Any])?["schemas"] as? [String: Any] ?? [:] }

    init() throws {
        let json = try #require(OpenAPIDocument.json)
        document = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    @Test("the table above lists every type the sources decode, and each endpoint's requestBody is its schema")
    func everyRequestTypeIsListed() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/TenantryHummingbird").standardized
        var decoded: Set<String> = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path) where file.hasSuffix(".swift") {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for part in text.components(separatedBy: "decodeAdminBody(").dropFirst() {
                if let name = part.split(separator: ".").first, name.first?.isUppercase == true { decoded.insert(String(name)) }
            }
        }
        let listed = Set(Self.requests.map { "\($0.type)" })
        #expect(decoded.count > 5 && decoded == listed, "decoded: \(decoded.sorted()), listed: \(listed.sorted())")

        let paths = try #require(document["paths"] as? [String: [String: Any]])
        for (_, schema, endpoint) in Self.requests {
            let path = endpoint.hasPrefix("/") ? endpoint : "/api/superadmin/migration/\(endpoint)"
            let post = try #require(paths[path]?["post"] as? [String: Any], "\(endpoint)")
            let body = ((post["requestBody"] as? [String: Any])?["content"] as? [String: Any])?["application/json"] as? [String: Any]
            let reference = (body?["schema"] as? [String: Any])?["$ref"] as? String
            #expect(reference == schema.map { "#/components/schemas/\($0)" }, "\(endpoint)")
        }
        var referenced: Set<String> = []
        for item in paths.values {
            for case let operation as [String: Any] in item.values {
                let body = ((operation["requestBody"] as? [String: Any])?["content"] as? [String: Any])?["application/json"] as? [String: Any]
                if let reference = (body?["schema"] as? [String: Any])?["$ref"] as? String { referenced.insert(reference) }
            }
        }
        #expect(referenced == Set(Self.requests.compactMap { $0.schema.map { "#/components/schemas/\($0)" } }))
    }

    @Test("each request type: the schema's fields, its required fields, its types; tenants or all where the schema says oneOf")
    func requestTypes() throws {
        for (type, name, endpoint) in Self.requests {
            let schema = try name.map { try #require(schemas[$0] as? [String: Any], "\($0)") } ?? ["type": "object", "properties": [String: Any]()]
            let properties = Self.properties(schema)
            #expect(Set(properties.keys) == type.fields, "\(endpoint): document \(properties.keys.sorted()), type \(type.fields.sorted())")

            let full = properties.mapValues(sample)
            #expect(decodeError(type, full) == nil, "\(endpoint): a body with every field: \(String(describing: decodeError(type, full)))")
            let required = Self.required(schema)
            for key in properties.keys.sorted() {
                var without = full
                without[key] = nil
                let missing = decodeError(type, without)
                let decoderRequires = required.contains(key) && !Self.requiredByHandler.contains("\(endpoint).\(key)")
                #expect((missing != nil) == decoderRequires, "\(endpoint): without '\(key)': \(String(describing: missing))")
                var wrong = full
                wrong[key] = Self.otherType(properties[key] ?? [:], resolve: resolve)
                #expect(decodeError(type, wrong) != nil, "\(endpoint): '\(key)' of another type is accepted")
            }
            let alternatives = (schema["oneOf"] as? [[String: Any]])?.compactMap { $0["required"] as? [String] }
            #expect((alternatives == [["tenants"], ["all"]]) == (type is any TenantSelecting.Type), "\(endpoint): \(String(describing: alternatives))")
        }
    }

    @Test("response bodies encode the document's fields with its types")
    func responseTypes() throws {
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        func response(_ path: String, _ method: String, _ status: String) throws -> [String: Any] {
            let operation = try #require(paths[path]?[method] as? [String: Any], "\(method) \(path)")
            let answer = try #require((operation["responses"] as? [String: Any])?[status] as? [String: Any], "\(method) \(path) \(status)")
            let content = (answer["content"] as? [String: Any])?["application/json"] as? [String: Any]
            return try #require(content?["schema"] as? [String: Any], "\(method) \(path) \(status)")
        }
        let m = "/api/superadmin/migration/"
        let tenant = try TenantID("7")
        let samples: [(String, any Encodable, [String: Any])] = [
            ("202", AcceptedResponse(job: "j1", state: "queued", kind: "cutover"), try response(m + "cutover", "post", "202")),
            ("health ok", HealthResponse(status: "ok", catalogVersion: 9), try response("/health", "get", "200")),
            ("health unavailable", HealthResponse(status: "unavailable", error: "down"), try response("/health", "get", "503")),
            ("dual write", DualWriteResponse(enabled: true, tenants: [tenant]), try response(m + "enable-dual-write", "post", "200")),
            ("dead letters", DeadLettersResponse(deadLetters: [try roundTrip(DeadLetters.Letter.self, "DeadLetter")]),
             try response(m + "dead-letters", "get", "200")),
            ("error", AdminError.Body(error: .init(code: "tenant_not_found", message: "no")), try response(m + "cutover", "post", "404")),
            ("job", try roundTrip(AdminJobs.Snapshot.self, "Job"), try response("/api/superadmin/jobs/{id}", "get", "200")),
            ("jobs", ["jobs": [try roundTrip(AdminJobs.Snapshot.self, "Job")]], try response("/api/superadmin/jobs", "get", "200")),
            ("reads", try roundTrip(Operations.ReadsReport.self, "ReadsReport"), try response(m + "activate-reads", "post", "200")),
            ("tenants", ["tenants": [Self.listing(tenant, dedicated: true), Self.listing(tenant, dedicated: false)]],
             try response("/api/superadmin/tenants", "get", "200")),
            ("moves", ServerMovesResponse(moves: [try roundTrip(ServerMoves.Status.self, "ServerMoveStatus")]),
             try response("/api/superadmin/moves", "get", "200")),
        ]
        for (label, value, schema) in samples {
            let encoded = try JSONSerialization.jsonObject(with: try AdminAPI.encode(value))
            let problems = validate(encoded, schema, at: label)
            #expect(problems.isEmpty, "\(problems)")
        }
    }

    /// A tenant as `GET /api/superadmin/tenants` lists it, with every optional field or none.
    static func listing(_ id: TenantID, dedicated: Bool) -> Operations.TenantListing {
        var record = TenantRecord(id: id, placement: dedicated ? .dedicated : .shared)
        if dedicated {
            record.serverName = "s2"
            record.databaseName = "shop_7_db"
            record.roleName = "shop_user_7"
            record.schemaVersion = 3
            record.lastError = "e"
        }
        return Operations.TenantListing(record: record, serverMove: nil)
    }

    // MARK: - Schemas

    func resolve(_ schema: [String: Any]) -> [String: Any] {
        guard let reference = schema["$ref"] as? String else { return schema }
        let name = reference.replacingOccurrences(of: "#/components/schemas/", with: "")
        return resolve(schemas[name] as? [String: Any] ?? [:])
    }

    /// The properties of an object schema and of its `oneOf` alternatives.
    static func properties(_ schema: [String: Any]) -> [String: [String: Any]] {
        var properties = schema["properties"] as? [String: [String: Any]] ?? [:]
        for alternative in schema["oneOf"] as? [[String: Any]] ?? [] {
            properties.merge(alternative["properties"] as? [String: [String: Any]] ?? [:]) { first, _ in first }
        }
        return properties
    }

    /// The fields every valid body has: `required`, and those every `oneOf` alternative requires.
    static func required(_ schema: [String: Any]) -> Set<String> {
        var required = Set(schema["required"] as? [String] ?? [])
        if let alternatives = schema["oneOf"] as? [[String: Any]], !alternatives.isEmpty {
            let each = alternatives.map { Set($0["required"] as? [String] ?? []) }
            required.formUnion(each.dropFirst().reduce(each[0]) { $0.intersection($1) })
        }
        return required
    }

    /// A valid value of `schema`.
    func sample(_ schema: [String: Any]) -> Any {
        let schema = resolve(schema)
        if let first = (schema["enum"] as? [Any])?.first { return first }
        switch schema["type"] as? String {
        case "integer": return schema["minimum"] as? Int ?? 1
        case "number": return 0.5
        case "boolean": return true
        case "array": return [sample(schema["items"] as? [String: Any] ?? [:])]
        case "object": return Self.properties(schema).mapValues(sample)
        default: return schema["format"] as? String == "date-time" ? "2026-01-02T03:04:05Z" : "1"
        }
    }

    /// A value of another JSON type than `schema`'s.
    static func otherType(_ schema: [String: Any], resolve: ([String: Any]) -> [String: Any]) -> Any {
        switch resolve(schema)["type"] as? String {
        case "string": return 5
        case "array": return "1"
        default: return "not-a-\(resolve(schema)["type"] as? String ?? "value")"
        }
    }

    func decodeError(_ type: any AdminRequestBody.Type, _ object: [String: Any]) -> (any Error)? {
        do {
            _ = try JSONDecoder().decode(type, from: try JSONSerialization.data(withJSONObject: object))
            return nil
        } catch {
            return error
        }
    }

    /// A value of `type` decoded from a sample of the schema `name` (dates: any string).
    func roundTrip<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { _ in Date(timeIntervalSince1970: 1_800_000_000) }
        let object = sample(["$ref": "#/components/schemas/\(name)"])
        return try decoder.decode(T.self, from: try JSONSerialization.data(withJSONObject: object))
    }

    /// Where `value` does not match `schema`: an undeclared field (when additional properties
    /// are not allowed), a missing required one, a value of another type or outside the enum.
    func validate(_ value: Any, _ schema: [String: Any], at path: String) -> [String] {
        let schema = resolve(schema)
        if let alternatives = schema["oneOf"] as? [[String: Any]], schema["properties"] == nil {
            let results = alternatives.map { validate(value, $0, at: path) }
            return results.contains(where: \.isEmpty) ? [] : results.flatMap { $0 }
        }
        if let values = schema["enum"] as? [Any], !values.contains(where: { "\($0)" == "\(value)" }) {
            return ["\(path): \(value) is not one of \(values)"]
        }
        switch schema["type"] as? String {
        case "string": return value is String ? [] : ["\(path): not a string"]
        case "integer": return value is Int ? [] : ["\(path): not an integer"]
        case "number": return value is Double || value is Int ? [] : ["\(path): not a number"]
        case "boolean": return value is Bool ? [] : ["\(path): not a boolean"]
        case "array":
            guard let items = value as? [Any] else { return ["\(path): not an array"] }
            return items.enumerated().flatMap { validate($1, schema["items"] as? [String: Any] ?? [:], at: "\(path)[\($0)]") }
        case "object":
            guard let object = value as? [String: Any] else { return ["\(path): not an object"] }
            let properties = Self.properties(schema)
            var problems: [String] = []
            if schema["additionalProperties"] as? Bool == false {
                problems += object.keys.filter { properties[$0] == nil }.sorted().map { "\(path).\($0): not in the document" }
            }
            problems += (schema["required"] as? [String] ?? []).filter { object[$0] == nil }.map { "\(path).\($0): required, missing" }
            for (key, item) in object.sorted(by: { $0.key < $1.key }) {
                if let property = properties[key] { problems += validate(item, property, at: "\(path).\(key)") }
            }
            return problems
        default: return []
        }
    }
}
