import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("Catalog", .timeLimit(.minutes(3)))
struct CatalogTests {
    let logger = TestPostgres.logger

    @Test("init creates every table; a second run applies nothing")
    func idempotentMigration() async throws {
        let url = try await TestPostgres.makeDatabase("catalog")
        try await Catalog.withCatalog(url, logger: logger) { catalog in
            #expect(try await catalog.version() == 0)
            await #expect(throws: TenantryError.self) { try await catalog.requireCurrent() }
            let first = try await catalog.migrate()
            #expect(first.applied == [1, 2, 3, 4] && first.version == 4)
            let second = try await catalog.migrate()
            #expect(second.applied.isEmpty && second.version == 4)
            try await catalog.requireCurrent()
        }
        let tables = try await TestPostgres.strings(url, """
            SELECT table_name FROM information_schema.tables WHERE table_schema = 'tenantry' ORDER BY 1
            """)
        #expect(tables == ["audit_log", "catalog_migrations", "credentials", "moves", "read_policy", "server_moves", "servers", "tenants"])
    }

    @Test("ten concurrent inits: all succeed, migration applied exactly once")
    func concurrentInit() async throws {
        let url = try await TestPostgres.makeDatabase("catalog")
        let reports = try await withThrowingTaskGroup(of: Catalog.MigrationReport.self) { group in
            for _ in 0..<10 {
                group.addTask { try await Catalog.withCatalog(url, logger: logger) { try await $0.migrate() } }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(reports.count == 10)
        #expect(reports.filter { $0.applied == [1, 2, 3, 4] }.count == 1)
        #expect(reports.filter { $0.applied.isEmpty }.count == 9)
        #expect(reports.allSatisfy { $0.version == 4 })
        #expect(try await TestPostgres.strings(url, "SELECT count(*)::text FROM tenantry.catalog_migrations") == ["4"])
    }

    @Test("an edited catalog migration is detected")
    func checksumMismatch() async throws {
        let url = try await TestPostgres.makeDatabase("catalog")
        try await Catalog.withCatalog(url, logger: logger) { catalog in
            _ = try await catalog.migrate()
            try await catalog.client.query("UPDATE tenantry.catalog_migrations SET checksum = 'edited'", logger: logger)
            let error = await #expect(throws: TenantryError.self) { try await catalog.migrate() }
            #expect(error?.code == .catalogMigration)
        }
    }

    @Test("a catalog newer than the tool is refused")
    func newerCatalog() async throws {
        let url = try await TestPostgres.makeDatabase("catalog")
        try await Catalog.withCatalog(url, logger: logger) { catalog in
            _ = try await catalog.migrate()
            try await catalog.client.query(
                "INSERT INTO tenantry.catalog_migrations (version, name, checksum) VALUES (99, 'future', 'x')", logger: logger)
            let error = await #expect(throws: TenantryError.self) { try await catalog.migrate() }
            #expect(error?.code == .catalogNewerThanTool)
        }
    }

    @Test("typed store: tenants, epochs, credentials, servers, phases, read policy, audit, summary")
    func typedStore() async throws {
        let url = try await TestPostgres.makeDatabase("catalog")
        let keyring = Keyring(current: .generate())
        try await Catalog.withCatalog(url, logger: logger) { catalog in
            _ = try await catalog.migrate()
            let ids = try ["10", "2", "1"].map { try TenantID($0) }
            #expect(try await catalog.registerTenants(ids) == 3)
            #expect(try await catalog.registerTenants(ids) == 0)
            #expect(try await catalog.tenants().map(\.id.rawValue) == ["1", "2", "10"])

            try await catalog.upsertServer(ServerRecord(
                name: "main", host: "127.0.0.1", port: 5432, adminUser: "postgres",
                adminPasswordSealed: try keyring.seal("pw", tenant: "server:main", field: "admin_password"), isDefault: true))
            #expect(try await catalog.servers().map(\.name) == ["main"])

            var tenant = try await catalog.requireTenant(ids[2])
            #expect(tenant.epoch == 1 && tenant.placement == .shared)
            tenant.placement = .dedicated
            tenant.serverName = "main"
            tenant.databaseName = "shop_1_db"
            try await catalog.upsertTenant(tenant)
            let moved = try await catalog.requireTenant(ids[2])
            #expect(moved.placement == .dedicated && moved.epoch == 2 && moved.databaseName == "shop_1_db")
            try await catalog.upsertTenant(moved)
            #expect(try await catalog.requireTenant(ids[2]).epoch == 2)
            await #expect(throws: TenantryError.self) { try await catalog.requireTenant(try TenantID("404")) }

            let sealed = try keyring.seal("secret-password", tenant: "1", field: "password")
            try await catalog.storeCredential(tenant: ids[2], username: "shop_user_1", passwordSealed: sealed)
            let credential = try #require(try await catalog.credential(ids[2]))
            #expect(credential.keyID == keyring.current.id && credential.username == "shop_user_1")
            #expect(try keyring.open(credential.passwordSealed, tenant: "1", field: "password") == "secret-password")

            try await catalog.setPhase(ids[2], to: .provisioned)
            try await catalog.setPhase(ids[2], to: .copying)
            let skip = await #expect(throws: TenantryError.self) { try await catalog.setPhase(ids[2], to: .dedicated) }
            #expect(skip?.code == .conflict)
            try await catalog.setPhase(ids[2], to: .shared)
            #expect(try await catalog.move(ids[2])?.phase == .shared)

            var policy = ReadPolicy()
            policy.strategy = .canary
            policy.canaryIDs = [ids[0]]
            try await catalog.setReadPolicy(policy)
            #expect(try await catalog.readPolicy() == policy)
            policy.canaryIDs = []
            await #expect(throws: TenantryError.self) { try await catalog.setReadPolicy(policy) }

            try await catalog.audit(actor: "test", action: "provision", tenant: ids[2], outcome: .ok, detail: ["db": "shop_1_db"])
            let entries = try await catalog.auditLog(tenant: ids[2])
            #expect(entries.count == 1 && entries[0].action == "provision" && entries[0].detail.contains("shop_1_db"))

            let summary = try await catalog.summary()
            #expect(summary.tenants == 3)
            #expect(summary.byPlacement == ["shared": 2, "dedicated": 1])
            #expect(summary.byPhase["shared"] == 3)
            #expect(summary.readPolicy.strategy == .canary)

            try await catalog.deleteTenant(ids[2])
            #expect(try await catalog.credential(ids[2]) == nil)
        }
        // No plaintext secret in any catalog table.
        let dump = try await TestPostgres.strings(url, """
            SELECT string_agg(t::text, ' ') FROM (SELECT * FROM tenantry.credentials) t
            UNION ALL SELECT string_agg(s::text, ' ') FROM tenantry.servers s
            """)
        #expect(!dump.compactMap { $0 }.joined().contains("secret-password"))
    }

    @Test("route changes are announced with NOTIFY")
    func notifies() async throws {
        let url = try await TestPostgres.makeDatabase("catalog")
        try await Catalog.withCatalog(url, logger: logger) { _ = try await $0.migrate() }
        let listener = try await Database.connect(url, logger: logger)
        defer { Task { try? await listener.close() } }
        let notifications = try await listener.listen("tenantry_routes")
        try await Catalog.withCatalog(url, logger: logger) { catalog in
            try await catalog.registerTenants([try TenantID("5")])
        }
        var iterator = notifications.makeAsyncIterator()
        let first = try await iterator.next()
        #expect(first?.payload == "tenants:5")
    }
}
