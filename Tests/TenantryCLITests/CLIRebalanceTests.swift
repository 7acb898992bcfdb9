import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry servers set|drain and rebalance (CLI)", .timeLimit(.minutes(5)))
struct CLIRebalanceTests {
    @Test("budgets: add --max-bytes, set, list; a bad size is one line; rebalance --plan names the move and why; drain without room changes nothing")
    func budgetsPlanAndDrain() async throws {
        let fixture = try await CLIProvisioningFixture.make("clireb")
        defer { fixture.remove() }
        // Two names for the shared server: plans and budgets are the catalog's, not the hardware's.
        let url = try await TestPostgres.server().url()
        let bad = try await fixture.run(["servers", "add", "one", "--max-bytes", "lots"], ["TENANTRY_SERVER_URL": url])
        #expect(bad.status != 0)
        #expect(bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        #expect(bad.stderr.hasPrefix("tenantry: error: --max-bytes 'lots' is not a size: write a positive number with a unit, like 10GB"), "\(bad.stderr)")
        for (name, budget) in [("one", "10GB"), ("two", "1TB")] {
            let add = try await fixture.run(["servers", "add", name, "--max-bytes", budget], ["TENANTRY_SERVER_URL": url])
            #expect(add.status == 0 && add.stdout.contains("budget \(budget.replacingOccurrences(of: "GB", with: " GB").replacingOccurrences(of: "TB", with: " TB"))"),
                    "\(add.stdout)\(add.stderr)")
        }
        for id in ["1", "2"] {
            let provision = try await fixture.run(["provision", id, "--server", "one"])
            #expect(provision.status == 0, "\(provision.stderr)")
            _ = try await TestPostgres.strings(
                fixture.url, "INSERT INTO tenantry.moves (tenant_id, phase) VALUES ('\(id)', 'dedicated') "
                    + "ON CONFLICT (tenant_id) DO UPDATE SET phase = 'dedicated'")
        }
        let sizes = try await TestPostgres.strings(
            fixture.url, "SELECT sum(pg_database_size(datname))::text FROM pg_database WHERE datname IN "
                + "('\(fixture.database("1"))', '\(fixture.database("2"))')")
        let onOne = try #require(sizes.first.flatMap { $0.flatMap { Int64($0) } })

        let set = try await fixture.run(["servers", "set", "one", "--max-bytes", "\(onOne - 1024 * 1024)"])
        #expect(set.status == 0 && set.stdout.hasPrefix("server one: budget "), "\(set.stdout)\(set.stderr)")
        let list = try await fixture.run(["servers", "list", "--json"])
        let servers = try #require(try JSONSerialization.jsonObject(with: Data(list.lastLine.utf8)) as? [String: Any])["servers"] as? [[String: Any]]
        #expect(servers?.first { $0["name"] as? String == "one" }?["maxBytes"] as? Int64 == onOne - 1024 * 1024, "\(list.stdout)")
        #expect(try await fixture.run(["servers", "list"]).stdout.contains("budget 1 TB"))

