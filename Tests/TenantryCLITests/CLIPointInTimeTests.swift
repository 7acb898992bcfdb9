import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The real `tenantry backup archive enable|status`, `backup base` and `restore --to-time` on a
/// server of their own (archive_mode needs a restart): what they print, their exit status, the
/// restored rows, and no scratch directory left behind.
@Suite("CLI: point-in-time restore", .timeLimit(.minutes(3)))
struct CLIPointInTimeTests {
    @Test("archive enable says a restart is needed; after it, base backup, status, restore --to-time as a new tenant; bad T is one line")
    func pointInTime() async throws {
        let server = try await RestartableServer.start()
        let directory = try CLIRunner.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            try await run(server, directory: directory)
            try await server.remove()
        } catch {
            try? await server.remove()
            throw error
        }
    }

    private func run(_ server: RestartableServer, directory: String) async throws {
        let admin = try server.url()
        _ = try await TestPostgres.strings(admin, "CREATE DATABASE app")
        try FileManager.default.createDirectory(atPath: "\(directory)/migrations", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(directory)/tmp", withIntermediateDirectories: true)
        try "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            .write(toFile: "\(directory)/migrations/V1__items.sql", atomically: true, encoding: .utf8)
        let environment = [
            "DATABASE_URL": admin.with(database: "app").urlStringWithPassword, "TENANT_ENCRYPTION_KEY": EncryptionKey.generate().hex,
            "TMPDIR": "\(directory)/tmp",
        ]
        func tenantry(_ arguments: [String]) async throws -> CLIRunner.Result {
            try await CLIRunner.run(arguments, environment: environment, in: directory)
        }
        for step in [["init"], ["provision", "7"]] {
            let result = try await tenantry(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        _ = try await TestPostgres.strings(admin.with(database: "app"), "UPDATE tenantry.tenants SET placement = 'dedicated' WHERE id = '7'")

        let enable = try await tenantry(["backup", "archive", "enable", "--server", "default", "--dir", "\(directory)/archive"])
        #expect(enable.status == 0, "\(enable.stderr)")
        #expect(enable.stdout.contains("RESTART NEEDED"), "\(enable.stdout)")
        #expect(enable.stdout.contains("archive_mode") && enable.stdout.contains("tenantry backup base --server default"))
        let early = try await tenantry(["backup", "base"])
        #expect(early.status != 0 && early.stderr.contains("not active"), "\(early.stderr)")

        try await server.server.restart(mode: .fast)
        let base = try await tenantry(["backup", "base", "--server", "default"])
        #expect(base.status == 0, "\(base.stderr)")
        #expect(base.lastLine.hasPrefix("\(directory)/archive/base/"))
        let status = try await tenantry(["backup", "archive", "status"])
        #expect(status.stdout.contains("server default: archiving on into \(directory)/archive"), "\(status.stdout)")
        #expect(status.stdout.contains("base backups: 1"))

        let tenantURL = admin.with(database: "shop_7_db")
        _ = try await TestPostgres.strings(tenantURL, "INSERT INTO items VALUES (1, 'one'), (2, 'two')")
        let time = try #require(try await TestPostgres.strings(admin, "SELECT clock_timestamp()::text").first ?? nil)
        _ = try await TestPostgres.strings(tenantURL, "DELETE FROM items WHERE id = 1")

        let bad = try await tenantry(["restore", "--tenant", "7", "--to-time", "yesterday-ish", "--yes"])
        #expect(bad.status != 0)
        #expect(bad.stderr.split(separator: "\n").count == 1 && bad.stderr.contains("is not a time PostgreSQL reads"), "\(bad.stderr)")
        let unconfirmed = try await tenantry(["restore", "--tenant", "7", "--to-time", time])
        #expect(unconfirmed.status != 0 && unconfirmed.stderr.contains("--yes"))

        let restore = try await tenantry(["restore", "--tenant", "7", "--to-time", time, "--as-tenant", "8", "--yes"])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(restore.stdout.contains("restored tenant 8 to "), "\(restore.stdout)")
        for part in ["prepare", "base extract", "recovery", "dump", "restore"] { #expect(restore.stdout.contains(part)) }
        let copy = try #require(try await TestPostgres.strings(
            admin.with(database: "app"), "SELECT database_name FROM tenantry.tenants WHERE id = '8'").first ?? nil)
        #expect(try await TestPostgres.strings(admin.with(database: copy), "SELECT id || ':' || name FROM items ORDER BY id")
            == ["1:one", "2:two"])
        #expect(try await TestPostgres.strings(tenantURL, "SELECT id || ':' || name FROM items ORDER BY id") == ["2:two"])
        let left = try FileManager.default.contentsOfDirectory(atPath: "\(directory)/tmp").filter { $0.hasPrefix("tenantry-pitr") }
        #expect(left.isEmpty, "\(left)")
    }
}
