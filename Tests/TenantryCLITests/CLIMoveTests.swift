import EmbeddedPostgres
import Foundation
import HandyShop
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// A HandyShop unified database and a working directory, with the environment that keeps this
/// test's tenant databases apart from every other test's.
struct CLIMoveFixture {
    let url: PostgresURL
    let directory: String
    let key = EncryptionKey.generate()
    var prefix: String { url.database }

    static func make(shops: Int, rowsPerShop: Int = 150) async throws -> CLIMoveFixture {
        let url = try await TestPostgres.makeDatabase("climove")
        try await Database.withConnection(url, logger: TestPostgres.logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: TestPostgres.logger)
            _ = try await HandyShopGenerator(options: .init(shops: shops, rowsPerShop: rowsPerShop, seed: 11))
                .generate(on: connection, logger: TestPostgres.logger)
        }
        return CLIMoveFixture(url: url, directory: try CLIRunner.makeDirectory())
    }

    var environment: [String: String] {
        [
            "DATABASE_URL": url.urlStringWithPassword,
            "TENANT_ENCRYPTION_KEY": key.hex,
            "TENANTRY_DATABASE_TEMPLATE": "\(prefix)_{id}_db",
            "TENANTRY_ROLE_TEMPLATE": "\(prefix)_u_{id}",
            "TENANTRY_TEMPLATE_DATABASE": "\(prefix)_tpl",
        ]
    }

    func run(_ arguments: [String]) async throws -> CLIRunner.Result {
        try await CLIRunner.run(arguments, environment: environment, in: directory)
    }

    /// Starts `tenantry arguments…`, SIGKILLs it after `seconds`, and returns its exit status
    /// (137 when it was still running).
    func runKilled(_ arguments: [String], after seconds: Double) async throws -> Int32 {
        let envArgs = environment.merging(["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": "/tmp"]) { $1 }
            .map { ProcessRunner.quote("\($0.key)=\($0.value)") }.joined(separator: " ")
        let command = "cd \(ProcessRunner.quote(directory)) && env -i \(envArgs) "
            + ([CLIRunner.binary] + arguments).map(ProcessRunner.quote).joined(separator: " ")
            + " >/dev/null 2>&1 & pid=$!; sleep \(String(format: "%.2f", seconds)); kill -9 $pid 2>/dev/null; wait $pid; echo status=$?"
        let output = try await ProcessRunner().run("/bin/sh", ["-c", command])
        return Int32(output.text.components(separatedBy: "status=").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
    }

    /// Tables whose rows differ between unified and a tenant database (independent of the verifier).
    func differences(_ tenant: TenantID) async throws -> [String] {
        let plan = try await Database.withConnection(url, logger: TestPostgres.logger) { connection in
            try await MovePlan.load(connection, discriminator: "shop_id", logger: TestPostgres.logger)
        }
        let tenantURL = try await TestPostgres.url(database: "\(prefix)_\(tenant.rawValue)_db")
        var result: [String] = []
        for table in plan.tables {
            let columns = table.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
            let unified = try await TestPostgres.strings(
                url, "SELECT ROW(\(columns))::text FROM \"\(table.name)\" WHERE shop_id = \(tenant.rawValue) ORDER BY 1")
            let copy = try await TestPostgres.strings(tenantURL, "SELECT ROW(\(columns))::text FROM \"\(table.name)\" ORDER BY 1")
            if unified != copy {
                let u = Set(unified.compactMap { $0 }), t = Set(copy.compactMap { $0 })
                result.append("\(table.name): unified \(unified.count) rows, tenant \(copy.count) rows; only in unified: "
                    + "\(u.subtracting(t).sorted().prefix(2)); only in tenant: \(t.subtracting(u).sorted().prefix(2))")
            }
        }
        return result
    }
}

