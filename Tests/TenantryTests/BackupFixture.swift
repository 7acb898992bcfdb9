import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Tenants moved out of unified and retired (served from their own databases only), a probe table
/// in each that the tenant role may write, and a fresh backup directory.
struct BackupFixture: Sendable {
    let fixture: MoveFixture
    let migrations: String
    let store: BackupStore

    static func make(shops: Int, rowsPerShop: Int = 20) async throws -> BackupFixture {
        let fixture = try await MoveFixture.make(shops: shops, rowsPerShop: rowsPerShop)
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-backup-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: "\(temporary)/migrations", withIntermediateDirectories: true)
        try fixture.migration.sql.write(toFile: "\(temporary)/migrations/V1__tenant_schema.sql", atomically: true, encoding: .utf8)
        let made = BackupFixture(fixture: fixture, migrations: "\(temporary)/migrations", store: BackupStore(root: "\(temporary)/backups"))
        try await made.withOperations { operations in
            try await fixture.cutOver(fixture.ids, with: operations)
            _ = try await operations.move().retire(fixture.ids, archiveDirectory: "\(temporary)/archive", dryRun: false)
            for id in fixture.ids {
                let record = try await operations.catalog.requireTenant(id)
                let url = try await made.url(record.databaseName!)
                _ = try await TestPostgres.strings(url, "CREATE TABLE restore_probe (id bigint PRIMARY KEY, note text)")
                _ = try await TestPostgres.strings(url, "GRANT SELECT, INSERT, UPDATE, DELETE ON restore_probe TO \"\(record.roleName!)\"")
            }
        }
        return made
    }

    func withOperations<T: Sendable>(_ body: @escaping @Sendable (Operations) async throws -> T) async throws -> T {
        try await fixture.withOperations(migrations: migrations, body)
    }

    /// An admin URL of `database` on the test server.
    func url(_ database: String) async throws -> PostgresURL {
        try await TestPostgres.url(database: database)
    }

    /// The tenant's database now, by the catalog.
    func database(_ tenant: TenantID) async throws -> String {
        try await withOperations { try await $0.catalog.requireTenant(tenant).databaseName! }
    }

    /// Every table of the tenant database `database`, row by row (as text), the probe included.
    func rows(in database: String) async throws -> [String: [String]] {
        let url = try await url(database)
        var result: [String: [String]] = [:]
        for table in fixture.plan.tables.map(\.name) + ["restore_probe"] {
            result[table] = try await TestPostgres.strings(url, "SELECT t::text FROM \"\(table)\" t ORDER BY 1").compactMap { $0 }
        }
        return result
    }

    /// Databases on the test server whose name starts with `prefix`.
    func databases(startingWith prefix: String) async throws -> [String] {
        try await TestPostgres.strings(
            try await TestPostgres.url(), "SELECT datname::text FROM pg_database WHERE starts_with(datname, '\(prefix)') ORDER BY 1")
            .compactMap { $0 }
    }
}
