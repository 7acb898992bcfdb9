import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("admin API: rebalance plan and apply, servers drain", .timeLimit(.minutes(5)))
struct AdminRebalanceTests {
    @Test("plan as JSON; drain without room is 409 and no job; with a second server, the drain job moves every tenant there")
    func planAndDrain() async throws {
        let fixture = try await AdminFixture.make(shops: 2)
        let second = try await RestartableServer.start()
        do {
            try await run(fixture, second)
            try await second.remove()
        } catch {
            try? await second.remove()
            throw error
        }
    }

    private func run(_ fixture: AdminFixture, _ second: RestartableServer) async throws {
        let secondURL = try second.url()
        try await fixture.withAPI { client, api in
            // A generous pause: a loaded CI machine must not abort the cutovers.
            for (path, body) in [("provision-all", #"{"all": true}"#), ("migrate-data", #"{"all": true}"#),
                                 ("cutover", #"{"all": true, "maxPauseMs": 10000}"#)] {
                let job = try await client.runJob(path, body: body)
                #expect(job.job["state"] as? String == "succeeded", "\(path): \(job.job)")
            }
            let plan = try await client.call(.get, "/api/superadmin/rebalance/plan?sampleSeconds=0")
            #expect(plan.status == .ok, "\(plan.text)")
            let servers = ((plan.json["plan"] as? [String: Any])?["servers"] as? [[String: Any]])?.compactMap {
                ($0["server"] as? [String: Any])?["name"] as? String
            }
            #expect(servers == ["default"] && ((plan.json["plan"] as? [String: Any])?["moves"] as? [Any])?.isEmpty == true, "\(plan.text)")
            #expect(try await client.call(.get, "/api/superadmin/rebalance/plan?maxMoves=5000").status == .badRequest)
            let unknownField = try await client.call(.post, "/api/superadmin/rebalance/apply", body: #"{"bogus": 1}"#)
            #expect(unknownField.status == .badRequest && unknownField.errorCode == "unknown_field", "\(unknownField.text)")

            // Nowhere to go: 409, nothing moved, no job.
            let jobsBefore = api.jobs.all().count
            let refused = try await client.call(.post, "/api/superadmin/servers/default/drain", body: "{}")
            #expect(refused.status == .conflict, "\(refused.text)")
            let message = (refused.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.hasPrefix("cannot drain server default, nothing was moved: no server has room for tenant "), "\(refused.text)")
            #expect(message.contains("tenant 1 (") && message.contains("tenant 2 ("), "\(message)")
            #expect(api.jobs.all().count == jobsBefore)
            let missing = try await client.call(.post, "/api/superadmin/servers/nope/drain", body: "{}")
            #expect(missing.status == .notFound && missing.errorCode == "server_not_found", "\(missing.text)")

            // A second real server: the drain job moves both tenants there.
            try await api.operations.catalog.upsertServer(ServerRecord(
                name: "b", host: secondURL.host, port: secondURL.port, adminUser: secondURL.user,
                adminPasswordSealed: try secondURL.password.map {
                    try fixture.configuration.keyring!.seal($0, tenant: "server:b", field: "admin_password")
                }))
            let accepted = try await client.call(.post, "/api/superadmin/servers/default/drain", body: #"{"concurrency": 2, "maxPauseMs": 10000}"#)
            #expect(accepted.status == .accepted, "\(accepted.text)")
            let id = try #require(accepted.json["job"] as? String)
            let (job, _) = try await client.awaitJob(id)
            #expect(job["state"] as? String == "succeeded", "\(job)")
            let applied = (job["result"] as? [String: Any])?["applied"] as? [String: Any]
            #expect((applied?["moved"] as? [[String: Any]])?.compactMap { $0["to"] as? String } == ["b", "b"], "\(job)")
            let placements = try await TestPostgres.strings(
                fixture.url, "SELECT id || '@' || coalesce(server_name, 'default') FROM tenantry.tenants ORDER BY id")
            #expect(placements == ["1@b", "2@b"])
        }
    }
}