        let plan = try await fixture.run(["rebalance", "--plan", "--json", "--sample", "0"])
        #expect(plan.status == 0, "\(plan.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(plan.lastLine.utf8)) as? [String: Any])
        let moves = try #require((object["plan"] as? [String: Any])?["moves"] as? [[String: Any]])
        #expect(moves.first?["from"] as? String == "one" && moves.first?["to"] as? String == "two", "\(moves)")
        #expect((moves.first?["reason"] as? String)?.hasPrefix("server one is over its byte budget (") == true, "\(moves)")
        let text = try await fixture.run(["rebalance", "--plan", "--sample", "0"])
        // Which of the two near-equal databases goes first depends on their sizes at that moment.
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "rebalance: \(moves.count) move(s)", "\(text.stdout)")
        #expect(lines.count > 1 && ["1", "2"].contains { lines[1].hasPrefix("  tenant \($0): one → two (") }, "\(text.stdout)")
        #expect(lines.count > 1 && lines[1].contains("): server one is over its byte budget ("), "\(text.stdout)")
        #expect(text.stdout.contains("  server "), "\(text.stdout)")

        // Drain one with no room on two: one line, non-zero, nothing moved.
        _ = try await fixture.run(["servers", "set", "two", "--max-bytes", "1MB"])
        let drain = try await fixture.run(["servers", "drain", "one"])
        #expect(drain.status != 0)
        #expect(drain.stderr.hasPrefix("tenantry: error: cannot drain server one, nothing was moved: no server has room for tenant "), "\(drain.stderr)")
        #expect(try await fixture.tenants().map { $0.serverName ?? "default" } == ["one", "one"])
        let unknown = try await fixture.run(["servers", "set", "nope", "--max-bytes", "1GB"])
        #expect(unknown.status != 0 && unknown.stderr.contains("server 'nope' is not registered"), "\(unknown.stderr)")
    }

    @Test("rebalance --apply and servers drain move dedicated tenants to a second real server, with progress and a summary")
    func applyAndDrain() async throws {
        let second = try await RestartableServer.start()
        do {
            try await applyAndDrain(second)
            try await second.remove()
        } catch {
            try? await second.remove()
            throw error
        }
    }

    private func applyAndDrain(_ second: RestartableServer) async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 30)
        defer { try? FileManager.default.removeItem(atPath: fixture.directory) }
        for step in [["schema", "derive"], ["init"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        for (name, url) in [("a", try await TestPostgres.server().url()), ("b", try second.server.url())] {
            let add = try await CLIRunner.run(
                ["servers", "add", name], environment: fixture.environment.merging(["TENANTRY_SERVER_URL": url]) { $1 },
                in: fixture.directory)
            try #require(add.status == 0, "\(add.stderr)")
        }
        for step in [["provision", "--all", "--server", "a"], ["migrate-data", "--all"], ["cutover", "--all", "--max-pause", "5s", "--retries", "3"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stdout)\(result.stderr)")
        }

        let apply = try await fixture.run(["rebalance", "--apply", "--sample", "0", "--max-pause", "5s"])
        #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
        #expect(apply.stdout.hasPrefix("rebalance: 1 move(s)\n  tenant "), "\(apply.stdout)")
        #expect(apply.stdout.contains(": a → b (") && apply.stdout.contains("evens bytes: a 100% → "), "\(apply.stdout)")
        #expect(apply.stderr.contains("copying") && apply.stderr.contains("[1/1] tenant "), "\(apply.stderr)")
        #expect(apply.lastLine.hasPrefix("1 moved, 0 failed in ") && apply.lastLine.contains("longest write pause"), "\(apply.stdout)")

        let drain = try await fixture.run(["servers", "drain", "a", "--json", "--max-pause", "5s"])
        #expect(drain.status == 0, "\(drain.stdout)\(drain.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(drain.lastLine.utf8)) as? [String: Any])
        #expect((report["moved"] as? [[String: Any]])?.map { $0["to"] as? String } == ["b"], "\(drain.stdout)")
        let tenants = try await fixture.run(["tenants", "--json"])
        let rows = try JSONDecoder().decode(TenantList.self, from: Data(tenants.lastLine.utf8)).tenants
        #expect(rows.map { $0.serverName ?? "default" } == ["b", "b"], "\(tenants.stdout)")
        // A drained server is an ordinary one again; a one-byte budget keeps it empty (placement and rebalance).
        #expect(try await fixture.run(["servers", "set", "a", "--max-bytes", "1B"]).status == 0)
        let nothing = try await fixture.run(["rebalance", "--apply", "--sample", "0"])
        #expect(nothing.status == 0 && nothing.stdout.hasPrefix("rebalance: no move needed"), "\(nothing.stdout)\(nothing.stderr)")
    }
}
