import Foundation
import HandyShop
import Logging
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// A HandyShop unified database (no catalog, no tenant databases): what the guard needs.
private enum GuardBed {
    static let logger = TestPostgres.logger

    static func make(shops: Int = 4, rowsPerShop: Int = 40) async throws -> PostgresURL {
        let url = try await TestPostgres.makeDatabase("guard")
        try await Database.withConnection(url, logger: logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: logger)
            _ = try await HandyShopGenerator(options: .init(shops: shops, rowsPerShop: rowsPerShop, seed: 11))
                .generate(on: connection, logger: logger)
        }
        return url
    }

    /// The refused statement's error (one line, as the CLI and the router show it).
    static func refusal(_ url: PostgresURL, _ sql: String) async throws -> String? {
        do {
            try await Database.withConnection(url, logger: logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            }
            return nil
        } catch {
            return Database.message(of: error)
        }
    }

    static func auditRows(_ url: PostgresURL) async throws -> [String] {
        try await TestPostgres.strings(url, """
            SELECT table_name || ' ' || column_name || ' ' || old_value || '->' || new_value || ' key=' || row_key::text
                || ' by ' || login_role FROM tenantry.guard_audit ORDER BY id
            """).compactMap { $0 }
    }

    /// A login role (cluster-wide, so uniquely named) allowed to read and write the public tables.
    static func appRole(_ url: PostgresURL) async throws -> (name: String, url: PostgresURL) {
        let name = "app_\(UUID().uuidString.prefix(8).lowercased())"
        try await Database.withConnection(url, logger: logger) { connection in
            try await Database.execute(script: """
                CREATE ROLE \(name) LOGIN PASSWORD 'app-secret';
                GRANT USAGE ON SCHEMA public TO \(name);
                GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \(name);
                GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO \(name);
                """, on: connection, logger: logger)
        }
        return (name, url.with(user: name, password: "app-secret"))
    }
}

@Suite("guard: immutable audited discriminator, row-level security, moved tenants", .timeLimit(.minutes(4)))
struct GuardTests {
    let logger = GuardBed.logger

    @Test("a shop_id update is refused with a clear error and the attempt is in tenantry.guard_audit, with or without capture")
    func discriminatorRefusedAndAudited() async throws {
        let url = try await GuardBed.make()
        let tenantGuard = TenantGuard(unifiedURL: url, logger: logger)
        let report = try await tenantGuard.install(installCapture: false)
        #expect(report.auditMode == .dblink, "\(report.auditNote ?? "")")
        #expect(report.tables.count == HandyShopSchema.tenantTables.count)
        #expect(!report.captureInstalled)
        let id = try #require(try await TestPostgres.strings(url, "SELECT min(id)::text FROM customers WHERE shop_id = 1").first ?? nil)

        // Without capture: the guard alone refuses, and the record survives the rollback.
        let error = try #require(try await GuardBed.refusal(url, "UPDATE customers SET shop_id = 2 WHERE id = \(id)"))
        #expect(error.contains("customers.shop_id cannot change (from 1 to 2): a row belongs to one tenant"), "\(error)")
        #expect(error.contains("recorded in tenantry.guard_audit") && error.contains("[23514]"), "\(error)")
        #expect(try await TestPostgres.strings(url, "SELECT shop_id::text FROM customers WHERE id = \(id)") == ["1"])
        #expect(try await GuardBed.auditRows(url) == ["public.customers shop_id 1->2 key={\"id\": \(id)} by postgres"])

        // With capture installed too: the guard fires first (audited); capture's own check stays behind it.
        _ = try await Capture(unifiedURL: url, logger: logger).install()
        let second = try #require(try await GuardBed.refusal(url, "UPDATE repairs SET shop_id = shop_id + 1 WHERE shop_id = 3"))
        #expect(second.contains("repairs.shop_id cannot change (from 3 to 4)"), "\(second)")
        let rows = try await GuardBed.auditRows(url)
        #expect(rows.count == 2 && rows[1].hasPrefix("public.repairs shop_id 3->4"), "\(rows)")
        // Changing other columns is untouched.
        #expect(try await GuardBed.refusal(url, "UPDATE customers SET notes = 'ok' WHERE id = \(id)") == nil)

        // Server-log mode: still refused, nothing stored, and the error says where the record went.
        _ = try await tenantGuard.install(audit: .serverLog, installCapture: false)
        let logged = try #require(try await GuardBed.refusal(url, "UPDATE customers SET shop_id = 3 WHERE id = \(id)"))
        #expect(logged.contains("cannot change") && logged.contains("recorded in the server log"), "\(logged)")
        #expect(try await GuardBed.auditRows(url).count == 2)
    }

