import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry reads, rollback-reads, performance (CLI)", .timeLimit(.minutes(5)))
struct CLIReadsTests {
    /// The stored read policy, as text: strategy, percentage, shops, canaries, fallback, verify.
    static func storedPolicy(_ fixture: CLIProvisioningFixture) async throws -> String? {
        try await TestPostgres.strings(fixture.url, """
            SELECT concat_ws(' ', strategy, percentage, array_to_string(shop_ids, ','), array_to_string(canary_ids, ','),
                             enable_fallback::text, verify_consistency::text)
            FROM tenantry.read_policy
            """).first ?? nil
    }

    @Test("reads <strategy> stores the policy; rollback-reads goes back to unified at once; both audited")
    func setAndRollBack() async throws {
        let fixture = try await CLIProvisioningFixture.make("clird")
        defer { fixture.remove() }
        #expect(try await Self.storedPolicy(fixture) == "unified 0   true false")

        let canary = try await fixture.run(["reads", "canary", "--canary", "1,2", "--no-fallback", "--verify-consistency"])
        #expect(canary.status == 0, "\(canary.stderr)")
        #expect(canary.lastLine.hasPrefix("reads: canary [1,2], fallback off, consistency checks on"), "\(canary.stdout)")
        #expect(canary.stderr.contains("tenant 1 has no database yet"), "\(canary.stderr)")
        #expect(try await Self.storedPolicy(fixture) == "canary 0  1,2 false true")

        let percentage = try await fixture.run(["reads", "percentage", "--percentage", "30", "--json"])
        #expect(percentage.status == 0, "\(percentage.stderr)")
        let policy = try JSONDecoder().decode(ReadPolicy.self, from: Data(percentage.lastLine.utf8))
        #expect(policy.strategy == .percentage && policy.percentage == 30)
        #expect(policy.canaryIDs.map(\.rawValue) == ["1", "2"] && !policy.enableFallback, "options not given are kept")

        let rollback = try await fixture.run(["rollback-reads"])
        #expect(rollback.status == 0, "\(rollback.stderr)")
        #expect(rollback.lastLine.hasPrefix("reads: unified (was percentage 30%"), "\(rollback.stdout)")
        #expect(try await Self.storedPolicy(fixture) == "unified 30  1,2 false true")

        let audit = try await TestPostgres.strings(fixture.url, """
            SELECT action || ' ' || (detail->>'strategy') || ' ' || (detail->>'previous')
            FROM tenantry.audit_log WHERE action LIKE 'reads.%' ORDER BY id
            """)
        #expect(audit == ["reads.set canary unified", "reads.set percentage canary", "reads.rollback unified percentage"])
    }

    @Test("bad input: one clear line, non-zero exit, nothing stored", arguments: [
        (["reads", "percentage", "--percentage", "150"], "--percentage must be from 0 to 100 (got 150)"),
        (["reads", "percentage", "--percentage=-1"], "--percentage must be from 0 to 100 (got -1)"),
        (["reads", "percentage"], "needs --percentage"),
        (["reads", "tenant", "--percentage", "5"], "--percentage applies to the percentage strategy only"),
        (["reads", "shop-list"], "needs --shops"),
        (["reads", "shop-list", "--shops", "1,Bad!"], "is invalid"),
        (["reads", "canary", "--canary", ""], "is invalid"),
        (["reads", "canary", "--shops", "1"], "--shops applies to the shop-list strategy only"),
        (["reads", "everything"], "unknown read strategy 'everything'"),
        (["reads", "tenant", "--sample-rate", "2"], "--sample-rate must be from 0 to 1"),
    ])
    func badInput(_ arguments: [String], _ message: String) async throws {
        let fixture = try await CLIProvisioningFixture.make("clirdx")
        defer { fixture.remove() }
        let result = try await fixture.run(arguments)
        #expect(result.status != 0, "\(arguments)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix("tenantry: error:") && lines[0].contains(message), "\(arguments): \(result.stderr)")
        #expect(result.stdout.isEmpty)
        #expect(try await Self.storedPolicy(fixture) == "unified 0   true false")
    }

    @Test("performance --compare: measured unified vs tenant latencies of provisioned tenants, as a table and as JSON")
    func performance() async throws {
        let fixture = try await CLIProvisioningFixture.make("cliperf")
        defer { fixture.remove() }
        let provision = try await fixture.run(["provision", "1", "2"])
        try #require(provision.status == 0, "\(provision.stderr)")
        try await Database.withConnection(fixture.url, logger: TestPostgres.logger) { connection in
            try await Database.execute(script: """
                CREATE TABLE customers (shop_id bigint NOT NULL, id bigint NOT NULL, name text, PRIMARY KEY (shop_id, id));
                INSERT INTO customers SELECT s, i, 'c' || i FROM generate_series(1, 3) s, generate_series(1, 200) i;
                CREATE TABLE settings (key text PRIMARY KEY, value text);
                """, on: connection, logger: TestPostgres.logger)
        }
        for id in ["1", "2"] {
            try await Database.withConnection(
                try await fixture.tenantURL(id, password: try await fixture.password(id)), logger: TestPostgres.logger
            ) { connection in
                try await connection.query(
                    "INSERT INTO customers (name) SELECT 'c' || i FROM generate_series(1, 200) i", logger: TestPostgres.logger)
            }
        }

        let table = try await fixture.run(["performance", "--compare", "--duration", "1"])
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("sample workload: 2 tenant(s), tables customers, ") == true, "\(table.stdout)")
        #expect(lines.contains("Performance: unified DB vs tenant DBs (all tenants)"), "\(table.stdout)")
        for label in ["P50 latency", "P95 latency", "P99 latency"] {
            let row = try #require(lines.first { $0.hasPrefix(label) }, "\(table.stdout)")
            #expect(row.components(separatedBy: " ms").count == 3, "two measured latencies: \(row)")
            #expect(row.hasSuffix("%"), "a measured change: \(row)")
        }

        let json = try await fixture.run(["performance", "--compare", "--duration", "1", "--tenants", "2", "--json"])
        #expect(json.status == 0, "\(json.stderr)")
        struct Report: Decodable {
            struct Workload: Decodable { var tenants: [String]; var tables: [String]; var queriesPerSide: Int }
            var workload: Workload
            var comparison: PerformanceMonitor.Comparison
        }
        let report = try JSONDecoder().decode(Report.self, from: Data(json.lastLine.utf8))
        #expect(report.workload.tenants == ["2"] && report.workload.tables == ["customers"])
        #expect(report.workload.queriesPerSide > 10)
        // Every read ran on both sides and each was recorded once, without errors.
        #expect(report.comparison.unified.count == report.workload.queriesPerSide)
        #expect(report.comparison.tenantDatabases.count == report.workload.queriesPerSide)
        #expect(report.comparison.unified.errors == 0 && report.comparison.tenantDatabases.errors == 0)
        #expect(report.comparison.unified.p50Ms > 0 && report.comparison.tenantDatabases.p50Ms > 0)
        #expect(report.comparison.unified.p99Ms >= report.comparison.unified.p50Ms)

        let unknown = try await fixture.run(["performance", "--duration", "1", "--tenants", "9"])
        #expect(unknown.status != 0 && unknown.stderr.contains("tenant 9 has no database"), "\(unknown.stderr)")
    }
}
