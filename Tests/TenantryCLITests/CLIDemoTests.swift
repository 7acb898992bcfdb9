import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry demo and doctor", .timeLimit(.minutes(6)))
struct CLIDemoTests {
    /// What the CI run relies on: the short demo moves every shop under load, verified, with
    /// nothing lost and no load error.
    @Test("a short demo: every phase under load, verified, zero lost rows, zero load errors; cleans up after itself")
    func shortDemo() async throws {
        let server = try await TestPostgres.url()
        let result = try await CLIRunner.run(
            ["demo", "--shops", "3", "--rows-per-shop", "40", "--rate", "40", "--phase-seconds", "0.5", "--json"],
            environment: ["DATABASE_URL": server.urlStringWithPassword], in: try CLIRunner.makeDirectory())
        #expect(result.status == 0, "\(result.stderr.suffix(3000))")
        let report = try JSONSerialization.jsonObject(with: Data(result.lastLine.utf8)) as? [String: Any] ?? [:]
        #expect(report["verified"] as? Bool == true)
        #expect(report["lost_rows"] as? Int == 0, "\(report["lost"] ?? "") \(report["differences"] ?? "")")
        #expect(report["load_errors"] as? Int == 0, "\(report["error_samples"] ?? "")")
        #expect((report["rows_moved"] as? Int ?? 0) > 100)
        #expect((report["writes_during_move"] as? Int ?? 0) > 0)
        #expect((report["rows_retired"] as? Int ?? 0) >= (report["rows_moved"] as? Int ?? 1))
        #expect(report["p99_ms_unified"] as? Double != nil && report["p99_ms_tenant"] as? Double != nil)
        let phases = (report["phases"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        for phase in ["provision", "migrate-data", "dual-write", "verify-sync", "reads canary", "reads percentage 50",
                      "reads tenant", "cutover", "verify (reverse sync)", "retire-legacy", "final check"] {
            #expect(phases.contains(phase), "phase \(phase) missing from \(phases)")
        }
        // Progress went to standard error, phase by phase.
        #expect(result.stderr.contains("▶ migrate-data") && result.stderr.contains("✓ cutover"))
        // The phases ran through the library's operations, the very calls 'tenantry provision', 'migrate-data',
        // 'verify-sync' and 'cutover' make: their per-tenant progress lines are the demo's too.
        for line in ["] tenant 1: created ", "] tenant 1: ", " rows in ", "] tenant 1: equal (", "] tenant 1: dedicated (writes paused "] {
            #expect(result.stderr.contains(line), "no '\(line)' in the demo's progress")
        }
        #expect(report["cutover_retries"] as? Int != nil)
        // Nothing of the demo is left on a server it does not own (its own databases: another test's demo may run meanwhile).
        let left = try await TestPostgres.strings(server, try Self.demoDatabases(result.stderr))
        #expect(left == [])
    }

    @Test("SIGTERM mid-demo: the phases stop, load, relay and router stop gracefully, the demo's databases are removed")
    func stoppedBySignal() async throws {
        let server = try await TestPostgres.url()
        let (status, stderr) = try await runSignalled(
            ["demo", "--shops", "3", "--rows-per-shop", "40", "--rate", "40", "--phase-seconds", "2"],
            environment: ["DATABASE_URL": server.urlStringWithPassword], directory: try CLIRunner.makeDirectory(),
            signal: "TERM", after: 5)
        #expect(status == 1, "a handled stop, not the signal's default (143): \(stderr.suffix(2000))")
        #expect(stderr.contains("▶ load on the unified database"), "\(stderr.suffix(2000))")
        #expect(stderr.contains("stopped by a signal before the end; the demo's databases were removed"), "\(stderr.suffix(2000))")
        let left = try await TestPostgres.strings(server, try Self.demoDatabases(stderr))
        #expect(left == [], "nothing of the demo is left")
    }

    /// A query for the databases of the demo whose progress is `stderr`: setup names its database
    /// (`(database tenantry_demo_…)`), and its tenants' databases start with that name.
    static func demoDatabases(_ stderr: String) throws -> String {
        let tag = try #require(stderr.range(of: #"\(database tenantry_demo_[a-z0-9]+\)"#, options: .regularExpression)
            .map { String(stderr[$0].dropFirst("(database ".count).dropLast()) }, "\(stderr.suffix(2000))")
        return "SELECT datname::text FROM pg_database WHERE datname = '\(tag)' OR datname LIKE '\(tag)\\_%'"
    }

    @Test("bad demo options: one clear line, nothing created")
    func badOptions() async throws {
        let result = try await CLIRunner.run(["demo", "--shops", "0"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("--shops must be from 1 to 200"))
    }

    @Test("doctor: passes on a provisioned setup; names the failing check otherwise")
    func doctor() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 20)
        // guard install shuts tenant roles out of the unified database: doctor's isolation check.
        for arguments in [["schema", "derive"], ["init"], ["provision", "--all"], ["guard", "install"]] {
            let step = try await fixture.run(arguments)
            #expect(step.status == 0, "\(arguments): \(step.stderr)")
        }
        let healthy = try await fixture.run(["doctor", "--json"])
        #expect(healthy.status == 0, "\(healthy.stdout)\n\(healthy.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(healthy.lastLine.utf8)) as? [String: Any] ?? [:]
        #expect(report["failed"] as? Int == 0)
        let names = (report["checks"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        for name in ["configuration", "connection", "catalog", "credentials", "connections", "writes"] {
            #expect(names.contains(name), "check \(name) missing: \(names)")
        }
        // The wrong key: tenant logins cannot be opened, and doctor says so.
        var environment = fixture.environment
        environment["TENANT_ENCRYPTION_KEY"] = EncryptionKey.generate().hex
        let wrongKey = try await CLIRunner.run(["doctor"], environment: environment, in: fixture.directory)
        #expect(wrongKey.status != 0)
        #expect(wrongKey.stdout.contains("FAIL  tenant configuration: credentials"), "\(wrongKey.stdout)")
        #expect(!wrongKey.stdout.contains(fixture.key.hex) && !wrongKey.stdout.contains(environment["TENANT_ENCRYPTION_KEY"] ?? "-"))
    }
}