    @Test("row-level security: the app role with tenantry.tenant = 3 sees only shop 3 and cannot write another shop's row")
    func rowLevelSecurity() async throws {
        let url = try await GuardBed.make()
        let app = try await GuardBed.appRole(url)
        let report = try await TenantGuard(unifiedURL: url, logger: logger).install(appRoles: [app.name])
        #expect(report.appRoles == [app.name] && report.captureInstalled)
        let shop3 = try await TestPostgres.strings(url, "SELECT count(*)::text FROM customers WHERE shop_id = 3")

        try await Database.withConnection(app.url, logger: logger) { connection in
            func strings(_ sql: String) async throws -> [String] {
                var result: [String] = []
                for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(String?.self) {
                    result.append(value ?? "NULL")
                }
                return result
            }
            // No tenant set: nothing visible.
            #expect(try await strings("SELECT count(*)::text FROM customers") == ["0"])
            try await connection.query("SET tenantry.tenant = '3'", logger: logger)
            #expect(try await strings("SELECT DISTINCT shop_id::text FROM customers") == ["3"])
            #expect(try await strings("SELECT count(*)::text FROM customers").map(Optional.some) == shop3)
            #expect(try await strings("SELECT count(*)::text FROM repairs WHERE shop_id <> 3") == ["0"])
            // Updates and deletes cannot reach other shops' rows.
            #expect(try await strings("WITH u AS (UPDATE customers SET notes = 'x' WHERE shop_id = 2 RETURNING 1) SELECT count(*)::text FROM u") == ["0"])
            // Its own shop: allowed.
            try await connection.query(
                "INSERT INTO customers (shop_id, first_name, last_name) VALUES (3, 'Own', 'Shop')", logger: logger)
            // Another shop's row: refused.
            await #expect {
                try await connection.query(
                    "INSERT INTO customers (shop_id, first_name, last_name) VALUES (2, 'Other', 'Shop')", logger: logger)
            } throws: { error in
                Database.message(of: error).contains("row-level security")
            }
            // Moving its own row to another shop: refused by the guard, which runs before RLS, so it is audited.
            await #expect {
                try await connection.query("UPDATE customers SET shop_id = 2 WHERE first_name = 'Own'", logger: logger)
            } throws: { error in
                Database.message(of: error).contains("shop_id cannot change (from 3 to 2)")
            }
        }
        #expect(try await GuardBed.auditRows(url).last?.hasSuffix("by \(app.name)") == true)
        // The owner (here a superuser) is not affected.
        #expect(try await TestPostgres.strings(url, "SELECT count(DISTINCT shop_id)::text FROM customers") == ["4"])
        #expect(try await TestPostgres.strings(url, "SELECT count(*)::text FROM customers WHERE first_name = 'Other'") == ["0"])
    }

    @Test("install is idempotent: a re-run changes nothing; status reports it; uninstall removes it and keeps the audit")
    func idempotentInstall() async throws {
        let url = try await GuardBed.make(shops: 2, rowsPerShop: 20)
        let app = try await GuardBed.appRole(url)
        let tenantGuard = TenantGuard(unifiedURL: url, logger: logger)
        let first = try await tenantGuard.install(appRoles: [app.name])
        #expect(first.changed.count == HandyShopSchema.tenantTables.count)
        // Re-run with the same roles (implicitly: those of the last install), concurrently twice.
        async let a = tenantGuard.install()
        async let b = tenantGuard.install()
        let (second, third) = try await (a, b)
        #expect(second.changed == [] && third.changed == [], "\(second.changed) \(third.changed)")
        #expect(second.appRoles == [app.name])
        let triggers = try await TestPostgres.strings(url, """
            SELECT count(*)::text FROM pg_trigger WHERE tgname = 'tenantry_audit_discriminator'
            """)
        let policies = try await TestPostgres.strings(url, "SELECT count(*)::text FROM pg_policies WHERE policyname = 'tenantry_tenant_isolation'")
        #expect(triggers == ["\(HandyShopSchema.tenantTables.count)"] && policies == triggers)
        _ = try await GuardBed.refusal(url, "UPDATE customers SET shop_id = 2 WHERE shop_id = 1")
        var status = try await tenantGuard.status()
        #expect(status.installed && status.auditMode == .dblink && status.unguardedTables == [] && status.captureInstalled)
        #expect(status.rowLevelSecurityTables.count == HandyShopSchema.tenantTables.count && status.auditedAttempts == 1)

        // A role that would not be confined is refused, naming it; nothing changes.
        await #expect(throws: TenantryError.self) { try await tenantGuard.install(appRoles: ["postgres"]) }
        await #expect(throws: TenantryError.self) { try await tenantGuard.install(appRoles: ["no_such_role_x"]) }

        let removed = try await tenantGuard.uninstall()
        #expect(removed.tables.count == HandyShopSchema.tenantTables.count)
        status = try await tenantGuard.status()
        #expect(!status.installed && status.guardedTables == [] && status.rowLevelSecurityTables == [])
        #expect(try await TestPostgres.strings(url, "SELECT count(*)::text FROM tenantry.guard_audit") == ["1"])
        // The app role sees every shop again (RLS off), and capture still keeps shop_id fixed.
        #expect(try await TestPostgres.strings(app.url, "SELECT count(DISTINCT shop_id)::text FROM customers") == ["2"])
        let error = try await GuardBed.refusal(url, "UPDATE customers SET shop_id = 2 WHERE shop_id = 1")
        #expect(error?.contains("cannot change") == true)
    }
}

