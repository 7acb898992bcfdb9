import EmbeddedPostgres
import Foundation
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry handyshop serve (CLI)", .timeLimit(.minutes(4)))
struct CLIHandyShopTests {
    @Test("a write for a syncing shop is in the shop's database when the request returns (the relay runs alongside)")
    func readYourWritesWhileSyncing() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 20)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"], ["migrate-data", "--tenant", "1"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        // Below Linux's ephemeral range (32768–60999), so no outgoing connection of a parallel test holds it;
        // a port another test's server took anyway is a retry on another port.
        let stderrFile = "\(fixture.directory)/serve.err"
        var port = 0
        var server = Process()
        defer { if server.isRunning { server.terminate() } }
        func curl(_ arguments: [String]) async throws -> String {
            try await ProcessRunner().run(
                "/usr/bin/curl", ["-s", "-H", "X-Tenant-ID: 1", "-H", "Content-Type: application/json"] + arguments).text
        }
        var ready = false
        for _ in 0..<5 where !ready {
            port = Int.random(in: 20_000..<32_000)
            server = Process()
            server.executableURL = URL(fileURLWithPath: "/bin/sh")
            server.arguments = [
                "-c", "exec \(ProcessRunner.quote(CLIRunner.binary)) handyshop serve --port \(port) 2>\(ProcessRunner.quote(stderrFile))",
            ]
            server.environment = fixture.environment.merging(["PATH": "/usr/bin:/bin", "HOME": "/tmp"]) { $1 }
            server.currentDirectoryURL = URL(fileURLWithPath: fixture.directory)
            try server.run()
            for _ in 0..<100 where !ready && server.isRunning {
                ready = (try? await curl(["-f", "http://127.0.0.1:\(port)/customers?limit=1"]))?.contains("customers") == true
                if !ready { try await Task.sleep(for: .milliseconds(200)) }
            }
            let notes = (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? ""
            if !ready && !notes.contains("Address already in use") { break }
        }
        try #require(ready, "handyshop serve did not answer: \((try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? "")")

        let tenantURL = try await TestPostgres.url(database: "\(fixture.prefix)_1_db")
        for index in 0..<5 {
            let email = "ryw.\(index)@example.com"
            let created = try await curl([
                "-X", "POST", "http://127.0.0.1:\(port)/customers",
                "-d", #"{"firstName": "Read", "lastName": "Own", "email": "\#(email)"}"#,
            ])
            #expect(created.contains(email), "\(created)")
            let rows = try await TestPostgres.strings(tenantURL, "SELECT count(*)::text FROM customers WHERE email = '\(email)'")
            #expect(rows == ["1"], "write \(index) is in the tenant database when the request returns")
        }
        server.terminate()
        server.waitUntilExit()
        let notes = (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? ""
        #expect(notes.contains("HandyShop on http://127.0.0.1:\(port), relay running"), "\(notes)")
    }
}
