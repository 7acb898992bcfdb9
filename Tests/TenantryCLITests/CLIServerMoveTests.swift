import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Two real servers: the fixture's (`default`, unified and the tenant databases) and a second
/// EmbeddedPostgres registered as `s2`, with tenants 1 and 2 cut over (dedicated) on `default`.
struct CLIServerMoveFixture {
    let base: CLIMoveFixture
    let second: RestartableServer

    static func make() async throws -> CLIServerMoveFixture {
        let base = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 30)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"], ["migrate-data", "--all"],
                     ["sync", "run", "--until-caught-up"], ["cutover", "--all", "--max-pause", "30s"]] {
            let result = try await base.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        let second = try await RestartableServer.start()
        let add = try await CLIRunner.run(
            ["servers", "add", "s2"], environment: base.environment.merging(["TENANTRY_SERVER_URL": try second.url().urlStringWithPassword]) { $1 },
            in: base.directory)
        try #require(add.status == 0, "\(add.stderr)")
        return CLIServerMoveFixture(base: base, second: second)
    }

    func run(_ arguments: [String]) async throws -> CLIRunner.Result { try await base.run(arguments) }

    /// The last line of `tenantry arguments… --json`, decoded (the run must succeed).
    func json(_ arguments: [String]) async throws -> [String: Any] {
        let result = try await run(arguments + ["--json"])
        try #require(result.status == 0, "\(arguments): \(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.lastLine.utf8)) as? [String: Any], "\(result.stdout)")
    }

    /// `tenants --json`'s entry for `tenant`.
    func listing(_ tenant: String) async throws -> [String: Any] {
        let tenants = try #require(try await json(["tenants"])["tenants"] as? [[String: Any]])
        return try #require(tenants.first { $0["id"] as? String == tenant })
    }

    /// Databases named `name` on the second server.
    func databasesOnSecond(_ name: String) async throws -> [String?] {
        try await TestPostgres.strings(try second.url(), "SELECT datname FROM pg_database WHERE datname = '\(name)'")
    }
}

@Suite("tenantry move (CLI): a tenant database between two real servers", .timeLimit(.minutes(10)))
struct CLIServerMoveTests {
    @Test("start two → status moving → verify 0 (1 after drift) → switch prints the pause → tenants --json on s2 → reverse → switch → complete; cancel the other")
    func startSwitchCompleteAndCancel() async throws {
        let fixture = try await CLIServerMoveFixture.make()
        do {
            try await flow(fixture)
            try await fixture.second.remove()
        } catch {
            try? await fixture.second.remove()
            throw error
        }
    }

