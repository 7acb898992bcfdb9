import Foundation
import HandyShop
import Logging
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Helpers shared by the HandyShop tests.
enum HS {
    static let logger = TestPostgres.logger

    /// A fresh database with the HandyShop schema.
    static func schemaDatabase() async throws -> PostgresURL {
        let url = try await TestPostgres.makeDatabase("hs")
        try await Database.withConnection(url, logger: logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: logger)
        }
        return url
    }

    /// A fresh database with the schema and generated data.
    static func generated(
        shops: Int = 5, rowsPerShop: Int = 200, seed: UInt64 = 42
    ) async throws -> (PostgresURL, HandyShopGenerator.Report) {
        let url = try await schemaDatabase()
        let generator = HandyShopGenerator(options: .init(shops: shops, rowsPerShop: rowsPerShop, seed: seed))
        let report = try await Database.withConnection(url, logger: logger) { connection in
            try await generator.generate(on: connection, logger: logger)
        }
        return (url, report)
    }

    /// The value of a scalar integer expression or one-value query.
    static func int(_ url: PostgresURL, _ sql: String) async throws -> Int {
        let values = try await TestPostgres.strings(url, "SELECT (\(sql))::text")
        return Int(values.first.flatMap { $0 } ?? "") ?? -1
    }

    /// The first column of every row, without NULLs.
    static func names(_ url: PostgresURL, _ sql: String) async throws -> [String] {
        try await TestPostgres.strings(url, sql).compactMap { $0 }
    }
}

@Suite("HandyShop schema and generator", .timeLimit(.minutes(5)))
struct HandyShopTests {
    @Test("the schema loads; exactly the 19 tenant tables carry shop_id NOT NULL")
    func schemaShape() async throws {
        let url = try await HS.schemaDatabase()
        #expect(HandyShopSchema.tenantTables.count == 19)
        #expect(HandyShopSchema.globalTables.count == 9)
        let all = try await HS.names(url, """
            SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1
            """)
        #expect(all == (HandyShopSchema.tenantTables + HandyShopSchema.globalTables).sorted())
        let scoped = try await HS.names(url, """
            SELECT table_name FROM information_schema.columns
            WHERE table_schema = 'public' AND column_name = 'shop_id' AND is_nullable = 'NO' ORDER BY 1
            """)
        #expect(scoped == HandyShopSchema.tenantTables.sorted())
        let withShopID = try await HS.names(url, """
            SELECT table_name FROM information_schema.columns
            WHERE table_schema = 'public' AND column_name = 'shop_id' ORDER BY 1
            """)
        #expect(withShopID == (HandyShopSchema.tenantTables + ["users"]).sorted())
        // Every shop_id references shops: the 19 tenant tables and users.
        let referencing = try await HS.int(url, """
            SELECT count(DISTINCT conrelid) FROM pg_constraint k
            WHERE contype = 'f' AND confrelid = 'shops'::regclass AND conkey = ARRAY[(
                SELECT attnum FROM pg_attribute WHERE attrelid = k.conrelid AND attname = 'shop_id')]
            """)
        #expect(referencing == 20)
        let withPrimaryKey = try await HS.names(url, """
            SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'p' ORDER BY 1
            """)
        #expect(Set(HandyShopSchema.tenantTables + HandyShopSchema.globalTables).isSubset(of: Set(withPrimaryKey)))
        // Parents come before children in tenantTables.
        let edges = try await TestPostgres.strings(url, """
            SELECT conrelid::regclass::text || '>' || confrelid::regclass::text FROM pg_constraint
            WHERE contype = 'f' AND conrelid <> confrelid
            """).compactMap { $0 }
        for edge in edges {
            let parts = edge.split(separator: ">").map(String.init)
            guard let child = HandyShopSchema.tenantTables.firstIndex(of: parts[0]),
                  let parent = HandyShopSchema.tenantTables.firstIndex(of: parts[1]) else { continue }
            #expect(parent < child, "\(edge)")
        }
    }

