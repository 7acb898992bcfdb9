import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryAdmin
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
                ("retire-legacy", nil, .badRequest, "confirmation_required"),
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
            #expect(wrongMethod.status.code >= 400 && wrongMethod.status.code < 500 && wrongMethod.errorCode != nil, "\(wrongMethod.text)")

            // Refusals after authentication are audited; none of them changed anything.
            let refused = try await api.operations.catalog.auditLog(limit: 200).filter { $0.outcome == .refused }
            #expect(refused.count >= cases.count - 3, "\(refused.count) refusals audited")
            #expect(try await api.operations.catalog.tenants().isEmpty)
        }
    }

    @Test("the checked-in docs/openapi.json is the served document and names every route")
    func openAPIDocument() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = try String(contentsOf: root.appendingPathComponent("docs/openapi.json"), encoding: .utf8)
        #expect(file.trimmingCharacters(in: .whitespacesAndNewlines) == OpenAPIDocument.json.trimmingCharacters(in: .whitespacesAndNewlines),
                "run scripts/openapi-embed")
        let paths = try #require((try JSONSerialization.jsonObject(with: Data(file.utf8)) as? [String: Any])?["paths"] as? [String: Any])
        for endpoint in ["status", "provision-all", "migrate-data", "enable-dual-write", "verify-sync", "activate-reads",
                         "rollback-reads", "performance", "retire-legacy", "cutover", "rollback"] {
            #expect(paths["/api/superadmin/migration/\(endpoint)"] != nil, "\(endpoint)")
        }
        for path in ["/health", "/metrics", "/openapi.json", "/api/superadmin/jobs/{id}"] { #expect(paths[path] != nil) }
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