@Suite("tenantry migrate-data, sync, verify-sync, dlq (CLI)", .timeLimit(.minutes(6)))
struct CLIMoveTests {
    @Test("copier and relay SIGKILLed at random points under writes, re-run: verify-sync equal, rows equal, no duplicates")
    func killedCopierAndRelay() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 6)
        let derive = try await fixture.run(["schema", "derive"])
        try #require(derive.status == 0, "\(derive.stderr)")
        let initRun = try await fixture.run(["init"])
        try #require(initRun.status == 0, "\(initRun.stderr)")
        #expect(initRun.stdout.contains("capture installed on 19 tenant table(s)"), "\(initRun.stdout)")
        let provision = try await fixture.run(["provision", "--all", "--json"])
        try #require(provision.status == 0, "\(provision.stderr)")
        let ids = try (1...6).map { try TenantID("\($0)") }

        let stop = NIOLockedValueBox(false)
        let writers = (0..<2).map { index in
            Task { try await HandyShopWriter(url: fixture.url, shops: ids, seed: UInt64(100 + index)).run(until: stop) }
        }
        var random = SystemRandomNumberGenerator()
        let copyKill = Double.random(in: 0.4...1.2, using: &random)
        let copyStatus = try await fixture.runKilled(["migrate-data", "--all", "--concurrency", "1"], after: copyKill)
        let copy = try await fixture.run(["migrate-data", "--all", "--json"])
        #expect(copy.status == 0, "\(copy.stderr)")
        let relayKill = Double.random(in: 0.5...1.5, using: &random)
        let relayStatus = try await fixture.runKilled(["sync", "run"], after: relayKill)
        #expect(relayStatus == 137, "the relay is a long-lived service: it was still running when killed")
        try await Task.sleep(for: .milliseconds(300))
        stop.withLockedValue { $0 = true }
        var writes = 0
        for writer in writers { writes += try await writer.value }
        #expect(writes > 20, "the writers committed \(writes) transactions")

        let caughtUp = try await fixture.run(["sync", "run", "--until-caught-up", "--json"])
        #expect(caughtUp.status == 0, "\(caughtUp.stderr)")
        let verify = try await fixture.run(["verify-sync", "--all", "--json"])
        #expect(verify.status == 0, "copy killed after \(copyKill) s (status \(copyStatus)), relay after \(relayKill) s: \(verify.stdout)")
        let object = try JSONSerialization.jsonObject(with: Data(verify.lastLine.utf8)) as? [String: Any]
        #expect(object?["equal"] as? Bool == true)
        for tenant in (object?["tenants"] as? [[String: Any]]) ?? [] {
            for table in (tenant["tables"] as? [[String: Any]]) ?? [] where (table["differenceCount"] as? Int ?? 0) > 0 {
                Issue.record("tenant \(tenant["tenant"] ?? "?") \(table)")
            }
        }
        #expect((object?["tenants"] as? [Any])?.count == 6)
        for id in ids {
            let differences = try await fixture.differences(id)
            #expect(differences.isEmpty, "tenant \(id): \(differences)")
        }
        let status = try await fixture.run(["status", "--json"])
        let capture = try #require(
            (try JSONSerialization.jsonObject(with: Data(status.lastLine.utf8)) as? [String: Any])?["capture"] as? [[String: Any]])
        #expect(capture.count == 6)
        #expect(capture.allSatisfy { $0["queueDepth"] as? Int == 0 && $0["deadLetters"] as? Int == 0 })
        let dlq = try await fixture.run(["dlq", "list"])
        #expect(dlq.stdout.contains("no dead letters"))
    }

    @Test("bad input: one clear line, nothing changed")
    func badInput() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 1, rowsPerShop: 20)
        let before = try await fixture.run(["migrate-data", "--all"])
        #expect(before.status != 0)
        #expect(before.stderr.contains("catalog") || before.stderr.contains("capture"), "\(before.stderr)")
        #expect(try await fixture.run(["init"]).status == 0)
        let badID = try await fixture.run(["migrate-data", "--tenant", "1;drop table x"])
        #expect(badID.status != 0)
        #expect(badID.stderr.contains("tenant id"), "\(badID.stderr)")
        let notProvisioned = try await fixture.run(["migrate-data", "--tenant", "1"])
        #expect(notProvisioned.status != 0)
        #expect(notProvisioned.stderr.contains("not in the catalog"), "\(notProvisioned.stderr)")
        let delays = try await fixture.run(["sync", "run", "--until-caught-up", "--retry-delays", "1,x"])
        #expect(delays.status != 0 && delays.stderr.contains("--retry-delays"), "\(delays.stderr)")
        let both = try await fixture.run(["verify-sync", "--all", "--tenant", "1"])
        #expect(both.status != 0)
        let unconfirmed = try await fixture.run(["retire-legacy"])
        #expect(unconfirmed.status != 0 && unconfirmed.stderr.contains("--yes"), "\(unconfirmed.stderr)")
        let nothing = try await fixture.run(["retire-legacy", "--yes"])
        #expect(nothing.status != 0 && nothing.stderr.contains("no dedicated tenant"), "\(nothing.stderr)")
        let noArchive = try await fixture.run(["restore-legacy", "--archive-dir", "/nonexistent"])
        #expect(noArchive.status != 0 && noArchive.stderr.contains("not a retire-legacy archive"), "\(noArchive.stderr)")
        #expect(try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM tenantry.changes") == ["0"])
    }
}