    func flow(_ fixture: CLIServerMoveFixture) async throws {
        let start = try await fixture.run(["move", "start", "--tenants", "1,2", "--to", "s2", "--concurrency", "2"])
        try #require(start.status == 0, "\(start.stderr)")
        #expect(start.stdout.hasPrefix("2 tenant(s) moving to s2 ("), "\(start.stdout)")
        #expect(start.stderr.contains("tenantry: moving 2 tenant(s) to s2, 2 at a time"), "\(start.stderr)")
        #expect(start.stderr.contains("] tenant 1: moving to s2, ") && start.stderr.contains("] tenant 2: moving to s2, "), "\(start.stderr)")

        let status = try await fixture.json(["move", "status"])
        let moves = try #require(status["moves"] as? [[String: Any]])
        #expect(moves.map { $0["tenant"] as? String } == ["1", "2"], "\(moves)")
        #expect(moves.allSatisfy { $0["phase"] as? String == "moving" && $0["sourceServer"] as? String == "default" && $0["targetServer"] as? String == "s2" })
        let table = try await fixture.run(["move", "status"])
        #expect(table.stdout.hasPrefix("tenant ") && table.stdout.contains("moving") && table.stdout.contains("default → s2"), "\(table.stdout)")
        let moving = try await fixture.listing("1")
        #expect(moving["server"] as? String == "default" && moving["serverName"] == nil, "\(moving)")
        #expect((moving["serverMove"] as? [String: Any])?["phase"] as? String == "moving", "\(moving)")
        #expect((moving["serverMove"] as? [String: Any])?["targetServer"] as? String == "s2", "\(moving)")
        let overall = try await fixture.json(["status"])
        #expect((overall["serverMoves"] as? [Any])?.count == 2, "\(overall)")
        #expect((overall["byServer"] as? [String: Int]) == ["default": 2], "\(overall)")
        let human = try await fixture.run(["status"])
        #expect(human.stdout.contains("  tenant databases by server: default 2\n"), "\(human.stdout)")
        #expect(human.stdout.contains("  tenant 1 moving default → s2: moving, writes on default"), "\(human.stdout)")

        // A write in the source after the copy reaches the target: verify is equal (exit 0).
        let sourceURL = try await TestPostgres.url(database: "\(fixture.base.prefix)_1_db")
        try await Database.withConnection(sourceURL, logger: TestPostgres.logger) { connection in
            try await connection.query("UPDATE customers SET notes = 'during the move'", logger: TestPostgres.logger)
        }
        let verify = try await fixture.run(["move", "verify", "--tenant", "1"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.lastLine.hasPrefix("tenant 1: equal ("), "\(verify.stdout)")

        // A row changed in the target behind the relay's back: verify names it, exit 1.
        let targetDatabase = try #require(moves.first { $0["tenant"] as? String == "1" }?["targetDatabase"] as? String)
        let targetURL = try fixture.second.url().with(database: targetDatabase)
        /// Sets customers' first row's notes in the target with every trigger off (capture and fence).
        @Sendable func drift(_ notes: String) async throws {
            try await Database.withConnection(targetURL, logger: TestPostgres.logger) { connection in
                try await connection.query("SET session_replication_role = replica", logger: TestPostgres.logger)
                try await connection.query(
                    "UPDATE customers SET notes = \(notes) WHERE id = (SELECT min(id) FROM customers)", logger: TestPostgres.logger)
            }
        }
        try await drift("drift")
        let different = try await fixture.run(["move", "verify", "--tenant", "1"])
        #expect(different.status == 1, "\(different.stdout)\(different.stderr)")
        #expect(different.stdout.contains("customers: live ") && different.stdout.contains("customers changed ("), "\(different.stdout)")
        #expect(different.lastLine.hasPrefix("tenant 1: differs ("), "\(different.stdout)")
        try await drift("during the move")
        #expect(try await fixture.run(["move", "verify", "--tenant", "1", "--json"]).status == 0)

        // Switch: the pause is printed; the tenant is served from s2.
        let switched = try await fixture.run(["move", "switch", "--tenant", "1", "--max-pause", "30s"])
        try #require(switched.status == 0, "\(switched.stderr)")
        let line = try #require(switched.stdout.split(separator: "\n").first.map(String.init))
        #expect(line.hasPrefix("tenant 1: writes switched from default to s2; write pause "), "\(line)")
        let pause = Double(line.components(separatedBy: "write pause ").last?.components(separatedBy: " ms").first ?? "") ?? -1
        #expect(pause > 0 && pause < 30_000, "\(line)")
        let onSecond = try await fixture.listing("1")
        #expect(onSecond["serverName"] as? String == "s2" && onSecond["server"] as? String == "s2", "\(onSecond)")
        #expect((onSecond["serverMove"] as? [String: Any])?["liveServer"] as? String == "s2", "\(onSecond)")
        let tenantsText = try await fixture.run(["tenants"])
        #expect(tenantsText.stdout.contains("on s2 (moving default → s2: switched)"), "\(tenantsText.stdout)")

        // A write on s2, then reverse: it is in the source, which takes the writes again; switch back.
        try await Database.withConnection(targetURL, logger: TestPostgres.logger) { connection in
            try await connection.query("UPDATE customers SET notes = 'after the switch'", logger: TestPostgres.logger)
        }
        let reversed = try await fixture.run(["move", "reverse", "--tenant", "1", "--max-pause", "30s"])
        try #require(reversed.status == 0, "\(reversed.stderr)")
        #expect(reversed.stdout.hasPrefix("tenant 1: writes back from s2 to default; write pause "), "\(reversed.stdout)")
        #expect(try await TestPostgres.strings(sourceURL, "SELECT DISTINCT notes FROM customers") == ["after the switch"])
        let back = try await fixture.listing("1")
        #expect(back["server"] as? String == "default" && (back["serverMove"] as? [String: Any])?["phase"] as? String == "moving", "\(back)")
        let again = try await fixture.run(["move", "switch", "--tenant", "1", "--max-pause", "30s", "--json"])
        try #require(again.status == 0, "\(again.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(again.lastLine.utf8)) as? [String: Any]
        #expect(report?["to"] as? String == "s2" && (report?["pauseMilliseconds"] as? Double ?? -1) > 0, "\(again.stdout)")
        let switches = try await fixture.json(["move", "status", "--tenant", "1"])
        #expect((switches["moves"] as? [[String: Any]])?.first?["switches"] as? Int == 3, "\(switches)")

        let complete = try await fixture.run(["move", "complete", "--tenant", "1"])
        #expect(complete.status == 0, "\(complete.stderr)")
        #expect(complete.stdout.hasPrefix("tenant 1: move complete, served from s2; dropped "), "\(complete.stdout)")
        let sourceLeft = try await TestPostgres.strings(
            fixture.base.url, "SELECT datname FROM pg_database WHERE datname = '\(fixture.base.prefix)_1_db'")
        #expect(sourceLeft.isEmpty, "the source database is dropped")
        let notes = try await TestPostgres.strings(targetURL, "SELECT DISTINCT notes FROM customers")
        #expect(notes == ["after the switch"], "the writes made during the move are on s2")
        let done = try await fixture.listing("1")
        #expect(done["serverName"] as? String == "s2" && done["serverMove"] == nil, "\(done)")

        // Cancel tenant 2: the target is dropped, the source serves as before.
        let target2 = try #require(moves.first { $0["tenant"] as? String == "2" }?["targetDatabase"] as? String)
        let cancel = try await fixture.run(["move", "cancel", "--tenant", "2"])
        #expect(cancel.status == 0, "\(cancel.stderr)")
        #expect(cancel.stdout.hasPrefix("tenant 2: move cancelled, stays on default; dropped \(target2) on s2"), "\(cancel.stdout)")
        #expect(try await fixture.databasesOnSecond(target2).isEmpty)
        let stayed = try await fixture.listing("2")
        #expect(stayed["server"] as? String == "default" && stayed["serverMove"] == nil, "\(stayed)")
        let none = try await fixture.run(["move", "status"])
        #expect(none.stdout == "no server move is active\n", "\(none.stdout)")
        let latest = try await fixture.json(["move", "status", "--tenant", "2"])
        #expect((latest["moves"] as? [[String: Any]])?.first?["phase"] as? String == "cancelled", "\(latest)")
        #expect(try await fixture.run(["verify-sync", "--all"]).status == 0, "unified still equals both tenants")
    }

    @Test("bad input: unknown tenant or server, bad ids, options and durations: one line, exit 2, nothing started")
    func badInput() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 1, rowsPerShop: 10)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        let cases: [([String], String)] = [
            (["move", "start", "--tenant", "1", "--to", "nowhere"], "server 'nowhere' is not registered"),
            (["move", "start", "--tenant", "9", "--to", "default"], "tenant 9 is not in the catalog"),
            (["move", "start", "--tenant", "1;drop", "--to", "default"], "tenant id"),
            (["move", "start", "--tenants", "1,,2", "--to", "default"], "tenant id"),
            (["move", "start", "--to", "default"], "give one of --tenant ID, --tenants 1,2,3 or --all-from SERVER"),
            (["move", "start", "--tenant", "1", "--all-from", "default", "--to", "default"], "give one of"),
            (["move", "start", "--all-from", "default", "--to", "default"], "--all-from and --to name the same server"),
            (["move", "start", "--all-from", "elsewhere", "--to", "default"], "server 'elsewhere' is not registered"),
            (["move", "start", "--tenant", "1", "--to", "default", "--concurrency", "0"], "--concurrency must be from 1 to 16"),
            (["move", "switch", "--tenant", "1", "--max-pause", "soon"], "--max-pause"),
            (["move", "reverse", "--tenant", "1", "--max-pause", "0ms"], "--max-pause"),
            (["move", "switch", "--tenant", "9"], "tenant 9 is not in the catalog"),
            (["move", "verify", "--tenant", "1", "--chunk-size", "1"], "--chunk-size must be at least 2"),
            (["move", "complete", "--tenant", "9"], "tenant 9 is not in the catalog"),
            (["move", "cancel", "--tenant", "x y"], "tenant id"),
            (["move", "status", "--tenant", "9"], "tenant 9 is not in the catalog"),
        ]
        for (arguments, message) in cases {
            let result = try await fixture.run(arguments)
            #expect(result.status == 2, "\(arguments): \(result.status) \(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1 && result.stderr.hasPrefix("tenantry: error: ") && result.stderr.contains(message),
                    "\(arguments): \(result.stderr)")
            #expect(result.stdout.isEmpty, "\(arguments): \(result.stdout)")
        }
        // A tenant still on the shared → dedicated path: the engine's refusal, one line, exit 1.
        let shared = try await fixture.run(["move", "start", "--tenant", "1", "--to", "default"])
        #expect(shared.status == 1 && shared.stderr.split(separator: "\n").count == 1, "\(shared.stderr)")
        #expect(shared.stderr.contains("tenant 1 is in phase") && shared.stderr.contains("nothing was changed"), "\(shared.stderr)")
        let status = try await fixture.run(["move", "status", "--json"])
        #expect(status.status == 0 && status.lastLine == #"{"moves":[]}"#, "\(status.stdout)\(status.stderr)")
        let empty = try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM tenantry.server_moves")
        #expect(empty == ["0"])
    }
}
