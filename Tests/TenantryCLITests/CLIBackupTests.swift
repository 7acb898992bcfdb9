import Foundation
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry backup and restore", .timeLimit(.minutes(5)))
struct CLIBackupTests {
    @Test("backup --tenant, backup --all, list, prune, restore --as-tenant; refusals are one line")
    func backupCommands() async throws {
        let fixture = try await CLIProvisioningFixture.make("clibk")
        let provision = try await fixture.run(["provision", "1", "2"])
        try #require(provision.status == 0, "\(provision.stderr)")
        // Tenant 1 is served from its database (as after a cutover); tenant 2 is still shared.
        _ = try await TestPostgres.strings(fixture.url, "UPDATE tenantry.tenants SET placement = 'dedicated' WHERE id = '1'")
        let db1 = try await TestPostgres.url(database: fixture.database("1"))
        _ = try await TestPostgres.strings(db1, "INSERT INTO customers (name) VALUES ('Ana'), ('Ben')")

        // 2 customers and the schema history's one row.
        let one = try await fixture.run(["backup", "--tenant", "1", "--out", "bk"])
        #expect(one.status == 0, "\(one.stderr)")
        #expect(one.stdout.contains("backed up tenant 1:") && one.stdout.contains("3 row(s)"), "\(one.stdout)")
        let manifestPath = try #require(one.stdout.split(separator: "\n").last.map(String.init))
        #expect(manifestPath.hasSuffix(".json") && FileManager.default.fileExists(atPath: manifestPath))

        let all = try await fixture.run(["backup", "--all", "--out", "bk", "--json"])
        #expect(all.status == 0, "\(all.stderr)")
        let report = try JSONDecoder.iso8601.decode(Backups.FleetReport.self, from: Data(all.stdout.utf8))
        #expect(report.written.map(\.tenant.rawValue) == ["1"] && report.failed.isEmpty)

        let list = try await fixture.run(["backup", "list", "--out", "bk", "--tenant", "1", "--json"])
        #expect(list.status == 0, "\(list.stderr)")
        let listed = try JSONDecoder.iso8601.decode([String: [BackupManifest]].self, from: Data(list.stdout.utf8))["backups"] ?? []
        #expect(listed.count == 2 && listed.allSatisfy { $0.tenant.rawValue == "1" && $0.tables["public.customers"] == 2 })

        // Refusals: one line each, nothing done.
        for (arguments, expected) in [
            (["backup", "--out", "bk"], "name one tenant (--tenant ID) or --all"),
            (["backup", "--tenant", "1", "--all"], "name one tenant (--tenant ID) or --all"),
            (["backup", "--tenant", "Robert'); DROP", "--out", "bk"], "is invalid"),
            (["backup", "--tenant", "9", "--out", "bk"], "9"),
            (["restore", "--tenant", "1", "--from", "bk"], "add --yes"),
            (["backup", "--tenant", "2", "--out", "bk"], "is served from the unified database"),
            (["restore", "--tenant", "2", "--from", "bk", "--yes"], "no backup of tenant 2"),
            (["restore", "--tenant", "2", "--from", manifestPath, "--yes"], "is of tenant 1, not 2"),
            (["backup", "prune", "--keep-daily=-1", "--keep-weekly", "1", "--out", "bk"], "0 or more"),
        ] {
            let run = try await fixture.run(arguments)
            #expect(run.status != 0, "\(arguments)")
            #expect(run.stderr.contains(expected), "\(arguments): \(run.stderr)")
            #expect(run.stderr.split(separator: "\n").count == 1, "\(arguments): \(run.stderr)")
        }

        let restore = try await fixture.run(["restore", "--tenant", "1", "--from", "bk", "--as-tenant", "c1", "--yes"])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(restore.stdout.contains("restored tenant c1") && restore.stdout.contains("3 row(s)"), "\(restore.stdout)")
        let copy = try #require(try await TestPostgres.strings(
            fixture.url, "SELECT database_name FROM tenantry.tenants WHERE id = 'c1'").first ?? nil)
        #expect(try await TestPostgres.strings(try await TestPostgres.url(database: copy), "SELECT name FROM customers ORDER BY id") == ["Ana", "Ben"])

        let prune = try await fixture.run(["backup", "prune", "--keep-daily", "1", "--keep-weekly", "1", "--out", "bk"])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(prune.stdout.contains("1 kept, 1 removed"), "\(prune.stdout)")
    }
}

extension JSONDecoder {
    /// A decoder for the CLI's `--json` output (ISO 8601 times).
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