@Suite("tenantry dual-write (CLI)", .timeLimit(.minutes(4)))
struct CLIDualWriteTests {
    @Test("dual-write disable pauses applying while capture keeps the backlog; enable applies it: equal")
    func pauseAndResume() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 40)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"], ["migrate-data", "--all"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        let disable = try await fixture.run(["dual-write", "disable", "--tenant", "1"])
        #expect(disable.status == 0, "\(disable.stderr)")
        #expect(disable.stdout == "dual-write disabled (capture keeps recording) for 1 tenant(s)\n", "\(disable.stdout)")
        try await Database.withConnection(fixture.url, logger: TestPostgres.logger) { connection in
            for shop in [Int64(1), 2] {
                try await connection.query(
                    "UPDATE customers SET notes = 'while paused' WHERE shop_id = \(shop)", logger: TestPostgres.logger)
            }
        }
        let paused = try await fixture.run(["sync", "run", "--until-caught-up"])
        #expect(paused.status == 0, "\(paused.stderr)")
        #expect(paused.stdout.contains("tenant 1 is paused: dual-write disabled"), "\(paused.stdout)")
        #expect(try await fixture.differences(try TenantID("2")) == [])
        #expect(try await fixture.differences(try TenantID("1")) != [], "tenant 1 is paused: its copy is behind")
        let depth = try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM tenantry.changes WHERE tenant_id = '1'")
        #expect(depth != ["0"], "the backlog is kept")
        let verify = try await fixture.run(["verify-sync", "--tenant", "1"])
        #expect(verify.status != 0, "a paused tenant differs: \(verify.stdout)")

        let enable = try await fixture.run(["dual-write", "enable", "--tenant", "1"])
        #expect(enable.status == 0, "\(enable.stderr)")
        #expect(enable.stdout == "dual-write enabled for 1 tenant(s)\n", "\(enable.stdout)")
        let resumed = try await fixture.run(["sync", "run", "--until-caught-up"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try await fixture.differences(try TenantID("1")) == [])
        let verified = try await fixture.run(["verify-sync", "--all"])
        #expect(verified.status == 0, "\(verified.stdout)")
        #expect(verified.stdout.contains("2 of 2 tenant(s) equal"))
    }
}

