import Foundation
import HTTPTypes
import HummingbirdTesting
import PostgresNIO
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("Admin API: POST /api/superadmin/query", .timeLimit(.minutes(3)))
struct AdminQueryTests {
    /// HandyShop shops 1–3 in the unified database, all three tenants of the catalog; tenant 1
    /// provisioned and dedicated (its database is empty: nothing was copied), 2 and 3 shared.
    static func fleet() async throws -> AdminFixture {
        let fixture = try await AdminFixture.make(shops: 3, rowsPerShop: 20)
        try await Operations.with(
            configuration: fixture.configuration, databaseURL: fixture.url, actor: "test", logger: AdminFixture.logger
        ) { operations in
            let one = try TenantID("1")
            _ = try await operations.catalog.registerTenants([one, try TenantID("2"), try TenantID("3")])
            _ = try await operations.provisioner().provision(one)
            var record = try await operations.catalog.requireTenant(one)
            record.placement = .dedicated
            try await operations.catalog.upsertTenant(record)
        }
        return fixture
    }

    @Test("inline: every tenant's count from where its data lives; combine; the admin token is required; bad payloads are one 400")
    func inline() async throws {
        let fixture = try await Self.fleet()
        let expected = try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM customers WHERE shop_id IN (2, 3) GROUP BY shop_id ORDER BY shop_id")
        try #require(expected.count == 2 && expected.allSatisfy { $0 != "0" })
        try await fixture.withAPI { client, _ in
            let body = #"{"all": true, "sql": "SELECT count(*) AS n FROM customers"}"#
            let answer = try await client.call(.post, "/api/superadmin/query", body: body)
            #expect(answer.status == .ok, "\(answer.text)")
            #expect(answer.text.hasPrefix(#"{"rows":[{"tenant_id":"#))
            let rows = try #require(answer.json["rows"] as? [[String: String]])
            #expect(Dictionary(uniqueKeysWithValues: rows.map { ($0["tenant_id"]!, $0["n"]!) }) == ["1": "0", "2": expected[0]!, "3": expected[1]!])
            #expect(answer.json["tenants"] as? Int == 3 && (answer.json["missing"] as? [Any])?.isEmpty == true)

            let combine = #"{"tenants": ["2", "3"], "sql": "SELECT count(*) AS n FROM customers", "combine": "SELECT sum(n) AS total FROM results"}"#
            let combined = try await client.call(.post, "/api/superadmin/query", body: combine)
            #expect(combined.status == .ok, "\(combined.text)")
            #expect(combined.json["rows"] as? [[String: String]] == [["total": "\(Int(expected[0]!)! + Int(expected[1]!)!)"]])

            // An enum column (repair_status, a type of each database) is combined as text.
            let byStatus = #"{"all": true, "sql": "SELECT status, count(*) AS n FROM repairs GROUP BY 1", "combine": "SELECT status, sum(n) AS n FROM results GROUP BY 1 ORDER BY 1"}"#
            let statuses = try await client.call(.post, "/api/superadmin/query", body: byStatus)
            #expect(statuses.status == .ok, "\(statuses.text)")
            let counted = try await TestPostgres.strings(
                fixture.url, "SELECT status::text || '=' || count(*) FROM repairs WHERE shop_id IN (2, 3) GROUP BY status ORDER BY status::text")
            #expect((statuses.json["rows"] as? [[String: String]])?.map { "\($0["status"]!)=\($0["n"]!)" } == counted.compactMap { $0 })
            #expect(counted.count > 1)

            let anonymous = try await client.call(.post, "/api/superadmin/query", token: nil, body: body)
            #expect(anonymous.status == .unauthorized)
            let wrong = try await client.call(.post, "/api/superadmin/query", token: "wrong-token-wrong-token-000", body: body)
            #expect(wrong.status == .unauthorized)

            for (payload, code, status) in [
                (#"{"all": true}"#, "invalid_request", HTTPResponse.Status.badRequest),
                (#"{"sql": "SELECT 1 AS one"}"#, "invalid_argument", .badRequest),
                (#"{"all": true, "sql": "  "}"#, "invalid_argument", .badRequest),
                (#"{"all": true, "sql": "DELETE FROM customers"}"#, "invalid_argument", .badRequest),
                (#"{"all": true, "sql": "SELECT 1 AS one", "timeoutMs": 0}"#, "invalid_argument", .badRequest),
                (#"{"all": true, "sql": "SELECT 1 AS one", "format": "csv"}"#, "invalid_argument", .badRequest),
                (#"{"all": true, "sql": "SELECT 1 AS one", "limit": 3}"#, "unknown_field", .badRequest),
                (#"{"tenants": ["1", "8"], "sql": "SELECT 1 AS one"}"#, "tenant_not_found", .notFound),
            ] {
                let refused = try await client.call(.post, "/api/superadmin/query", body: payload)
                #expect(refused.status == status && refused.errorCode == code, "\(payload): \(refused.status) \(refused.text)")
            }
            let deleted = try await client.call(.post, "/api/superadmin/query", body: #"{"all": true, "sql": "DELETE FROM customers"}"#)
            let message = (deleted.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.contains("cannot execute DELETE in a read-only transaction"), "\(message)")
        }
        #expect(try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM customers WHERE shop_id IN (2, 3) GROUP BY shop_id ORDER BY shop_id") == expected)
    }

    @Test("async: a job (202 with Location) whose result is the same object; partial names a tenant that timed out")
    func job() async throws {
        let fixture = try await Self.fleet()
        try await fixture.withAPI { client, _ in
            let body = #"""
                {"all": true, "async": true, "partial": true, "timeoutMs": 300,
                 "sql": "SELECT count(*) AS n, pg_sleep(CASE WHEN count(*) = 0 THEN 5 ELSE 0 END)::text AS slept FROM customers"}
                """#
            let answer = try await client.call(.post, "/api/superadmin/query", body: body)
            try #require(answer.status == .accepted, "\(answer.text)")
            let id = try #require(answer.json["job"] as? String)
            #expect(answer.headers[.location] == "/api/superadmin/jobs/\(id)")
            let (job, _) = try await client.awaitJob(id)
            #expect(job["state"] as? String == "succeeded", "\(job)")
            let result = try #require(job["result"] as? [String: Any])
            #expect(result["tenants"] as? Int == 3)
            #expect((result["rows"] as? [[String: Any]])?.compactMap { $0["tenant_id"] as? String }.sorted() == ["2", "3"])
            let missing = try #require(result["missing"] as? [[String: String]])
            #expect(missing == [["tenant": "1", "error": "timed out after 300 ms (statement_timeout)"]])
        }
    }
}
