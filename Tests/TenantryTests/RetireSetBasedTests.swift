import Foundation
import HandyShop
import Logging
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Retire-legacy's set-based delete past unindexed foreign keys (HandyShop: `orders`, `qr_codes`
/// and `loaner_devices` reference `repairs (id)` with no index on `repair_id`).
@Suite("retire-legacy set-based: exactly the tenant's rows, no dangling reference, outside references refused", .timeLimit(.minutes(4)))
struct RetireSetBasedTests {
    let logger = MoveFixture.logger

    /// Three HandyShop shops; shops 1 and 2 copied and cut over (dedicated), shop 3 stays shared.
    func withDedicated(_ body: @Sendable (MoveFixture, Relay, Catalog, Retirement) async throws -> Void) async throws {
        let fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 60, provision: 2)
        try await fixture.withDedicatedTenants { try await body(fixture, $0, $1, $2) }
    }

    /// Every row of every table of the unified schema except shop `except`'s rows of tenant
    /// tables, as text, sorted: what must not change.
    static func others(_ fixture: MoveFixture, except shop: Int) async throws -> [String: [String?]] {
        let tables = try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        var rows: [String: [String?]] = [:]
        for case let table? in tables {
            let filter = fixture.plan.table(table) == nil ? "" : " WHERE t.shop_id IS DISTINCT FROM \(shop)"
            rows[table] = try await TestPostgres.strings(fixture.unifiedURL, "SELECT t::text FROM \"\(table)\" t\(filter) ORDER BY 1")
        }
        return rows
    }

    /// Rows that reference a row no longer there, over every foreign key into a tenant table.
    static func dangling(_ fixture: MoveFixture) async throws -> [String: Int] {
        let keys = try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
            try await TenantForeignKey.load(fixture.plan, on: connection, logger: MoveFixture.logger)
        }
        var found: [String: Int] = [:]
        for key in keys {
            let notNull = key.columns.map { "c.\"\($0)\" IS NOT NULL" }.joined(separator: " AND ")
            let join = zip(key.columns, key.referencedColumns).map { "p.\"\($1)\" = c.\"\($0)\"" }.joined(separator: " AND ")
            let count = try await TestPostgres.strings(fixture.unifiedURL, """
                SELECT count(*)::text FROM \(key.quotedTable) c WHERE \(notNull)
                AND NOT EXISTS (SELECT 1 FROM "\(key.referencedTable)" p WHERE \(join))
                """)
            if let value = Int(count.first.flatMap { $0 } ?? "0"), value > 0 { found[key.name] = value }
        }
        return found
    }

    static func count(_ fixture: MoveFixture, _ sql: String) async throws -> Int {
        Int(try await TestPostgres.strings(fixture.unifiedURL, sql).first.flatMap { $0 } ?? "0") ?? 0
    }

    /// Rows of shop `shop` over every tenant table.
    static func rows(of shop: Int, _ fixture: MoveFixture) async throws -> Int {
        var total = 0
        for table in fixture.plan.tables {
            total += try await count(fixture, "SELECT count(*)::text FROM \"\(table.name)\" WHERE shop_id = \(shop)")
        }
        return total
    }

    @Test("set-based past unindexed foreign keys: exactly the tenant's rows go, every other row is unchanged, nothing dangles; restore brings them back")
    func exactRows() async throws {
        try await withDedicated { fixture, relay, _, retirement in
            let deletion = try await Database.withConnection(fixture.unifiedURL, logger: logger) { try await retirement.prepareDeletion(on: $0) }
            #expect(deletion.setBased, "the test server's superuser may skip the per-row triggers")
            let unindexed = Set(deletion.keys.filter { !$0.indexed }.map { "\($0.table).\($0.columns.joined())" })
            #expect(unindexed.isSuperset(of: ["orders.repair_id", "qr_codes.repair_id", "loaner_devices.repair_id"]), "\(unindexed)")
            let before = try await Self.others(fixture, except: 1)
            let shopRows = try await Self.rows(of: 1, fixture)
            #expect(shopRows > 0)
            // Shop 1's repairs are referenced by its own orders, QR codes and loaners: deleted together.
            #expect(try await Self.count(fixture, "SELECT count(*)::text FROM orders o JOIN repairs r ON r.id = o.repair_id WHERE r.shop_id = 1") > 0)
            let report = try await retirement.retire([fixture.ids[0]], archiveDirectory: try CLIRunner.makeDirectory(), dryRun: false)
            #expect(report.tables.reduce(0) { $0 + $1.rows } == shopRows)
            #expect(try await Self.rows(of: 1, fixture) == 0)
            let after = try await Self.others(fixture, except: 1)
            for (table, rows) in before { #expect(after[table] == rows, "\(table): another tenant's or a global row changed") }
            #expect(try await Self.dangling(fixture).isEmpty)
            _ = try await retirement.restore(archive: try #require(report.archive))
            _ = try await relay.catchUp(timeout: .seconds(60))
            #expect(try await Self.rows(of: 1, fixture) == shopRows, "the archive restores every row")
            #expect(try await Self.dangling(fixture).isEmpty)
        }
    }

    /// Retires shop 1 expecting one clear error that names `mention`, and checks nothing changed.
    func expectRefused(
        _ fixture: MoveFixture, _ catalog: Catalog, _ retirement: Retirement, mentioning mention: [String]
    ) async throws {
        let shopRows = try await Self.rows(of: 1, fixture)
        let before = try await Self.others(fixture, except: 1)
        let archiveRoot = try CLIRunner.makeDirectory()
        let error = await #expect(throws: TenantryError.self) {
            _ = try await retirement.retire([fixture.ids[0]], archiveDirectory: archiveRoot, dryRun: false)
        }
        let message = error?.message ?? ""
        for word in mention { #expect(message.contains(word), "\(message)") }
        #expect(message.contains("nothing of this tenant was deleted") && !message.contains("\n"), "\(message)")
        #expect(try await Self.rows(of: 1, fixture) == shopRows, "the tenant's rows stay")
        #expect(try await Self.others(fixture, except: 1) == before, "nothing else changed")
        #expect(try await catalog.move(fixture.ids[0])?.phase == .dedicated)
        #expect(try await TestPostgres.strings(
            try await fixture.tenantURL(fixture.ids[0]),
            "SELECT sync_paused::text FROM tenantry.capture_state WHERE tenant_id = '1'") == ["false"], "the stream resumed")
        let files = try FileManager.default.subpathsOfDirectory(atPath: archiveRoot).filter { $0.hasSuffix(".copy") }
        #expect(files.isEmpty, "no archive file of the tenant stays: \(files)")
    }

    @Test("another tenant's row referencing the tenant's repair (ON DELETE SET NULL): refused, nothing changed, both methods")
    func otherTenantReference() async throws {
        try await withDedicated { fixture, _, catalog, retirement in
            // Shop 3 (shared) lends a loaner against a repair of shop 1.
            _ = try await TestPostgres.strings(fixture.unifiedURL, """
                INSERT INTO loaner_devices (shop_id, repair_id, name)
                SELECT 3, min(id), 'borrowed across shops' FROM repairs WHERE shop_id = 1 RETURNING 'x'
                """)
            try await expectRefused(fixture, catalog, retirement, mentioning: ["1 row(s) of loaner_devices", "repairs", "tenant 1"])
            // Row by row, PostgreSQL's SET NULL would have changed shop 3's loaner silently: refused too.
            var rowByRow = retirement
            rowByRow.deleteMethod = .rowTriggers
            try await expectRefused(fixture, catalog, rowByRow, mentioning: ["loaner_devices"])
        }
    }

    @Test("a global table's row referencing the tenant's repair: refused with the foreign key named, nothing changed")
    func globalReference() async throws {
        try await withDedicated { fixture, _, catalog, retirement in
            _ = try await TestPostgres.strings(fixture.unifiedURL, """
                CREATE TABLE warranty_claims (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    repair_id bigint NOT NULL CONSTRAINT warranty_claims_repair REFERENCES repairs (id))
                """)
            _ = try await TestPostgres.strings(fixture.unifiedURL, """
                INSERT INTO warranty_claims (repair_id) SELECT id FROM repairs WHERE shop_id = 1 ORDER BY id LIMIT 2 RETURNING 'x'
                """)
            try await expectRefused(fixture, catalog, retirement, mentioning: ["2 row(s) of warranty_claims", "warranty_claims_repair"])
        }
    }

    @Test("a row of the tenant written past the guard during the delete rolls the tenant back (nothing dangles)")
    func writtenDuringDelete() async throws {
        try await withDedicated { fixture, _, catalog, retirement in
            let url = fixture.unifiedURL
            let logger = logger
            var racing = retirement
            racing.beforeDelete = { _ in
                // Committed after the delete's snapshot, referencing a repair the delete removes.
                try await Database.withConnection(url, logger: logger) { connection in
                    try await Database.withTransaction(connection, logger: logger) { connection in
                        try await connection.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
                        try await connection.query("""
                            INSERT INTO qr_codes (shop_id, repair_id, code)
                            SELECT 1, min(id), 'racing-write' FROM repairs WHERE shop_id = 1
                            """, logger: logger)
                    }
                }
            }
            let shopRows = try await Self.rows(of: 1, fixture)
            let error = await #expect(throws: TenantryError.self) {
                _ = try await racing.retire([fixture.ids[0]], archiveDirectory: try CLIRunner.makeDirectory(), dryRun: false)
            }
            #expect(error?.message.contains("qr_codes holds") == true, "\(error?.message ?? "")")
            #expect(try await Self.rows(of: 1, fixture) == shopRows + 1, "nothing deleted; the racing row is there")
            #expect(try await catalog.move(fixture.ids[0])?.phase == .dedicated)
            #expect(try await Self.dangling(fixture).isEmpty)
        }
    }

    @Test("two tenants retired at once: one refused rolls back alone; the other commits; the manifest lists only it")
    func concurrentTenants() async throws {
        try await withDedicated { fixture, _, catalog, retirement in
            _ = try await TestPostgres.strings(fixture.unifiedURL, """
                INSERT INTO loaner_devices (shop_id, repair_id, name)
                SELECT 3, min(id), 'borrowed across shops' FROM repairs WHERE shop_id = 2 RETURNING 'x'
                """)
            let secondRows = try await Self.rows(of: 2, fixture)
            var retirement = retirement
            retirement.concurrency = 2
            let archiveRoot = try CLIRunner.makeDirectory()
            await #expect(throws: TenantryError.self) {
                _ = try await retirement.retire(fixture.ids, archiveDirectory: archiveRoot, dryRun: false)
            }
            #expect(try await catalog.move(fixture.ids[0])?.phase == .retired)
            #expect(try await Self.rows(of: 1, fixture) == 0)
            #expect(try await catalog.move(fixture.ids[1])?.phase == .dedicated)
            #expect(try await Self.rows(of: 2, fixture) == secondRows)
            let root = archiveRoot + "/" + (try FileManager.default.contentsOfDirectory(atPath: archiveRoot).first ?? "")
            #expect(try FileManager.default.contentsOfDirectory(atPath: root).sorted() == ["1", "manifest.json"])
            let manifest = try JSONSerialization.jsonObject(
                with: try Data(contentsOf: URL(fileURLWithPath: root + "/manifest.json"))) as? [String: Any]
            let tenants = Set((manifest?["tables"] as? [[String: Any]] ?? []).compactMap { $0["tenant"] as? String })
            #expect(tenants == ["1"])
            #expect(try await Self.dangling(fixture).isEmpty)
        }
    }

    @Test("row by row when set-based is not allowed: a role that may not set session_replication_role, an application DELETE trigger")
    func fallback() async throws {
        let fixture = try await MoveFixture.make(shops: 1, rowsPerShop: 20)
        let logger = logger
        try await fixture.withMover { _, relay, catalog in
            let retirement = Retirement(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: logger)
            func setBased(_ url: PostgresURL) async throws -> Bool {
                try await Database.withConnection(url, logger: logger) { try await retirement.prepareDeletion(on: $0).setBased }
            }
            #expect(try await setBased(fixture.unifiedURL), "the test server's superuser may")
            // A plain role (reads the catalogs, owns nothing): row by row, with a warning; no error.
            let role = "retire_plain_\(UInt32.random(in: 0...UInt32.max))"
            _ = try await TestPostgres.strings(fixture.unifiedURL, "CREATE ROLE \(role) LOGIN PASSWORD 'plain-pw'")
            let plain = fixture.unifiedURL.with(user: role, password: "plain-pw")
            #expect(try await setBased(plain) == false)
            // PostgreSQL 15+: the privilege alone is enough.
            let version = Int(try await TestPostgres.strings(fixture.unifiedURL, "SHOW server_version_num").first.flatMap { $0 } ?? "0") ?? 0
            if version >= 150_000 {
                _ = try await TestPostgres.strings(fixture.unifiedURL, "GRANT SET ON PARAMETER session_replication_role TO \(role)")
                #expect(try await setBased(plain))
            }
            // An application DELETE trigger on a tenant table would be skipped too: row by row.
            _ = try await TestPostgres.strings(fixture.unifiedURL, """
                CREATE FUNCTION app_note_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$
                """)
            _ = try await TestPostgres.strings(
                fixture.unifiedURL, "CREATE TRIGGER app_note_delete AFTER DELETE ON orders FOR EACH ROW EXECUTE FUNCTION app_note_delete()")
            #expect(try await setBased(fixture.unifiedURL) == false)
        }
    }

    @Test("doctor's foreign-key check: each unindexed key into a tenant table named with its cost, a warning; indexed: pass")
    func doctorCheck() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 40)
        _ = try await TestPostgres.strings(fixture.unifiedURL, "ANALYZE")
        let keys = try await Database.withConnection(fixture.unifiedURL, logger: logger) {
            try await TenantForeignKey.load(fixture.plan, on: $0, logger: MoveFixture.logger)
        }
        let check = TenantForeignKey.doctorCheck(keys, tenants: 2)
        #expect(check.status == .warn && check.group == "application database" && check.name == "unindexed foreign keys")
        #expect(check.detail.contains("orders (repair_id) → repairs (id)"), "\(check.detail)")
        #expect(check.detail.contains("each deleted repairs row scans all ~"), "\(check.detail)")
        #expect(check.detail.contains("repairs rows per tenant"), "\(check.detail)")
        #expect(!check.detail.contains("\n"))
        for key in keys where !key.indexed {
            _ = try await TestPostgres.strings(
                fixture.unifiedURL,
                "CREATE INDEX ON \(key.quotedTable) (\(key.columns.map { "\"\($0)\"" }.joined(separator: ", ")))")
        }
        let indexed = try await Database.withConnection(fixture.unifiedURL, logger: logger) {
            try await TenantForeignKey.load(fixture.plan, on: $0, logger: MoveFixture.logger)
        }
        #expect(TenantForeignKey.doctorCheck(indexed, tenants: 2).status == .pass)
        // The same check in the doctor's report.
        var configuration = TenantryConfiguration()
        configuration.databaseURL = fixture.unifiedURL
        configuration.keyring = fixture.base.keyring
        configuration.naming = fixture.base.naming
        let report = try await Operations.with(
            configuration: configuration, databaseURL: fixture.unifiedURL, actor: "test", logger: TestPostgres.logger
        ) { await $0.doctor(sample: 0) }
        #expect(report.checks.first { $0.name == "unindexed foreign keys" }?.status == .pass)
    }
}
