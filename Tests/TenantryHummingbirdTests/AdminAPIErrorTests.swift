import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("admin API: authentication and bad requests are 4xx with a code", .timeLimit(.minutes(3)))
struct AdminAPIErrorTests {
    @Test("missing, malformed and wrong tokens are 401; health, metrics and openapi.json need none")
    func authentication() async throws {
        let fixture = try await AdminFixture.make(shops: 1, rowsPerShop: 10)
        try await fixture.withAPI { client, _ in
            for (path, method) in [("/api/superadmin/migration/status", HTTPRequest.Method.get),
                                   ("/api/superadmin/migration/migrate-data", .post), ("/api/superadmin/jobs/x", .get)] {
                let missing = try await client.call(method, path, token: nil)
                #expect(missing.status == .unauthorized && missing.errorCode == "unauthorized", "\(path): \(missing.text)")
                #expect(missing.headers[.wwwAuthenticate] == "Bearer")
                let wrong = try await client.call(method, path, token: "not-the-admin-token-at-all")
                #expect(wrong.status == .unauthorized && wrong.errorCode == "unauthorized", "\(path): \(wrong.text)")
                #expect(!wrong.text.contains(AdminFixture.token))
                let prefix = try await client.call(method, path, token: String(AdminFixture.token.dropLast()))
                #expect(prefix.status == .unauthorized)
                let basic = try await client.call(method, path, token: nil, headers: ["Authorization": "Basic \(AdminFixture.token)"])
                #expect(basic.status == .unauthorized)
            }
            #expect(try await client.call(.get, "/health", token: nil).status == .ok)
            #expect(try await client.call(.get, "/metrics", token: nil).status == .ok)
            #expect(try await client.call(.get, "/openapi.json", token: nil).status == .ok)
        }
    }

    @Test("every operation the OpenAPI document says needs the bearer token answers 401 without it, and does nothing")
    func everyProtectedOperationRefusesAnonymous() async throws {
        let fixture = try await AdminFixture.make(shops: 1, rowsPerShop: 10)
        let document = try #require(OpenAPIDocument.json)
        let paths = try #require(
            (try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [String: Any])?["paths"] as? [String: [String: Any]])
        var protected: [(String, HTTPRequest.Method)] = []
        for (path, operations) in paths {
            for (name, operation) in operations {
                guard let method = HTTPRequest.Method(name.uppercased()),
                      let security = (operation as? [String: Any])?["security"] as? [[String: Any]],
                      !security.contains(where: \.isEmpty)  // `{}`: anonymous allowed (/health)
                else { continue }
                protected.append((path.replacingOccurrences(of: "{id}", with: "x"), method))
            }
        }
        #expect(protected.count >= 15, "\(protected.count) protected operations in the document")
        let operations = protected
        try await fixture.withAPI { client, _ in
            for (path, method) in operations {
                let answer = try await client.call(method, path, token: nil, body: method == .post ? #"{"all": true}"# : nil)
                #expect(answer.status == .unauthorized && answer.errorCode == "unauthorized", "\(method) \(path): \(answer.status)")
            }
            // Nothing ran: no job was submitted, no tenant was provisioned.
            #expect((try await client.call(.get, "/api/superadmin/jobs").json["jobs"] as? [Any])?.isEmpty == true)
        }
    }

