import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("per-tenant backup and restore", .timeLimit(.minutes(5)))
struct BackupRestoreTests {
    @Test("a backup's manifest matches the database; restore in place brings back exactly its rows and keeps the old database")
    func backupAndRestoreInPlace() async throws {
        do { try await inPlace() } catch { Issue.record("\(String(reflecting: error))"); throw error }
    }

    func inPlace() async throws {
        let setup = try await BackupFixture.make(shops: 2)
        let (a, b) = (setup.fixture.ids[0], setup.fixture.ids[1])
        let original = try await setup.database(a)
        _ = try await TestPostgres.strings(try await setup.url(original), "INSERT INTO restore_probe VALUES (1, 'before the backup')")
        let atBackup = try await setup.rows(in: original)
        let otherBefore = try await setup.rows(in: try await setup.database(b))

        let manifest = try await setup.withOperations { try await $0.backups().backup(a, into: setup.store) }
        #expect(manifest.tenant == a && manifest.database == original && manifest.server == "default")
        #expect(manifest.schemaVersion == 1)
        #expect(manifest.sha256.count == 64 && manifest.bytes > 0)
        #expect(manifest.postgresVersion.hasPrefix("15"))
        #expect(manifest.tables["public.restore_probe"] == 1)
        for (table, rows) in atBackup where table != "restore_probe" {
            #expect(manifest.tables["public.\(table)"] == Int64(rows.count), "\(table)")
        }
        for path in [manifest.path!, manifest.dumpPath!] {
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(path)")
        }
        #expect(try BackupStore.sha256(of: manifest.dumpPath!).hex == manifest.sha256)
        #expect(try setup.store.list().map(\.path) == [manifest.path])

        // Changes after the backup: the restore takes the tenant back to the backup's state.
        let current = try await setup.url(original)
        _ = try await TestPostgres.strings(current, "INSERT INTO restore_probe VALUES (2, 'after the backup')")
        _ = try await TestPostgres.strings(current, "UPDATE customers SET last_name = last_name || ' (changed)' WHERE id IN (SELECT id FROM customers ORDER BY id LIMIT 3)")
        let afterChanges = try await setup.rows(in: original)
        #expect(afterChanges != atBackup)

        let report = try await setup.withOperations {
            try await $0.backups().restore(a, from: setup.store.root, asTenant: nil, dropPrevious: false)
        }
        #expect(report.tenant == a && report.source == a && report.backup == manifest.path)
        #expect(report.rows == manifest.rows)
        #expect(Set(report.parts.keys) == ["checksum", "restore", "verify", "swap"])
        let restored = try await setup.database(a)
        #expect(restored == report.database && restored != original)
        #expect(try await setup.rows(in: restored) == atBackup)
        // The replaced database is kept, as it was, under its new name.
        let previous = try #require(report.previousDatabase)
        #expect(previous.hasPrefix(original + "_before_restore_"))
        #expect(try await setup.rows(in: previous) == afterChanges)
        // The tenant's role may connect to the restored database only.
        let role = try await setup.withOperations { try await $0.catalog.requireTenant(a).roleName! }
        #expect(try await TestPostgres.strings(
            try await TestPostgres.url(),
            "SELECT has_database_privilege('\(role)', '\(previous)', 'CONNECT')::text || ' ' || "
                + "has_database_privilege('\(role)', '\(restored)', 'CONNECT')::text") == ["false true"])
        #expect(try await setup.databases(startingWith: original) == [previous, restored].sorted())
        // The other tenant is untouched; no staging database is left.
        #expect(try await setup.rows(in: try await setup.database(b)) == otherBefore)
        #expect(try await setup.databases(startingWith: "tenantry-new-\(String(StableHash.fnv1a64(original), radix: 16))-").isEmpty)

        // The tenant's own login works on the restored database through the router, not on the old one.
        try await setup.withOperations { operations in
            let router = operations.router(keyring: setup.fixture.base.keyring, monitor: nil)
            try await router.running {
                let probe = try await router.withTransaction(tenant: a, intent: .write) { connection in
                    try await connection.query("INSERT INTO restore_probe VALUES (3, 'after the restore')")
                    return try await connection.query("SELECT id FROM restore_probe ORDER BY id").map { try $0.decode(Int64.self) }
                }
                #expect(probe == [1, 3])
                // A captured table (its reverse-capture trigger restored with it) takes the tenant's writes too.
                let changed = try await router.withTransaction(tenant: a, intent: .write) { connection in
                    try await connection.query(
                        "UPDATE customers SET last_name = 'Restored' WHERE id = (SELECT min(id) FROM customers) RETURNING id").count
                }
                #expect(changed == 1)
            }
        }
        let audit = try await setup.withOperations { try await $0.catalog.auditLog(tenant: a) }
        #expect(audit.contains { $0.action == "restore" && $0.outcome == .ok })
        #expect(audit.contains { $0.action == "backup" && $0.outcome == .ok })
    }

    @Test("--as-tenant restores a backup as a new tenant for inspection; the original is not touched")
    func restoreAsNewTenant() async throws {
        let setup = try await BackupFixture.make(shops: 1)
        let a = setup.fixture.ids[0]
        let original = try await setup.database(a)
        let manifest = try await setup.withOperations { try await $0.backups().backup(a, into: setup.store) }
        _ = try await TestPostgres.strings(try await setup.url(original), "INSERT INTO restore_probe VALUES (7, 'later')")
        let originalRows = try await setup.rows(in: original)
        let copy = try TenantID("\(a.rawValue)_copy")
        let report = try await setup.withOperations {
            try await $0.backups().restore(a, from: manifest.dumpPath!, asTenant: copy, dropPrevious: false)
        }
        #expect(report.tenant == copy && report.source == a && report.previousDatabase == nil)
        let expected = originalRows.merging(["restore_probe": []]) { $1 }
        #expect(try await setup.rows(in: report.database) == expected)
        #expect(try await setup.rows(in: original) == originalRows)
        #expect(try await setup.database(a) == original)
        // The copy has no capture schema of the source tenant, and its own role reads it.
        #expect(try await TestPostgres.strings(try await setup.url(report.database), "SELECT to_regnamespace('tenantry')::text") == [nil])
        try await setup.withOperations { operations in
            let record = try await operations.catalog.requireTenant(copy)
            #expect(record.placement == .dedicated && record.databaseName == report.database)
            let router = operations.router(keyring: setup.fixture.base.keyring, monitor: nil)
            try await router.running {
                let count = try await router.withConnection(tenant: copy, intent: .read) { connection in
                    try await connection.query("SELECT count(*) FROM customers").first.map { try $0.decode(Int64.self) }
                }
                #expect(count == Int64(expected["customers"]!.count))
            }
            // A second --as-tenant with the same id is refused.
            await #expect(throws: TenantryError.self) {
                _ = try await operations.backups().restore(a, from: manifest.path!, asTenant: copy, dropPrevious: false)
            }
        }
    }
}