    @Test("composite keys, partial and expression indexes, generated column, enum and types exist")
    func schemaFeatures() async throws {
        let url = try await HS.schemaDatabase()
        func constraints(_ table: String, _ type: String) async throws -> [String] {
            try await HS.names(url, """
                SELECT pg_get_constraintdef(oid) FROM pg_constraint
                WHERE conrelid = '\(table)'::regclass AND contype = '\(type)' ORDER BY 1
                """)
        }
        #expect(try await constraints("kiosk_online_status", "p") == ["PRIMARY KEY (shop_id, kiosk_id)"])
        #expect(try await constraints("email_templates", "p") == ["PRIMARY KEY (shop_id, template_key)"])
        #expect(try await constraints("kiosk_online_status", "f").contains(
            "FOREIGN KEY (shop_id, kiosk_id) REFERENCES kiosk_devices(shop_id, id) ON DELETE CASCADE"))
        #expect(try await constraints("email_log", "f").contains(
            "FOREIGN KEY (shop_id, template_key) REFERENCES email_templates(shop_id, template_key)"))
        #expect(try await constraints("kiosk_devices", "u").contains("UNIQUE (shop_id, id)"))
        #expect(try await constraints("customers", "u") == ["UNIQUE (shop_id, email)"])
        #expect(try await constraints("repair_status_history", "f").contains(
            "FOREIGN KEY (repair_id) REFERENCES repairs(id) ON DELETE CASCADE"))
        #expect(try await constraints("employees", "f").contains(
            "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE SET NULL"))
        let partial = try await HS.names(url, "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '% WHERE %'")
        #expect(partial.contains("repairs_shop_open") && partial.contains("customers_shop_active_name"))
        let expression = try await HS.names(url, """
            SELECT indexrelid::regclass::text FROM pg_index WHERE indexprs IS NOT NULL ORDER BY 1
            """)
        #expect(expression.contains("customers_shop_lower_email"))
        #expect(expression.contains("newsletter_subscribers_shop_lower_email"))
        let generated = try await HS.names(url, """
            SELECT table_name || '.' || column_name || '=' || generation_expression FROM information_schema.columns
            WHERE table_schema = 'public' AND is_generated = 'ALWAYS'
            """)
        #expect(generated == ["cost_estimates.total=(parts_cost + labor_cost)"])
        let enums = try await HS.names(url, "SELECT typname::text FROM pg_type WHERE typtype = 'e' ORDER BY 1")
        #expect(enums == HandyShopSchema.enumTypes.sorted())
        let statusTypes = try await HS.names(url, """
            SELECT DISTINCT udt_name::text FROM information_schema.columns
            WHERE table_name IN ('repairs', 'repair_status_history') AND column_name LIKE '%status'
            """)
        #expect(statusTypes == ["repair_status"])
        let types = Set(try await HS.names(url, """
            SELECT DISTINCT data_type::text FROM information_schema.columns
            WHERE table_schema = 'public'
            """))
        for type in ["jsonb", "ARRAY", "numeric", "timestamp with time zone", "boolean", "date", "bytea", "inet",
                     "interval", "double precision", "USER-DEFINED", "bigint", "text", "integer", "smallint"] {
            #expect(types.contains(type), "no column of type \(type)")
        }
    }

    @Test("generate: counts match the report, shop sizes are skewed, sequences are advanced")
    func generateCounts() async throws {
        let (url, report) = try await HS.generated(shops: 5, rowsPerShop: 200)
        #expect(report.shopIDs == [1, 2, 3, 4, 5])
        for table in HandyShopSchema.tenantTables + HandyShopSchema.globalTables {
            let count = try await HS.int(url, "SELECT count(*) FROM \(table)")
            #expect(count == report.rowsByTable[table, default: 0], "\(table)")
            if HandyShopSchema.tenantTables.contains(table) { #expect(count >= 5, "\(table) has rows in every shop") }
        }
        #expect(report.totalRows == report.rowsByTable.values.reduce(0, +))
        #expect(report.tenantRows == HandyShopSchema.tenantTables.reduce(0) { $0 + report.rowsByTable[$1, default: 0] })
        #expect(report.tenantRows > 700 && report.tenantRows < 1400, "≈ shops × rowsPerShop: \(report.tenantRows)")
        // Per shop, over all tenant tables.
        let union = HandyShopSchema.tenantTables.map { "SELECT shop_id FROM \($0)" }.joined(separator: " UNION ALL ")
        let perShop = try await HS.names(url, "SELECT count(*)::text FROM (\(union)) u GROUP BY shop_id ORDER BY shop_id")
            .compactMap { Int($0) }
        #expect(perShop.count == 5)
        let largest = perShop.max() ?? 0, smallest = perShop.min() ?? 0
        #expect(largest > 2 * smallest, "skewed: \(perShop)")
        #expect(perShop.first == largest, "shop 1 is the big one: \(perShop)")
        // Children reference parents of their own shop.
        #expect(try await HS.int(url, """
            SELECT count(*) FROM repairs r JOIN customers c ON c.id = r.customer_id WHERE c.shop_id <> r.shop_id
            """) == 0)
        #expect(try await HS.int(url, """
            SELECT count(*) FROM user_models m JOIN user_brands b ON b.id = m.brand_id WHERE b.shop_id <> m.shop_id
            """) == 0)
        #expect(try await HS.int(url, """
            SELECT count(*) FROM customers c JOIN customers r ON r.id = c.referred_by WHERE r.shop_id <> c.shop_id
            """) == 0)
        // Ids interleave across shops, as in a shared database.
        #expect(try await HS.int(url, "SELECT count(DISTINCT shop_id) FROM customers WHERE id <= 20") > 1)
        // Identity sequences were advanced: inserts without ids work.
        let newRepair = try await TestPostgres.strings(url, """
            INSERT INTO repairs (shop_id, customer_id, order_code, issue_description, received_at)
            SELECT 1, min(id), 'NEW-1', 'Display', now() FROM customers WHERE shop_id = 1 RETURNING id::text
            """)
        #expect(newRepair == ["\(report.rowsByTable["repairs", default: 0] + 1)"])
        let newCustomer = try await TestPostgres.strings(url, """
            INSERT INTO customers (shop_id, first_name, last_name) VALUES (2, 'Neu', 'Kunde') RETURNING id::text
            """)
        #expect(newCustomer == ["\(report.rowsByTable["customers", default: 0] + 1)"])
        let newShop = try await TestPostgres.strings(url, "INSERT INTO shops (name, slug) VALUES ('x', 'x') RETURNING id::text")
        #expect(newShop == ["6"])
    }

    @Test("same seed gives identical data, another seed different data")
    func determinism() async throws {
        let (first, firstReport) = try await HS.generated(shops: 3, rowsPerShop: 150, seed: 7)
        let (second, secondReport) = try await HS.generated(shops: 3, rowsPerShop: 150, seed: 7)
        let (other, _) = try await HS.generated(shops: 3, rowsPerShop: 150, seed: 8)
        #expect(firstReport == secondReport)
        func digest(_ url: PostgresURL, _ table: String, _ order: String = "id") async throws -> String? {
            try await TestPostgres.strings(url, """
                SELECT md5(string_agg(t::text, '|' ORDER BY \(order))) FROM \(table) t
                """).first ?? nil
        }
        let keys: [String: String] = ["kiosk_online_status": "shop_id, kiosk_id", "email_templates": "shop_id, template_key",
                                      "shop_settings": "shop_ref", "system_config": "key"]
        for table in HandyShopSchema.tenantTables + HandyShopSchema.globalTables {
            let order = keys[table] ?? "id"
            let a = try await digest(first, table, order), b = try await digest(second, table, order)
            #expect(a != nil && a == b, "\(table)")
        }
        for table in ["customers", "repairs", "signatures", "cost_estimates"] {
            let a = try await digest(first, table), c = try await digest(other, table)
            #expect(a != c, "\(table) differs with another seed")
        }
    }
}
