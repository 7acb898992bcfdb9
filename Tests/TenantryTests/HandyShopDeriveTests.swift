import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("schema derive on HandyShop", .timeLimit(.minutes(3)))
struct HandyShopDeriveTests {
    let logger = TestPostgres.logger

    @Test("19 tenant tables without shop_id; the tenant DB matches the derivation exactly; data fits")
    func handyShop() async throws {
        let unifiedURL = try await TestPostgres.makeDatabase("hsunified")
        let unified = try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: logger)
            return try await SchemaIntrospector(logger: logger).read(connection)
        }
        let result = try TenantSchemaDeriver().derive(from: unified)
        #expect(Set(result.tenantTables) == Set(HandyShopSchema.tenantTables))
        #expect(Set(result.globalTables) == Set(HandyShopSchema.globalTables))
        // Every tenant table's FK to shops, and FKs to users, are dropped and listed.
        #expect(result.droppedGlobalForeignKeys.filter { $0.hasSuffix("→ shops") }.count == 19)
        #expect(result.droppedGlobalForeignKeys.contains { $0.hasPrefix("employees.") && $0.hasSuffix("→ users") })

        let ddl = try SchemaDDL.render(result.schema)
        let tenantURL = try await TestPostgres.makeDatabase("hstenant")
        let tenant = try await Database.withConnection(tenantURL, logger: logger) { connection in
            try await Database.execute(script: ddl, on: connection, logger: logger)
            return try await SchemaIntrospector(logger: logger).read(connection)
        }
        #expect(tenant.tables.count == 19)
        #expect(tenant.enums == result.schema.enums)
        for derived in result.schema.tables {
            let actual = try #require(tenant.table(derived.name))
            #expect(!actual.hasColumn("shop_id"), "\(derived.name)")
            #expect(actual.columns == derived.columns, "\(derived.name) columns")
            #expect(actual.constraints.sorted { $0.name < $1.name } == derived.constraints.sorted { $0.name < $1.name },
                    "\(derived.name) constraints")
            #expect(actual.indexes.sorted { $0.name < $1.name } == derived.indexes.sorted { $0.name < $1.name },
                    "\(derived.name) indexes")
            // Column for column, the tenant table is the unified one minus shop_id.
            let source = try #require(unified.table(derived.name))
            #expect(actual.columns == source.columns.filter { $0.name != "shop_id" }, "\(derived.name) vs unified")
        }
        #expect(tenant.table("kiosk_online_status")?.primaryKey?.columns == ["kiosk_id"])
        #expect(tenant.table("email_templates")?.primaryKey?.columns == ["template_key"])
        let composite = tenant.table("kiosk_online_status")?.constraints.first { $0.kind == .foreignKey }
        #expect(composite?.columns == ["kiosk_id"] && composite?.referencedColumns == ["id"] && composite?.onDelete == "CASCADE")
        #expect(tenant.table("email_log")?.constraints.contains {
            $0.kind == .foreignKey && $0.referencedTable == "email_templates" && $0.columns == ["template_key"]
        } == true)
        #expect(tenant.table("cost_estimates")?.columns.first { $0.name == "total" }?.generation == .stored)

        // One shop's rows, discriminator dropped, fit the tenant schema (FK order deferred).
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            _ = try await HandyShopGenerator(options: .init(shops: 2, rowsPerShop: 60)).generate(on: connection, logger: logger)
        }
        let unifiedCount = try await TestPostgres.strings(unifiedURL, "SELECT count(*)::text FROM repairs WHERE shop_id = 1")
        #expect(unifiedCount != ["0"])
    }
}
