import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// A catalog plus `count` tenant databases created directly (provisioning is a later step).
struct FleetFixture {
    let catalogURL: PostgresURL
    let tenantDatabases: [String]
    let migrationsDirectory: String

    static func make(count: Int) async throws -> FleetFixture {
        let catalogURL = try await TestPostgres.makeDatabase("fleetcat")
        let prefix = catalogURL.database
        var databases: [String] = []
        for index in 1...count {
            let url = try await TestPostgres.makeDatabase("\(prefix)_\(index)")
            databases.append(url.database)
        }
        let names = databases
        try await Catalog.withCatalog(catalogURL, logger: TestPostgres.logger) { catalog in
            _ = try await catalog.migrate()
            for (index, database) in names.enumerated() {
                var tenant = TenantRecord(id: try TenantID("\(index + 1)"))
                tenant.databaseName = database
                try await catalog.upsertTenant(tenant)
            }
        }
        let directory = "/tmp/tenantry-migrations-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return FleetFixture(catalogURL: catalogURL, tenantDatabases: databases, migrationsDirectory: directory)
    }

    func write(_ name: String, _ sql: String) throws {
        try sql.write(toFile: "\(migrationsDirectory)/\(name)", atomically: true, encoding: .utf8)
    }

    func run(concurrency: Int = 4) async throws -> [FleetMigrator.Outcome] {
        let files = try MigrationFile.load(directory: migrationsDirectory)
        return try await Catalog.withCatalog(catalogURL, logger: TestPostgres.logger) { catalog in
            let fleet = SchemaFleet(
                catalog: catalog,
                servers: ServerDirectory(databaseURL: catalogURL, superuser: nil, superuserPassword: nil, servers: [], keyring: nil),
                logger: TestPostgres.logger)
            let migrator = FleetMigrator(migrations: files, logger: TestPostgres.logger)
            let outcomes = await migrator.migrateFleet(
                template: nil, targets: try await fleet.targets(), concurrency: concurrency)
            try await fleet.record(outcomes)
            return outcomes
        }
    }

    func url(_ database: String) async throws -> PostgresURL { try await TestPostgres.url(database: database) }
}

@Suite("fleet migrations", .timeLimit(.minutes(5)))
struct FleetMigrationTests {
    @Test("30 databases, one conflicting: 29 migrated and 1 reported; fixed and re-run: 30 at the latest version")
    func isolatesFailures() async throws {
        let fixture = try await FleetFixture.make(count: 30)
        try fixture.write("V1__customers.sql", "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);")
        try fixture.write("V2__notes.sql", """
            CREATE TABLE notes (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id), body text);
            ALTER TABLE customers ADD COLUMN email text;
            """)
        // Tenant 7 already has a conflicting `notes` table.
        let broken = fixture.tenantDatabases[6]
        try await Database.withConnection(try await fixture.url(broken), logger: TestPostgres.logger) { connection in
            try await connection.query("CREATE TABLE notes (x int)", logger: TestPostgres.logger)
        }
        let first = try await fixture.run()
        #expect(first.count == 30)
        #expect(first.filter { $0.error == nil && $0.version == 2 }.count == 29)
        let failure = try #require(first.first { $0.error != nil })
        #expect(failure.database == broken && failure.version == 1 && failure.applied == [1])
        #expect(failure.error?.contains("V2__notes.sql failed") == true)
        #expect(failure.error?.contains("already exists") == true)
        // V2 was rolled back whole in the broken database: no email column.
        #expect(try await TestPostgres.strings(try await fixture.url(broken), """
            SELECT count(*)::text FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'email'
            """) == ["0"])

        try await Database.withConnection(try await fixture.url(broken), logger: TestPostgres.logger) { connection in
            try await connection.query("DROP TABLE notes", logger: TestPostgres.logger)
        }
        let second = try await fixture.run()
        #expect(second.allSatisfy { $0.error == nil && $0.version == 2 })
        #expect(second.filter { !$0.applied.isEmpty }.map(\.database) == [broken])
        let versions = try await TestPostgres.strings(fixture.catalogURL, "SELECT DISTINCT schema_version::text FROM tenantry.tenants")
        #expect(versions == ["2"])
    }

    @Test("an applied file that was edited is refused, nothing runs; concurrent runs do not collide")
    func editedFileAndConcurrentRuns() async throws {
        let fixture = try await FleetFixture.make(count: 4)
        try fixture.write("V1__base.sql", "CREATE TABLE items (id bigint PRIMARY KEY);")
        // Two runs at once: each migration applied once per database, both succeed.
        async let a = fixture.run()
        async let b = fixture.run()
        let (ra, rb) = try await (a, b)
        #expect((ra + rb).allSatisfy { $0.error == nil && $0.version == 1 })
        #expect((ra + rb).filter { $0.applied == [1] }.count == 4)

        try fixture.write("V1__base.sql", "CREATE TABLE items (id bigint PRIMARY KEY, extra text);")
        try fixture.write("V2__more.sql", "CREATE TABLE more_items (id bigint PRIMARY KEY);")
        let edited = try await fixture.run()
        #expect(edited.allSatisfy { $0.error?.contains("V1__base.sql was edited after it was applied") == true })
        #expect(try await TestPostgres.strings(try await fixture.url(fixture.tenantDatabases[0]),
                                              "SELECT to_regclass('more_items')::text") == [nil])
    }

    @Test("bad migration files are refused before anything runs")
    func badFiles() throws {
        let directory = "/tmp/tenantry-badmig-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "select 'unterminated".write(toFile: "\(directory)/V1__bad.sql", atomically: true, encoding: .utf8)
        let unterminated = #expect(throws: TenantryError.self) { try MigrationFile.load(directory: directory) }
        #expect(unterminated?.message.contains("V1__bad.sql") == true)
        try FileManager.default.removeItem(atPath: "\(directory)/V1__bad.sql")
        try "select 1".write(toFile: "\(directory)/v1_wrong.sql", atomically: true, encoding: .utf8)
        let named = #expect(throws: TenantryError.self) { try MigrationFile.load(directory: directory) }
        #expect(named?.message.contains("V<version>__<name>.sql") == true)
        try FileManager.default.removeItem(atPath: "\(directory)/v1_wrong.sql")
        try "select 1".write(toFile: "\(directory)/V1__a.sql", atomically: true, encoding: .utf8)
        try "select 2".write(toFile: "\(directory)/V01__b.sql", atomically: true, encoding: .utf8)
        let duplicate = #expect(throws: TenantryError.self) { try MigrationFile.load(directory: directory) }
        #expect(duplicate?.message.contains("same version 1") == true)
        #expect(throws: TenantryError.self) { try MigrationFile.load(directory: "/nonexistent/migrations") }
    }
}
