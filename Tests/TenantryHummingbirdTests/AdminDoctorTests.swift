import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("admin API: GET /api/superadmin/doctor", .timeLimit(.minutes(3)))
struct AdminDoctorTests {
    @Test("the doctor's typed checks as JSON, behind the token; sample validated; no secret in the answer")
    func doctor() async throws {
        let fixture = try await AdminFixture.make(shops: 2)
        try await fixture.withAPI { client, _ in
            let provision = try await client.runJob("provision-all", body: #"{"all": true}"#)
            #expect(provision.job["state"] as? String == "succeeded", "\(provision.job)")

            let answer = try await client.call(.get, "/api/superadmin/doctor?sample=0")
            #expect(answer.status == .ok, "\(answer.text)")
            let checks = answer.json["checks"] as? [[String: Any]] ?? []
            func check(_ name: String) -> [String: Any]? { checks.first { $0["name"] as? String == name } }
            for name in ["configuration", "connection", "catalog", "capture", "tenants", "credentials", "connections", "writes"] {
                #expect(check(name)?["status"] as? String == "pass", "\(name): \(check(name) ?? [:])")
            }
            #expect(check("credentials")?["detail"] as? String == "2 tenant login(s) decrypt with the current keyring")
            // No guard installed: tenant roles can still reach the unified database, and the doctor says so.
            #expect(check("isolation")?["status"] as? String == "fail" && check("isolation")?["passed"] as? Bool == false)
            #expect(answer.json["failed"] as? Int == checks.filter { $0["status"] as? String == "fail" }.count)
            let key = try #require(fixture.configuration.keyring?.current.hex)
            #expect(!answer.text.contains(key) && !answer.text.contains(AdminFixture.token))

            let anonymous = try await client.call(.get, "/api/superadmin/doctor", token: nil)
            #expect(anonymous.status == .unauthorized)
            let bad = try await client.call(.get, "/api/superadmin/doctor?sample=-1")
            #expect(bad.status == .badRequest && bad.errorCode == "invalid_argument", "\(bad.text)")
            // The document declares the route (GET only).
            let post = try await client.call(.post, "/api/superadmin/doctor", body: "{}")
            #expect(post.status == .methodNotAllowed, "\(post.text)")
        }
    }
}