    @Test("wrong types, unknown fields, bad JSON, oversized bodies, bad and unknown tenants, out-of-range values")
    func badPayloads() async throws {
        let fixture = try await AdminFixture.make(shops: 1, rowsPerShop: 10)
        try await fixture.withAPI { client, api in
            let m = "/api/superadmin/migration/"
            let cases: [(String, String?, HTTPResponse.Status, String)] = [
                ("migrate-data", #"{"tenants": "1"}"#, .badRequest, "invalid_request"),
                ("migrate-data", #"{"concurrency": "two"}"#, .badRequest, "invalid_request"),
                ("migrate-data", #"{"tenants": [1]}"#, .badRequest, "invalid_request"),
                ("migrate-data", #"{"tenant": ["1"]}"#, .badRequest, "unknown_field"),
                ("migrate-data", #"{"tenants": ["1"]"#, .badRequest, "invalid_request"),
                ("migrate-data", #"["1"]"#, .badRequest, "invalid_request"),
                ("migrate-data", #"{"tenants": []}"#, .badRequest, "invalid_argument"),
                ("migrate-data", #"{"concurrency": 0}"#, .badRequest, "invalid_argument"),
                ("migrate-data", #"{"tenants": ["Bad!"]}"#, .badRequest, "invalid_tenant_id"),
                ("migrate-data", #"{"tenants": ["999"]}"#, .notFound, "tenant_not_found"),
                ("verify-sync", #"{"tenants": ["1; drop database x"]}"#, .badRequest, "invalid_tenant_id"),
                ("cutover", #"{"tenants": ["42"]}"#, .notFound, "tenant_not_found"),
                ("cutover", #"{"maxPauseMs": -1}"#, .badRequest, "invalid_argument"),
                ("rollback", nil, .badRequest, "invalid_argument"),
                ("provision-all", #"{"tenants": ["77"]}"#, .notFound, "tenant_not_found"),
                ("activate-reads", #"{"strategy": "sideways"}"#, .badRequest, "invalid_argument"),
                ("activate-reads", #"{"strategy": "percentage", "percentage": 101}"#, .badRequest, "invalid_argument"),
                ("activate-reads", #"{"strategy": "canary"}"#, .badRequest, "invalid_argument"),
                ("activate-reads", #"{"percentage": 5}"#, .badRequest, "invalid_request"),
                ("activate-reads", #"{"strategy": "canary", "canary": ["5"]}"#, .notFound, "tenant_not_found"),
                ("rollback-reads", #"{"all": true}"#, .badRequest, "unknown_field"),
                ("retire-legacy", #"{"all": true, "dryRun": false}"#, .badRequest, "confirmation_required"),
                ("retire-legacy", #"{"dryRun": "yes"}"#, .badRequest, "invalid_request"),
                ("enable-dual-write", #"{"enabled": 1}"#, .badRequest, "invalid_request"),
            ]
            for (path, body, status, code) in cases {
                let answer = try await client.call(.post, m + path, body: body)
                #expect(answer.status == status && answer.errorCode == code, "\(path) \(body ?? "-"): \(answer.status) \(answer.text)")
            }
            let oversized = try await client.call(
                .post, m + "migrate-data", body: #"{"tenants": ["\#(String(repeating: "1", count: 70_000))"]}"#)
            #expect(oversized.status == .contentTooLarge && oversized.errorCode == "payload_too_large", "\(oversized.status)")
            let badQuery = try await client.call(.get, m + "performance?measureSeconds=3600")
            #expect(badQuery.status == .badRequest && badQuery.errorCode == "invalid_argument", "\(badQuery.text)")
            let noJob = try await client.call(.get, "/api/superadmin/jobs/nope")
            #expect(noJob.status == .notFound && noJob.errorCode == "job_not_found")
            let noRoute = try await client.call(.get, "/api/superadmin/migration/teleport")
            #expect(noRoute.status == .notFound && noRoute.errorCode == "not_found", "\(noRoute.text)")
            let wrongMethod = try await client.call(.get, m + "cutover")
            #expect(wrongMethod.status == .methodNotAllowed && wrongMethod.errorCode == "method_not_allowed", "\(wrongMethod.text)")

            // Refusals after authentication are audited; none of them changed anything.
            let refused = try await api.operations.catalog.auditLog(limit: 200).filter { $0.outcome == .refused }
            #expect(refused.count >= cases.count - 3, "\(refused.count) refusals audited")
            #expect(try await api.operations.catalog.tenants().isEmpty)
        }
    }

    @Test("null is never 'everything', tenants are named or \"all\": true, other endpoints' fields and empty lists are refused, retire-legacy is a dry run by default, undeclared methods are 405")
    func destructiveRequestsSayWhatTheyActOn() async throws {
        let fixture = try await AdminFixture.make(shops: 2, rowsPerShop: 10)
        try await fixture.withAPI { client, api in
            let m = "/api/superadmin/migration/"
            let selecting = ["provision-all", "migrate-data", "enable-dual-write", "verify-sync", "cutover", "retire-legacy"]
            var cases: [(String, String?, String)] = []
            for path in selecting {
                cases += [
                    (path, #"{"tenants": null}"#, "invalid_request"),     // the fuzz finding: null queued every tenant
                    (path, #"{"all": null}"#, "invalid_request"),
                    (path, nil, "invalid_argument"),                      // no body: which tenants?
                    (path, "{}", "invalid_argument"),
                    (path, #"{"all": false}"#, "invalid_argument"),
                    (path, #"{"all": true, "tenants": ["1"]}"#, "invalid_argument"),
                    (path, #"{"tenants": []}"#, "invalid_argument"),
                    (path, #"{"tenants": [null]}"#, "invalid_request"),
                ]
            }
            cases += [
                ("retire-legacy", #"{"dryRun": null, "confirm": true, "all": true}"#, "invalid_request"),
                ("retire-legacy", #"{"all": true, "confirm": null}"#, "invalid_request"),
                ("enable-dual-write", #"{"all": true, "enabled": null}"#, "invalid_request"),
                ("cutover", #"{"all": true, "maxPauseMs": null}"#, "invalid_request"),
                ("activate-reads", #"{"strategy": "canary", "canary": null}"#, "invalid_request"),
                ("activate-reads", #"{"strategy": "shop-list", "shops": []}"#, "invalid_argument"),
                ("rollback", #"{"tenants": null}"#, "invalid_request"),
                ("rollback", #"{"all": true}"#, "unknown_field"),
                // The five endpoints that shared one request type accept only their own fields.
                ("cutover", #"{"all": true, "concurrency": 2}"#, "unknown_field"),
                ("migrate-data", #"{"all": true, "maxPauseMs": 5}"#, "unknown_field"),
                ("verify-sync", #"{"all": true, "server": "x"}"#, "unknown_field"),
                ("provision-all", #"{"all": true, "chunkSize": 5}"#, "unknown_field"),
                ("rollback", #"{"tenants": ["1"], "captureTimeoutSeconds": 5}"#, "unknown_field"),
                ("rollback-reads", #"{"tenants": ["1"]}"#, "unknown_field"),
            ]
            for (path, body, code) in cases {
                let answer = try await client.call(.post, m + path, body: body)
                #expect(answer.status == .badRequest && answer.errorCode == code, "\(path) \(body ?? "-"): \(answer.status) \(answer.text)")
            }
            #expect(api.jobs.all().isEmpty, "a refused request queued a job: \(api.jobs.all().map(\.kind))")

            // retire-legacy without dryRun is a dry run (shop 1 cut over first, so there is something
            // to retire); a real one needs "dryRun": false and "confirm": true.
            let one = try TenantID("1")
            let operations = api.operations
            try #require(try await operations.provision(.tenants([one])).failed.isEmpty)
            let move = try await operations.move()
            try #require(try await move.migrateData(.tenants([one])).failed.isEmpty)
            try #require(try await move.cutover(.tenants([one]), maxPause: .seconds(5)).failed.isEmpty)
            let rows = "SELECT count(*)::text FROM customers WHERE shop_id = 1"
            let before = try await TestPostgres.strings(fixture.url, rows)
            let retire = try await client.runJob("retire-legacy", body: #"{"tenants": ["1"]}"#)
            #expect(retire.job["state"] as? String == "succeeded", "\(retire.job)")
            #expect((retire.job["result"] as? [String: Any])?["dryRun"] as? Bool == true, "\(retire.job)")
            #expect(try await TestPostgres.strings(fixture.url, rows) == before && before != ["0"], "a dry run deleted rows")
            let unconfirmed = try await client.call(.post, m + "retire-legacy", body: #"{"tenants": ["1"], "dryRun": false}"#)
            #expect(unconfirmed.status == .badRequest && unconfirmed.errorCode == "confirmation_required", "\(unconfirmed.text)")

            // A method the document does not declare for a path is 405 with Allow.
            for (method, path, allow) in [(HTTPRequest.Method.put, m + "cutover", "POST"), (.delete, m + "status", "GET"),
                                          (.post, "/health", "GET"), (.patch, "/api/superadmin/jobs/abc", "GET")] {
                let answer = try await client.call(method, path, body: "{}")
                #expect(answer.status == .methodNotAllowed && answer.errorCode == "method_not_allowed", "\(method) \(path): \(answer.text)")
                #expect(answer.headers[.allow] == allow, "\(method) \(path)")
            }
            #expect(api.jobs.all().count == 1)
        }

        // The document agrees: every list of ids needs at least one, no field is nullable, and the
        // tenant-selecting bodies need exactly one of tenants and all.
        let json = try #require(OpenAPIDocument.json)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        #expect((schemas["TenantList"] as? [String: Any])?["minItems"] as? Int == 1)
        #expect(!json.contains("\"nullable\""))
        for name in ["ProvisionRequest", "MigrateDataRequest", "DualWriteRequest", "VerifySyncRequest", "CutoverRequest", "RetireRequest"] {
            let schema = try #require(schemas[name] as? [String: Any], "\(name)")
            #expect((schema["oneOf"] as? [[String: Any]])?.compactMap { $0["required"] as? [String] } == [["tenants"], ["all"]], "\(name)")
            #expect(schema["additionalProperties"] as? Bool == false, "\(name)")
        }
        #expect(((schemas["RetireRequest"] as? [String: Any])?["properties"] as? [String: [String: Any]])?["dryRun"]?["default"] as? Bool == true)
    }

    @Test("docs/openapi.json is the served document, copied as a resource next to the binary, and names every route")
    func openAPIDocument() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let docs = root.appendingPathComponent("docs/openapi.json").path
        // One file: docs/openapi.json links to the target's resource (SwiftPM copies a symbolic
        // link in a target as a link, which would dangle in the build directory).
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: docs) == "../Sources/TenantryHummingbird/openapi.json")
        let file = try String(contentsOfFile: docs, encoding: .utf8)
        #expect(OpenAPIDocument.json == file)
        // SwiftPM put the resource next to the test binary: the lookup an installed binary uses.
        let copied = OpenAPIDocument.candidates().dropLast().compactMap { FileManager.default.contents(atPath: $0) }.first
        #expect(copied.map { String(decoding: $0, as: UTF8.self) } == file, "\(OpenAPIDocument.candidates())")
        let paths = try #require((try JSONSerialization.jsonObject(with: Data(file.utf8)) as? [String: Any])?["paths"] as? [String: Any])
        for endpoint in ["status", "provision-all", "migrate-data", "enable-dual-write", "verify-sync", "activate-reads",
                         "rollback-reads", "performance", "retire-legacy", "cutover", "rollback"] {
            #expect(paths["/api/superadmin/migration/\(endpoint)"] != nil, "\(endpoint)")
        }
        for path in ["/health", "/metrics", "/openapi.json", "/api/superadmin/jobs/{id}"] { #expect(paths[path] != nil) }
    }

    @Test("tenantry handyshop serve refuses a HANDYSHOP_JWT_SECRET shorter than 32 bytes, with one line")
    func handyShopShortSecret() async throws {
        let result = try await CLIRunner.run(["handyshop", "serve", "--port", "0"], environment: [
            "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "TENANT_ENCRYPTION_KEY": String(repeating: "ab", count: 32),
            "HANDYSHOP_JWT_SECRET": "only-24-bytes-of-secret!",
        ])
        #expect(result.status != 0)
        #expect(result.stderr.split(separator: "\n").count == 1 && result.stderr.contains("HANDYSHOP_JWT_SECRET must be at least 32 bytes"), "\(result.stderr)")
        #expect(!result.stderr.contains("only-24-bytes"))
    }

    @Test("tenantry serve refuses to start without TENANTRY_ADMIN_TOKEN, with one line")
    func serveNeedsToken() async throws {
        let result = try await CLIRunner.run(["serve", "--port", "0"], environment: ["DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"])
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && result.stderr.contains("TENANTRY_ADMIN_TOKEN"), "\(result.stderr)")
        let short = try await CLIRunner.run(["serve"], environment: ["TENANTRY_ADMIN_TOKEN": "short"])
        #expect(short.status != 0 && short.stderr.contains("TENANTRY_ADMIN_TOKEN must be at least 16 characters"), "\(short.stderr)")
    }
}
