import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("CLI: tenantry guard", .timeLimit(.minutes(3)))
struct CLIGuardTests {
    @Test("guard install --json, a re-run changes nothing, status shows it, a bad role is one clear line, uninstall")
    func guardCommands() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 30)
        let role = "cliapp_\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await TestPostgres.strings(fixture.url, "CREATE ROLE \(role) NOLOGIN")
        #expect(try await fixture.run(["init"]).status == 0)

        let install = try await fixture.run(["guard", "install", "--app-role", role, "--json"])
        #expect(install.status == 0, "\(install.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(install.lastLine.utf8)) as? [String: Any])
        #expect((report["tables"] as? [String])?.count == 19)
        #expect(report["auditMode"] as? String == "dblink" && report["appRoles"] as? [String] == [role])
        #expect(report["captureInstalled"] as? Bool == true)

        let again = try await fixture.run(["guard", "install"])
        #expect(again.status == 0 && again.stdout.contains("(0 changed by this run)"), "\(again.stdout)\(again.stderr)")
        #expect(again.stdout.contains("row-level security: on for \(role)"), "\(again.stdout)")

        let status = try await fixture.run(["guard", "status"])
        #expect(status.status == 0 && status.stdout.contains("guarded tables: 19"), "\(status.stdout)")

        let bad = try await fixture.run(["guard", "install", "--app-role", "postgres"])
        #expect(bad.status != 0 && bad.stderr.contains("--app-role postgres is a superuser"), "\(bad.stderr)")

        let removed = try await fixture.run(["guard", "uninstall", "--yes", "--json"])
        #expect(removed.status == 0, "\(removed.stderr)")
        let after = try await fixture.run(["guard", "status", "--json"])
        let state = try #require(try JSONSerialization.jsonObject(with: Data(after.lastLine.utf8)) as? [String: Any])
        #expect(state["installed"] as? Bool == false)
    }
}
