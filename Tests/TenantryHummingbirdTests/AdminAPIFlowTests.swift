import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("admin API against PostgreSQL: every endpoint, jobs to completion", .timeLimit(.minutes(4)))
struct AdminAPIFlowTests {
    @Test("provision-all → migrate-data → dual-write → verify-sync → reads → performance → cutover → retire dry run → rollback, audited")
    func fullMove() async throws {
        let fixture = try await AdminFixture.make(shops: 3)
        try await fixture.withAPI { client, api in
            // Unauthenticated endpoints.
            let health = try await client.call(.get, "/health", token: nil)
            #expect(health.status == .ok && health.json["status"] as? String == "ok", "\(health.text)")
            #expect(health.json.keys.sorted() == ["status"], "anonymous /health shows only the status: \(health.text)")
            let detailed = try await client.call(.get, "/health")
            #expect(detailed.json["catalogVersion"] as? Int != nil, "with the token, the details: \(detailed.text)")
            let openapi = try await client.call(.get, "/openapi.json", token: nil)
            #expect(openapi.status == .ok)
            #expect((openapi.json["paths"] as? [String: Any])?["/api/superadmin/migration/cutover"] != nil)

            let before = try await client.call(.get, "/api/superadmin/migration/status")
            #expect(before.status == .ok, "\(before.text)")
            #expect(before.json["tenants"] as? Int == 0)
            #expect((before.json["capture"] as? [Any])?.isEmpty == true, "capture installed, nobody captured yet")

            // provision-all: every shop of the unified database.
            let provision = try await client.runJob("provision-all", body: #"{"all": true, "concurrency": 2}"#)
            #expect(provision.job["state"] as? String == "succeeded", "\(provision.job)")
            let provisioned = (provision.job["result"] as? [String: Any])?["provisioned"] as? [[String: Any]]
            #expect(provisioned?.map { $0["tenant"] as? String } == ["1", "2", "3"])
            #expect((provision.job["progress"] as? [String: Any])?["done"] as? Int == 3)
            #expect((provision.job["progress"] as? [String: Any])?["total"] as? Int == 3)

            // migrate-data for two shops: progress observed while it runs, to completion.
            let copy = try await client.runJob("migrate-data", body: #"{"tenants": ["1", "2"], "concurrency": 1}"#)
            #expect(copy.job["state"] as? String == "succeeded", "\(copy.job)")
            let copied = (copy.job["result"] as? [String: Any])?["copied"] as? [[String: Any]]
            #expect(copied?.count == 2)
            #expect(copied?.allSatisfy { ($0["rows"] as? Int ?? 0) > 0 } == true)
            #expect(copy.seen.contains { $0["total"] as? Int == 2 && $0["done"] as? Int == 1 }
                    || copy.seen.contains { ($0["message"] as? String ?? "").contains("rows") },
                    "progress seen: \(copy.seen)")
            #expect(copy.seen.last?["done"] as? Int == 2)

            let dual = try await client.call(.post, "/api/superadmin/migration/enable-dual-write", body: #"{"tenants": ["1", "2"]}"#)
            #expect(dual.status == .ok, "\(dual.text)")
            #expect(dual.json["tenants"] as? [String] == ["1", "2"])

            let verify = try await client.runJob("verify-sync", body: #"{"tenants": ["1", "2"]}"#)
            #expect(verify.job["state"] as? String == "succeeded", "\(verify.job)")
            #expect((verify.job["result"] as? [String: Any])?["equal"] as? Bool == true)

            let reads = try await client.call(
                .post, "/api/superadmin/migration/activate-reads", body: #"{"strategy": "canary", "canary": ["1"]}"#)
            #expect(reads.status == .ok, "\(reads.text)")
            #expect((reads.json["policy"] as? [String: Any])?["strategy"] as? String == "canary")

            let performance = try await client.call(.get, "/api/superadmin/migration/performance?measureSeconds=1&tenant=1,2")
            #expect(performance.status == .ok, "\(performance.text)")
            #expect(((performance.json["stats"] as? [String: Any])?["totalQueries"] as? Int ?? 0) > 0, "\(performance.text.prefix(300))")
            let metrics = try await client.call(.get, "/metrics", token: nil)
            #expect(metrics.status == .ok)
            #expect(metrics.text.contains("tenantry_query"), "\(metrics.text.prefix(300))")

            let rollbackReads = try await client.call(.post, "/api/superadmin/migration/rollback-reads")
            #expect(rollbackReads.status == .ok, "\(rollbackReads.text)")
            #expect((rollbackReads.json["policy"] as? [String: Any])?["strategy"] as? String == "unified")

            let cutover = try await client.runJob("cutover", body: #"{"tenants": ["1"], "maxPauseMs": 5000}"#)
            #expect(cutover.job["state"] as? String == "succeeded", "\(cutover.job)")
            let status = try await client.call(.get, "/api/superadmin/migration/status")
            #expect((status.json["byPhase"] as? [String: Int])?["dedicated"] == 1, "\(status.text)")

            // A reverse-sync dead letter of the dedicated shop shows in the API (and in status).
            let shopDatabase = try await api.operations.move().tenantURL(try TenantID("1"))
            try await Database.withConnection(shopDatabase, logger: AdminFixture.logger) { connection in
                try await connection.query("""
                    INSERT INTO tenantry.dead_letters (id, tenant_id, table_name, op, row_data, xid, captured_at, attempts, error)
                    VALUES (77, '1', 'customers', 'I', '{"id": 1}', pg_current_xact_id(), now(), 4, 'test letter')
                    """, logger: AdminFixture.logger)
            }
            try await Database.withConnection(fixture.url, logger: AdminFixture.logger) { connection in
                try await connection.query("""
                    INSERT INTO tenantry.dead_letters (id, tenant_id, table_name, op, row_data, xid, captured_at, attempts, error, direction)
                    VALUES (77, '1', 'customers', 'I', '{"id": 1}', pg_current_xact_id(), now(), 4, 'test letter', 'reverse')
                    """, logger: AdminFixture.logger)
            }
            let letters = try await client.call(.get, "/api/superadmin/migration/dead-letters?tenant=1")
            #expect(letters.status == .ok, "\(letters.text)")
            let listed = letters.json["deadLetters"] as? [[String: Any]]
            #expect(listed?.count == 1 && listed?.first?["direction"] as? String == "reverse", "\(letters.text)")
            let withLetter = try await client.call(.get, "/api/superadmin/migration/status")
            let captured = (withLetter.json["capture"] as? [[String: Any]])?.first { $0["tenant"] as? String == "1" }
            #expect(captured?["deadLetters"] as? Int == 1, "\(withLetter.text)")
            #expect(try await client.call(.get, "/api/superadmin/migration/dead-letters?tenant=404").status == .notFound)
            _ = try await api.operations.move().deadLetters().discard(tenant: try TenantID("1"))

            let retire = try await client.runJob("retire-legacy", body: #"{"all": true}"#)
            #expect(retire.job["state"] as? String == "succeeded", "\(retire.job)")
            #expect((retire.job["result"] as? [String: Any])?["tenants"] as? [String] == ["1"])
            #expect((retire.job["result"] as? [String: Any])?["dryRun"] as? Bool == true)

            let rollback = try await client.runJob("rollback", body: #"{"tenants": ["1", "2"]}"#)
            #expect(rollback.job["state"] as? String == "succeeded", "\(rollback.job)")
            let after = try await client.call(.get, "/api/superadmin/migration/status")
            #expect((after.json["byPlacement"] as? [String: Int])?["dedicated"] == nil, "\(after.text)")

            let jobs = try await client.call(.get, "/api/superadmin/jobs")
            #expect((jobs.json["jobs"] as? [Any])?.count == 6)

            // Audited, as the token's fingerprint, never the token.
            let entries = try await api.operations.catalog.auditLog(limit: 500)
            let actor = "api:" + BearerTokenMiddleware<AdminRequestContext>.fingerprint(of: AdminFixture.token)
            let actions = Set(entries.filter { $0.actor == actor }.map(\.action))
            for action in ["api.provision-all", "api.migrate-data.submit", "api.migrate-data", "api.enable-dual-write",
                           "api.verify-sync", "reads.set", "reads.rollback", "api.cutover", "api.retire-legacy", "api.rollback",
                           "api.performance", "migrate-data", "cutover"] {
                #expect(actions.contains(action), "audit action \(action) by \(actor): \(actions.sorted())")
            }
            #expect(!entries.contains { $0.actor.contains(AdminFixture.token) || $0.detail.contains(AdminFixture.token) })
        }
    }
}
