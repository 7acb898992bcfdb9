import EmbeddedPostgres
import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// `Operations.restoreToTime` end to end on a server of its own (the default server, catalog and
/// tenant databases on it): archiving enabled through the operations, the server restarted, a
/// base backup, rows at t1, T, changes at t2; the tenant restored to T as a new tenant and in
/// place has exactly the t1 rows; each bad input is one clear error and changes nothing.
@Suite("point-in-time restore of one tenant", .timeLimit(.minutes(3)))
struct PointInTimeRestoreTests {
    let logger = TestPostgres.logger

    @Test("restore --to-time as a new tenant and in place: the rows as of T, row by row; bad inputs change nothing")
    func restoreToTime() async throws {
        let server = try await RestartableServer.start()
        let root = try CLIRunner.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            try await run(server, root: root)
            try await server.remove()
        } catch {
            Issue.record("\(String(reflecting: error))")
            try? await server.remove()
            throw error
        }
    }

    private func run(_ server: RestartableServer, root: String) async throws {
        let admin = try server.url()
        try await exec(admin, "CREATE DATABASE app")
        let app = admin.with(database: "app")
        try await Catalog.withCatalog(app, logger: logger) { _ = try await $0.migrate() }
        try FileManager.default.createDirectory(atPath: "\(root)/migrations", withIntermediateDirectories: true)
        try "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            .write(toFile: "\(root)/migrations/V1__items.sql", atomically: true, encoding: .utf8)
        var configuration = TenantryConfiguration()
        configuration.databaseURL = app
        configuration.keyring = Keyring(current: .generate())
        configuration.migrationsDirectory = "\(root)/migrations"
        let (a, copy) = (try TenantID("7"), try TenantID("8"))
        let scratch = ScratchPostgres(parent: root)
        func withOperations<T: Sendable>(_ body: @escaping @Sendable (Operations) async throws -> T) async throws -> T {
            try await Operations.with(configuration: configuration, databaseURL: app, actor: "test", logger: logger, body)
        }

        // Provisioned and served from its own database (as after a cutover).
        _ = try await withOperations { operations in
            _ = try await operations.provisioner().provision(a)
            var record = try await operations.catalog.requireTenant(a)
            record.placement = .dedicated
            try await operations.catalog.upsertTenant(record)
        }
        let enabled = try await withOperations { try await $0.enableArchiving(server: "default", directory: "\(root)/archive") }
        #expect(enabled.restartNeeded)
        try await server.server.restart(mode: .fast)
        let base = try await withOperations { try await $0.takeBaseBackup(server: "default") }
        let statuses = try await withOperations { try await $0.archiveStatus(server: nil) }
        #expect(statuses.map(\.archiving) == [true] && statuses.first?.baseBackups.map(\.path) == [base.path])

        // t1, T, t2.
        let tenantDatabase = try await withOperations { try await $0.catalog.requireTenant(a).databaseName! }
        let tenantURL = admin.with(database: tenantDatabase)
        try await exec(tenantURL, "INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        let time = try #require(try await TestPostgres.strings(admin, "SELECT clock_timestamp()::text").first ?? nil)
        try await exec(tenantURL, "UPDATE items SET name = 'changed' WHERE id = 1")
        try await exec(tenantURL, "DELETE FROM items WHERE id = 2")
        try await exec(tenantURL, "INSERT INTO items VALUES (4, 'four')")
        let asOfT = ["1:one", "2:two", "3:three"], now = ["1:changed", "3:three", "4:four"]

        // Bad input: each one clear error; the catalog, the tenant's rows and the scratch space unchanged.
        func refused(_ time: String, tenant: TenantID? = nil, as target: TenantID? = copy, _ expected: String) async throws {
            let before = try await withOperations { try await $0.catalog.tenants() }
            let error = await #expect(throws: TenantryError.self) {
                try await withOperations { try await $0.restoreToTime(tenant ?? a, time: time, asTenant: target, scratch: scratch.factory) }
            }
            #expect(error?.message.contains(expected) == true, "\(String(describing: error))")
            #expect(try await withOperations { try await $0.catalog.tenants() } == before)
            #expect(try await rows(tenantURL) == now)
            #expect(scratch.directories.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        }
        try await refused("not a time", "is not a time PostgreSQL reads as timestamptz")
        try await refused(time, tenant: try TenantID("99"), "99")
        try await refused("2000-01-01 00:00:00+00", "is before the oldest base backup")
        try await refused("2999-01-01 00:00:00+00", "is after the newest archived WAL")
        try await exec(admin, "ALTER SYSTEM RESET archive_command")
        try await exec(admin, "SELECT pg_reload_conf()")
        try await refused(time, "no WAL archive is configured for server 'default'")
        let again = try await withOperations { try await $0.enableArchiving(server: "default", directory: "\(root)/archive") }
        #expect(!again.restartNeeded && again.baseBackup != nil)
        // The newest base backup (just taken) ended after T: the first one is used.
        try FileManager.default.removeItem(atPath: "\(again.baseBackup?.path ?? "")/base.tar.gz")
        try "not a tarball".write(toFile: "\(base.path ?? "")/base.tar.gz.corrupt", atomically: true, encoding: .utf8)
        let tarball = "\(base.path ?? "")/base.tar.gz"
        try FileManager.default.moveItem(atPath: tarball, toPath: tarball + ".good")
        try FileManager.default.moveItem(atPath: "\(base.path ?? "")/base.tar.gz.corrupt", toPath: tarball)
        try await refused(time, "is corrupt")
        try FileManager.default.removeItem(atPath: tarball)
        try FileManager.default.moveItem(atPath: tarball + ".good", toPath: tarball)

        // A tenant whose database was made after T: it did not exist then (the scratch server is removed).
        let later = try TenantID("9")
        _ = try await withOperations { operations in
            _ = try await operations.provisioner().provision(later)
            var record = try await operations.catalog.requireTenant(later)
            record.placement = .dedicated
            try await operations.catalog.upsertTenant(record)
        }
        try await refused(time, tenant: later, "did not exist on server 'default' at")
        #expect(scratch.directories.count == 1)
        // Refusals of the restore itself, made before any recovery.
        try await refused(time, as: a, "--as-tenant must name another tenant")
        try await refused(time, as: later, "already exists")
        var shared = try await withOperations { try await $0.catalog.requireTenant(later) }
        shared.placement = .shared
        try await withOperations { [shared] in try await $0.catalog.upsertTenant(shared) }
        try await refused(time, tenant: later, as: nil, "is not served from its own database")
        #expect(scratch.directories.count == 1)

        // A cutover after T: at T the tenant's database was a copy in the making, not its data.
        try await withOperations { try await $0.catalog.audit(actor: "test-pitr", action: "cutover", tenant: a, outcome: .ok) }
        try await refused(time, "writes moved at")
        try await withOperations { operations in
            _ = try await operations.catalog.client.query("DELETE FROM tenantry.audit_log WHERE actor = 'test-pitr'", logger: TestPostgres.logger)
        }
        #expect(scratch.directories.count == 1)


        // As a new tenant: the original is untouched.
        let asNew = try await withOperations {
            try await $0.restoreToTime(a, time: time, asTenant: copy, scratch: scratch.factory)
        }
        #expect(asNew.restoredAs == copy && asNew.restore.rows == 3 + 1)  // + tenantry_schema_migrations
        #expect(Set(asNew.seconds.keys) == ["prepare", "base_extract", "recovery", "dump", "cleanup", "restore"])
        let copyDatabase = try await withOperations { try await $0.catalog.requireTenant(copy).databaseName! }
        #expect(try await rows(admin.with(database: copyDatabase)) == asOfT)
        #expect(try await rows(tenantURL) == now)

        // In place: the tenant's database is the recovered one; the replaced one is kept.
        let inPlace = try await withOperations { try await $0.restoreToTime(a, time: time, scratch: scratch.factory) }
        let restored = try await withOperations { try await $0.catalog.requireTenant(a).databaseName! }
        #expect(restored == inPlace.restore.database && restored != tenantDatabase)
        #expect(try await rows(admin.with(database: restored)) == asOfT)
        let previous = try #require(inPlace.restore.previousDatabase)
        #expect(previous.hasPrefix(tenantDatabase))
        #expect(try await rows(admin.with(database: previous)) == now)
        print("point-in-time restore seconds: \(inPlace.seconds.sorted { $0.key < $1.key })")

        // The status of every server goes on past one that cannot be reached.
        try await withOperations { operations in
            try await operations.catalog.upsertServer(ServerRecord(name: "gone", host: "127.0.0.1", port: 1, adminUser: "x", adminPasswordSealed: nil))
        }
        let every = try await withOperations { try await $0.archiveStatus(server: nil) }
        #expect(every.map(\.server) == ["default", "gone"] && every[0].archiving && every[0].error == nil)
        #expect(every[1].error?.contains("cannot connect") == true, "\(String(describing: every[1].error))")

        let audit = try await withOperations { try await $0.catalog.auditLog(limit: 500) }
        let entries = audit.filter { $0.action == "restore.point_in_time" }
        #expect(entries.filter { $0.outcome == .ok }.count == 2 && entries.filter { $0.outcome == .failed }.count >= 8)
        #expect(audit.contains { $0.action == "backup.archive.enable" } && audit.contains { $0.action == "backup.base" })
        #expect(scratch.directories.count == 3)
        #expect(scratch.directories.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
    }

    private func rows(_ url: PostgresURL) async throws -> [String] {
        try await TestPostgres.strings(url, "SELECT id || ':' || name FROM items ORDER BY id").compactMap { $0 }
    }

    private func exec(_ url: PostgresURL, _ sql: String) async throws {
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
    }
}
