import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("admin API: server moves (/api/superadmin/moves)", .timeLimit(.minutes(6)))
struct AdminServerMoveTests {
    static let moves = "/api/superadmin/moves"

    @Test("no token is 401; bad bodies, tenants and servers are 400 or 404 with a code; nothing queued")
    func refusals() async throws {
        let fixture = try await AdminFixture.make(shops: 1, rowsPerShop: 10)
        try await fixture.withAPI { client, api in
            try #require(try await api.operations.provision(.tenants([try TenantID("1")])).failed.isEmpty)
            let m = Self.moves
            for (method, path) in [(HTTPRequest.Method.get, m), (.post, m + "/start"), (.post, m + "/1/switch"), (.post, m + "/1/cancel")] {
                let answer = try await client.call(method, path, token: nil, body: method == .post ? #"{"tenants": ["1"], "to": "default"}"# : nil)
                #expect(answer.status == .unauthorized && answer.errorCode == "unauthorized", "\(method) \(path): \(answer.status)")
            }
            let cases: [(String, String?, HTTPResponse.Status, String)] = [
                ("/start", "{}", .badRequest, "invalid_request"),
                ("/start", #"{"tenants": ["1"]}"#, .badRequest, "invalid_request"),
                ("/start", #"{"tenants": ["1"], "to": "nowhere"}"#, .badRequest, "invalid_argument"),
                ("/start", #"{"to": "default"}"#, .badRequest, "invalid_argument"),
                ("/start", #"{"tenants": ["1"], "allFrom": "default", "to": "default"}"#, .badRequest, "invalid_argument"),
                ("/start", #"{"allFrom": "default", "to": "default"}"#, .badRequest, "invalid_argument"),
                ("/start", #"{"tenants": ["1"], "to": "default", "concurrency": 0}"#, .badRequest, "invalid_argument"),
                ("/start", #"{"tenants": ["1"], "to": "default", "maxPauseMs": 5}"#, .badRequest, "unknown_field"),
                ("/start", #"{"tenants": ["1"], "to": null}"#, .badRequest, "invalid_request"),
                ("/start", #"{"tenants": [], "to": "default"}"#, .badRequest, "invalid_argument"),
                ("/start", #"{"tenants": ["1;drop"], "to": "default"}"#, .badRequest, "invalid_tenant_id"),
                ("/start", #"{"tenants": ["42"], "to": "default"}"#, .notFound, "tenant_not_found"),
                ("/1/verify", #"{"chunkSize": 1}"#, .badRequest, "invalid_argument"),
                ("/1/switch", #"{"maxPauseMs": 0}"#, .badRequest, "invalid_argument"),
                ("/1/reverse", #"{"maxPauseMs": "soon"}"#, .badRequest, "invalid_request"),
                ("/1/complete", #"{"archive": "yes"}"#, .badRequest, "invalid_request"),
                ("/1/complete", #"{"archiveDirectory": "/tmp"}"#, .badRequest, "unknown_field"),
                ("/1/cancel", #"{"force": true}"#, .badRequest, "unknown_field"),
                ("/1/cancel", "[1]", .badRequest, "invalid_request"),
                ("/a%20b/switch", nil, .badRequest, "invalid_tenant_id"),
                ("/42/switch", nil, .notFound, "tenant_not_found"),
                ("/42/cancel", nil, .notFound, "tenant_not_found"),
            ]
            for (path, body, status, code) in cases {
                let answer = try await client.call(.post, m + path, body: body)
                #expect(answer.status == status && answer.errorCode == code, "\(path) \(body ?? "-"): \(answer.status) \(answer.text)")
            }
            let unknown = try await client.call(.get, m + "?tenant=42")
            #expect(unknown.status == .notFound && unknown.errorCode == "tenant_not_found", "\(unknown.text)")
            let wrongMethod = try await client.call(.delete, m + "/start")
            #expect(wrongMethod.status == .methodNotAllowed && wrongMethod.headers[.allow] == "POST", "\(wrongMethod.text)")
            #expect(api.jobs.all().isEmpty, "a refused request queued a job: \(api.jobs.all().map(\.kind))")
            let list = try await client.call(.get, m)
            #expect(list.status == .ok && (list.json["moves"] as? [Any])?.isEmpty == true, "\(list.text)")
        }
    }

    @Test("start (allFrom) → GET moves → verify → switch (pause measured) → status → reverse → switch → complete; start back → cancel; jobs, audited")
    func moveThroughTheAPI() async throws {
        let fixture = try await AdminFixture.make(shops: 2)
        let second = try await RestartableServer.start()
        do {
            try await flow(fixture, second)
            try await second.remove()
        } catch {
            try? await second.remove()
            throw error
        }
    }

    func flow(_ fixture: AdminFixture, _ second: RestartableServer) async throws {
        try await fixture.withAPI { client, api in
            let one = try TenantID("1")
            let operations = api.operations
            try #require(try await operations.provision(.tenants([one])).failed.isEmpty)
            let move = try await operations.move()
            try #require(try await move.migrateData(.tenants([one])).failed.isEmpty)
            try #require(try await move.cutover(.tenants([one]), maxPause: .seconds(30)).failed.isEmpty)
            try await Self.register(second, as: "s2", in: fixture)

            // allFrom: every tenant database on default (tenant 1; shop 2 was never provisioned).
            let start = try await client.runMoveJob("/start", body: #"{"allFrom": "default", "to": "s2", "reason": "test"}"#)
            #expect(start.job["state"] as? String == "succeeded", "\(start.job)")
            let result = start.job["result"] as? [String: Any]
            let started = result?["started"] as? [[String: Any]]
            #expect(started?.first?["targetServer"] as? String == "s2" && started?.first?["sourceServer"] as? String == "default", "\(start.job)")
            #expect((result?["failed"] as? [String: Any])?.isEmpty == true)

            let list = try await client.call(.get, Self.moves)
            let moving = (list.json["moves"] as? [[String: Any]])?.first
            #expect(moving?["tenant"] as? String == "1" && moving?["phase"] as? String == "moving", "\(list.text)")
            #expect(moving?["targetServer"] as? String == "s2" && moving?["reason"] as? String == "test", "\(list.text)")

            let verify = try await client.runMoveJob("/1/verify")
            #expect(verify.job["state"] as? String == "succeeded", "\(verify.job)")
            #expect((verify.job["result"] as? [String: Any])?["equal"] as? Bool == true, "\(verify.job)")

            let switched = try await client.runMoveJob("/1/switch", body: #"{"maxPauseMs": 30000}"#)
            #expect(switched.job["state"] as? String == "succeeded", "\(switched.job)")
            let pause = (switched.job["result"] as? [String: Any])?["pauseMilliseconds"] as? Double ?? -1
            #expect(pause > 0 && pause < 30_000, "\(switched.job)")
            let status = try await client.call(.get, "/api/superadmin/migration/status")
            let summary = (status.json["serverMoves"] as? [[String: Any]])?.first
            #expect(summary?["phase"] as? String == "switched" && summary?["liveServer"] as? String == "s2", "\(status.text)")
            #expect((status.json["byServer"] as? [String: Int])?["s2"] == 1, "\(status.text)")

            // Reverse (writes back on default), then switch again.
            let reversed = try await client.runMoveJob("/1/reverse", body: #"{"maxPauseMs": 30000}"#)
            #expect(reversed.job["state"] as? String == "succeeded", "\(reversed.job)")
            #expect((reversed.job["result"] as? [String: Any])?["to"] as? String == "default", "\(reversed.job)")
            #expect(try await operations.catalog.tenant(one)?.serverName == nil, "served from default again")
            let again = try await client.runMoveJob("/1/switch", body: #"{"maxPauseMs": 30000}"#)
            #expect(again.job["state"] as? String == "succeeded", "\(again.job)")

            let complete = try await client.runMoveJob("/1/complete")
            #expect(complete.job["state"] as? String == "succeeded", "\(complete.job)")
            #expect((complete.job["result"] as? [String: Any])?["droppedServer"] as? String == "default", "\(complete.job)")
            let after = try await client.call(.get, Self.moves)
            #expect((after.json["moves"] as? [Any])?.isEmpty == true, "\(after.text)")
            let latest = try await client.call(.get, Self.moves + "?tenant=1")
            #expect((latest.json["moves"] as? [[String: Any]])?.first?["phase"] as? String == "complete", "\(latest.text)")
            #expect(try await operations.catalog.tenant(one)?.serverName == "s2")

            // A move that cannot start fails its job with the engine's one line (the tenant is on s2 already).
            let refused = try await client.runMoveJob("/start", body: #"{"tenants": ["1"], "to": "s2"}"#)
            #expect(refused.job["state"] as? String == "failed", "\(refused.job)")
            #expect((refused.job["error"] as? [String: Any])?["code"] as? String == "partial_failure", "\(refused.job)")
            #expect(((refused.job["result"] as? [String: Any])?["failed"] as? [String: String])?["1"]?.contains("already on server s2") == true,
                    "\(refused.job)")

            // Back towards default, cancelled before a switch: the copy on default is dropped, s2 keeps serving.
            let back = try await client.runMoveJob("/start", body: #"{"tenants": ["1"], "to": "default"}"#)
            #expect(back.job["state"] as? String == "succeeded", "\(back.job)")
            let cancel = try await client.runMoveJob("/1/cancel")
            #expect(cancel.job["state"] as? String == "succeeded", "\(cancel.job)")
            let ended = cancel.job["result"] as? [String: Any]
            #expect(ended?["phase"] as? String == "cancelled" && ended?["server"] as? String == "s2", "\(cancel.job)")
            #expect(ended?["droppedServer"] as? String == "default", "\(cancel.job)")
            #expect(try await operations.catalog.tenant(one)?.serverName == "s2")
            // A job's own audit entry is written just after it reports its end: wait for it.
            let actions = ["api.moves.start.submit", "api.moves.start", "api.moves.verify", "api.moves.switch", "api.moves.reverse",
                           "api.moves.complete", "api.moves.cancel"]
            try await eventually("every move job is audited", within: .seconds(30)) {
                let audit = try await operations.catalog.auditLog(limit: 200).map(\.action)
                return actions.allSatisfy(audit.contains)
            }
        }
    }

    /// Registers `server` in the fixture's catalog as `name` (its admin password sealed).
    static func register(_ server: RestartableServer, as name: String, in fixture: AdminFixture) async throws {
        let url = try server.url()
        let keyring = try #require(fixture.configuration.keyring)
        let sealed = try url.password.map { try keyring.seal($0, tenant: "server:\(name)", field: "admin_password") }
        try await Catalog.withCatalog(fixture.url, logger: AdminFixture.logger) { catalog in
            try await catalog.upsertServer(ServerRecord(
                name: name, host: url.host, port: url.port, adminUser: url.user, adminPasswordSealed: sealed))
        }
    }
}

extension TestClientProtocol {
    /// Submits a server-move job under `/api/superadmin/moves` (expects 202) and waits for it.
    func runMoveJob(_ path: String, body: String? = nil) async throws -> (job: [String: Any], seen: [[String: Any]]) {
        let answer = try await call(.post, AdminServerMoveTests.moves + path, body: body)
        try #require(answer.status == .accepted, "\(path): \(answer.status) \(answer.text)")
        return try await awaitJob(try #require(answer.json["job"] as? String), timeout: .seconds(240))
    }
}