@Suite("guard: moved tenants", .timeLimit(.minutes(4)))
struct GuardMovedTenantTests {
    @Test("after cutover a moved shop's direct write to unified is rejected; the guard and capture coexist")
    func movedTenantRejected() async throws {
        let fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 30, provision: 2)
        let logger = MoveFixture.logger
        let report = try await TenantGuard(unifiedURL: fixture.unifiedURL, logger: logger).install()
        #expect(report.captureInstalled)
        try await fixture.withMover { copier, relay, catalog in
            _ = try await copier.copy(fixture.ids[0])
            let cutover = Cutover(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: logger)
            _ = try await cutover.cutover(fixture.ids[0], maxPause: .seconds(5))
        }
        let moved = try #require(try await GuardBed.refusal(
            fixture.unifiedURL, "INSERT INTO customers (shop_id, first_name, last_name) VALUES (1, 'Direct', 'Write')"))
        #expect(moved.contains("tenant 1 has moved to its own database") && moved.contains("[25006]"), "\(moved)")
        #expect(try await GuardBed.refusal(fixture.unifiedURL, "UPDATE customers SET notes = 'x' WHERE shop_id = 1") != nil)
        // A shop that has not moved writes as before; its shop_id stays fixed and audited.
        #expect(try await GuardBed.refusal(
            fixture.unifiedURL, "INSERT INTO customers (shop_id, first_name, last_name) VALUES (2, 'Still', 'Shared')") == nil)
        let refused = try await GuardBed.refusal(fixture.unifiedURL, "UPDATE customers SET shop_id = 3 WHERE shop_id = 2")
        #expect(refused?.contains("recorded in tenantry.guard_audit") == true, "\(refused ?? "")")
    }
}