@Suite("tenantry cutover and rollback (CLI)", .timeLimit(.minutes(4)))
struct CLICutoverTests {
    @Test("cutover: unified refuses the shop's direct writes, tenant-DB writes sync back, verify equal; rollback: unified again")
    func cutoverAndBack() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 40)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        let copy = try await fixture.run(["migrate-data", "--all"])
        try #require(copy.status == 0, "\(copy.stderr)")
        #expect(copy.stderr.contains("tenantry: copying 2 tenant(s), 2 at a time\n"), "\(copy.stderr)")
        #expect(copy.stderr.contains("] tenant 1: ") && copy.stderr.contains(" rows/s) — "), "\(copy.stderr)")
        #expect(copy.stdout.hasPrefix("2 copied (") && copy.stdout.contains(" rows), 0 already copied, 0 failed\n"), "\(copy.stdout)")
        #expect(copy.lastLine == "next: 'tenantry sync run' applies the writes captured since the snapshot")
        let unknown = try await fixture.run(["cutover", "--tenant", "9"])
        #expect(unknown.status == 1)
        #expect(unknown.stdout.hasPrefix("0 tenant(s) cut over, 1 failed\n  tenant 9: "), "\(unknown.stdout)")
        #expect(unknown.stderr.contains("tenantry: [1/1] tenant 9: FAILED: "), "\(unknown.stderr)")
        let badPause = try await fixture.run(["cutover", "--tenant", "1", "--max-pause", "soon"])
        #expect(badPause.status != 0 && badPause.stderr.contains("--max-pause"), "\(badPause.stderr)")
        // A generous pause bound: the test machine runs every suite at once (the cutover benchmark measures the pause).
        let cutover = try await fixture.run(["cutover", "--tenant", "1", "--max-pause", "30s", "--json"])
        #expect(cutover.status == 0, "\(cutover.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(cutover.lastLine.utf8)) as? [String: Any]
        let pause = ((report?["cutover"] as? [[String: Any]])?.first?["pauseMilliseconds"] as? Double) ?? -1
        #expect(pause > 0 && pause < 30_000, "pause \(pause) ms")

        await #expect {
            try await Database.withConnection(fixture.url, logger: TestPostgres.logger) { connection in
                try await connection.query("UPDATE customers SET notes = 'direct' WHERE shop_id = 1", logger: TestPostgres.logger)
            }
        } throws: { Database.message(of: $0).contains("tenant 1 has moved") }
        // The application now writes to the tenant database; reverse sync brings it back to unified.
        let tenantURL = try await TestPostgres.url(database: "\(fixture.prefix)_1_db")
        try await Database.withConnection(tenantURL, logger: TestPostgres.logger) { connection in
            try await connection.query("UPDATE customers SET notes = 'in the tenant db'", logger: TestPostgres.logger)
            try await connection.query(
                "INSERT INTO customers (first_name, last_name, email) VALUES ('New', 'Row', 'new@example.com')", logger: TestPostgres.logger)
        }
        let sync = try await fixture.run(["sync", "run", "--until-caught-up"])
        #expect(sync.status == 0, "\(sync.stderr)")
        #expect(try await fixture.differences(try TenantID("1")) == [])
        let verify = try await fixture.run(["verify-sync", "--all"])
        #expect(verify.status == 0, "\(verify.stdout)")
        #expect(verify.stderr.contains("/2] tenant 1: equal (19 tables, ") && verify.stderr.hasPrefix("tenantry: ["), "\(verify.stderr)")
        #expect(verify.stdout == "2 of 2 tenant(s) equal\n", "\(verify.stdout)")

        let rollback = try await fixture.run(["rollback", "--tenant", "1"])
        #expect(rollback.status == 0, "\(rollback.stderr)")
        #expect(rollback.stdout == "tenant 1: shared again (unified serves its reads and writes)\n", "\(rollback.stdout)")
        try await Database.withConnection(fixture.url, logger: TestPostgres.logger) { connection in
            try await connection.query("UPDATE customers SET notes = 'unified again' WHERE shop_id = 1", logger: TestPostgres.logger)
        }
        let notes = try await TestPostgres.strings(fixture.url, "SELECT DISTINCT notes FROM customers WHERE shop_id = 1")
        #expect(notes == ["unified again"])
        let rows = try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM customers WHERE email = 'new@example.com'")
        #expect(rows == ["1"], "the row made in the tenant database is in unified")
        let status = try await fixture.run(["status", "--json"])
        #expect(status.stdout.contains("\"shared\""), "\(status.stdout)")
    }
}
