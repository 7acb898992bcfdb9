import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("restore refuses bad input with one clear error and changes nothing", .timeLimit(.minutes(5)))
struct BackupRefusalTests {
    @Test("a corrupt dump, a missing one, another tenant's backup, a newer schema version, no backup, a shared tenant")
    func refusals() async throws {
        let setup = try await BackupFixture.make(shops: 2)
        let (a, b) = (setup.fixture.ids[0], setup.fixture.ids[1])
        let manifest = try await setup.withOperations { try await $0.backups().backup(a, into: setup.store) }
        let before = try await setup.rows(in: try await setup.database(a))
        let original = try await setup.database(a)
        let staging = "tenantry-new-\(String(StableHash.fnv1a64(original), radix: 16))-"

        func refused(_ tenant: TenantID, _ path: String, asTenant: TenantID? = nil, _ expected: String) async throws {
            let error = await #expect(throws: TenantryError.self) {
                _ = try await setup.withOperations { try await $0.backups().restore(tenant, from: path, asTenant: asTenant) }
            }
            #expect(error?.message.contains(expected) == true, "\(error?.message ?? "no error"); expected \(expected)")
            #expect(error.map { !$0.message.contains("\n") } == true)
        }

        // Another tenant's backup, by its manifest or its dump.
        try await refused(b, manifest.path!, "is of tenant \(a), not \(b)")
        try await refused(b, manifest.dumpPath!, "is of tenant \(a), not \(b)")
        // No backup of that tenant in the directory; nothing at the path.
        try await refused(b, setup.store.root, "no backup of tenant \(b)")
        try await refused(a, "/nonexistent/backup.json", "no backup at /nonexistent/backup.json")
        // A manifest that is not one.
        let junk = setup.store.root + "/junk.json"
        try Data("{\"format\": 1}".utf8).write(to: URL(fileURLWithPath: junk))
        try await refused(a, junk, "is not a Tenantry backup manifest")
        // A newer schema version than the fleet's migrations (1).
        let newer = try rewrite(manifest, as: "newer") { $0.replacingOccurrences(of: "\"schema_version\" : 1", with: "\"schema_version\" : 99") }
        try await refused(a, newer, "schema version 99, newer than this fleet's 1")
        // One flipped byte in the dump: the checksum says so before anything is touched.
        let dump = manifest.dumpPath!
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dump))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: dump))
        try await refused(a, manifest.path!, "is corrupt")
        // The dump missing.
        try FileManager.default.removeItem(atPath: dump)
        try await refused(a, manifest.path!, "is missing")
        // A tenant served from the unified database (never moved).
        let shared = try TenantID("\(a.rawValue)_shared")
        let other = try await setup.withOperations { try await $0.backups().backup(b, into: setup.store) }
        _ = try await setup.withOperations { try await $0.catalog.registerTenants([shared]) }
        try await refused(b, other.path!, asTenant: b, "--as-tenant must name another tenant")
        try await refused(b, other.path!, asTenant: shared, "already exists")

        // Nothing changed: the tenant's rows and database, and no database was created or left.
        #expect(try await setup.rows(in: try await setup.database(a)) == before)
        #expect(try await setup.databases(startingWith: original) == [original])
        #expect(try await setup.databases(startingWith: staging).isEmpty)
        #expect(try await setup.database(a) == original)
        let audit = try await setup.withOperations { try await $0.catalog.auditLog(tenant: a) }
        #expect(audit.contains { $0.action == "restore" && $0.outcome == .failed })
    }

    @Test("restore refuses a tenant whose writes still sync back to unified, and a tenant in the unified database")
    func refusesWhileSyncingBack() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 10)
        let setup = BackupFixture(
            fixture: fixture, migrations: "/nonexistent", store: BackupStore(root: FileManager.default.temporaryDirectory.path + "/tb-\(UUID())"))
        let (a, b) = (fixture.ids[0], fixture.ids[1])
        try await setup.withOperations { operations in
            let move = try await operations.move()
            _ = try await move.migrateData(.tenants([a, b]))
            _ = try await move.cutover(.tenants([a]), maxPause: .seconds(10), retries: 5)
            let backupA = try await operations.backups().backup(a, into: setup.store)
            let backupB = try await operations.backups().backup(b, into: setup.store)
            let dedicated = await #expect(throws: TenantryError.self) {
                _ = try await operations.backups().restore(a, from: backupA.path!)
            }
            #expect(dedicated?.message.contains("still sync back to the unified database") == true, "\(dedicated?.message ?? "")")
            let shared = await #expect(throws: TenantryError.self) {
                _ = try await operations.backups().restore(b, from: backupB.path!)
            }
            #expect(shared?.message.contains("not served from its own database") == true, "\(shared?.message ?? "")")
        }
    }

    /// A copy of `manifest` (same dump) with its JSON changed by `change`, as `<name>.json` beside it.
    func rewrite(_ manifest: BackupManifest, as name: String, _ change: (String) -> String) throws -> String {
        let text = try String(contentsOfFile: manifest.path!, encoding: .utf8)
        let changed = change(text)
        #expect(changed != text)
        let path = (manifest.path! as NSString).deletingLastPathComponent + "/\(name).json"
        try changed.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

@Suite("a restore killed part way", .timeLimit(.minutes(5)))
struct BackupInterruptedTests {
    @Test("a staging database a killed restore left is dropped by the next restore, which succeeds")
    func stagingLeftover() async throws {
        let setup = try await BackupFixture.make(shops: 1, rowsPerShop: 5)
        let a = setup.fixture.ids[0]
        let original = try await setup.database(a)
        let manifest = try await setup.withOperations { try await $0.backups().backup(a, into: setup.store) }
        // What a restore killed during pg_restore leaves: a marked staging database with that prefix.
        let prefix = "tenantry-new-\(String(StableHash.fnv1a64(original), radix: 16))-"
        _ = try await TestPostgres.strings(try await TestPostgres.url(), "CREATE DATABASE \"\(prefix)r20260101000000\"")
        #expect(try await setup.databases(startingWith: prefix).count == 1)
        let report = try await setup.withOperations { try await $0.backups().restore(a, from: manifest.path!) }
        #expect(try await setup.databases(startingWith: prefix).isEmpty)
        #expect(try await setup.database(a) == report.database)
        #expect(report.rows == manifest.rows)
    }

    @Test("a database a restore killed after its swap left closed is kept as _before_restore_ by the next restore")
    func replacedLeftover() async throws {
        let setup = try await BackupFixture.make(shops: 1, rowsPerShop: 5)
        let a = setup.fixture.ids[0]
        let original = try await setup.database(a)
        let manifest = try await setup.withOperations { try await $0.backups().backup(a, into: setup.store) }
        // What the killed run left: the replaced database under its old name, closed, still marked.
        let admin = try await TestPostgres.url()
        let left = original + "_old"
        _ = try await TestPostgres.strings(admin, "CREATE DATABASE \"\(left)\"")
        _ = try await TestPostgres.strings(admin, "COMMENT ON DATABASE \"\(left)\" IS 'tenantry:tenant=\(a.rawValue)'")
        _ = try await TestPostgres.strings(admin, "ALTER DATABASE \"\(left)\" ALLOW_CONNECTIONS false")
        let report = try await setup.withOperations { try await $0.backups().restore(a, from: manifest.path!) }
        let kept = try await setup.databases(startingWith: left)
        #expect(kept.count == 1 && kept.first?.hasPrefix(left + "_before_restore_") == true, "\(kept)")
        #expect(try await TestPostgres.strings(admin, "SELECT datallowconn::text FROM pg_database WHERE datname = '\(kept.first ?? "")'") == ["true"])
        #expect(report.previousDatabase?.hasPrefix(original + "_before_restore_") == true)
    }
}
