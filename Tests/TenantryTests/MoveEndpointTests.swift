import Foundation
import Logging
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The move engine over endpoints: the change applier's SQL comes from the target endpoint alone.
@Suite("move endpoints: SQL from the target")
struct MoveEndpointTests {
    let plan = MovePlan(
        schema: "public", discriminator: "shop_id", discriminatorType: "integer",
        tables: [MovePlan.Table(
            name: "orders", quoted: "\"orders\"", columns: [], writableColumns: ["id", "total"], primaryKey: ["id"],
            hasIdentityAlways: false, unifiedPrimaryKey: ["shop_id", "id"], unifiedHasIdentityAlways: true)])
    let unified = try! PostgresURL("postgres://admin@localhost:5432/unified")
    let tenantDB = try! PostgresURL("postgres://admin@localhost:5432/tenant_7")
    let otherServer = try! PostgresURL("postgres://admin@elsewhere:5432/tenant_7")
    let tenant = try! TenantID("7")

    @Test("a target without a filter (a tenant database): tenant keys, no discriminator, no cross-tenant guard")
    func unfilteredTarget() {
        let route = MoveRoute.toDedicated(tenant, unified: unified, tenantDatabase: tenantDB, plan: plan)
        #expect(route.source.filter == MoveEndpoint.RowFilter(column: "shop_id", type: "integer", tenant: tenant))
        #expect(route.target.filter == nil && !route.isReverse)
        let applier = ChangeApplier(plan: plan, target: route.target, logger: TestPostgres.logger)
        #expect(applier.upsertSQL(plan.tables[0]) == """
            INSERT INTO "orders" ("id", "total")
            SELECT p."id", p."total" FROM jsonb_array_elements($1::jsonb) AS r(image),
                LATERAL jsonb_populate_record(NULL::"orders", r.image) AS p
            ON CONFLICT ("id") DO UPDATE SET "total" = EXCLUDED."total"
            """)
        #expect(applier.deleteSQL(plan.tables[0]) == """
            DELETE FROM "orders" t USING jsonb_populate_recordset(NULL::"orders", $1::jsonb) k WHERE t."id" = k."id"
            """)
    }

    @Test("a filtered target (unified, reverse sync): discriminator bound as $2, unified keys, the same-tenant guard")
    func filteredTarget() {
        let route = MoveRoute.toDedicated(tenant, unified: unified, tenantDatabase: tenantDB, plan: plan).reversed
        #expect(route.isReverse && route.target.isShared && !route.target.defersConstraints)
        let applier = ChangeApplier(plan: plan, target: route.target, logger: TestPostgres.logger)
        #expect(applier.upsertSQL(plan.tables[0]) == """
            INSERT INTO "public"."orders" ("shop_id", "id", "total") OVERRIDING SYSTEM VALUE
            SELECT CAST($2 AS integer), p."id", p."total" FROM jsonb_array_elements($1::jsonb) AS r(image),
                LATERAL jsonb_populate_record(NULL::"public"."orders", r.image) AS p
            ON CONFLICT ("shop_id", "id") DO UPDATE SET "total" = EXCLUDED."total" \
            WHERE "public"."orders"."shop_id" = EXCLUDED."shop_id" RETURNING 1
            """)
        #expect(applier.deleteSQL(plan.tables[0]) == """
            DELETE FROM "public"."orders" t USING jsonb_populate_recordset(NULL::"public"."orders", $1::jsonb) k \
            WHERE t."id" = k."id" AND t."shop_id" = CAST($2 AS integer)
            """)
    }

    @Test("dedicated → dedicated on another server (Step 10) is a pair of unfiltered endpoints: the forward SQL")
    func dedicatedToDedicated() {
        let route = MoveRoute(tenant: tenant, source: .dedicated(tenantDB), target: .dedicated(otherServer))
        #expect(!route.isReverse && route.target.defersConstraints)
        let forward = ChangeApplier(plan: plan, target: .dedicated(tenantDB), logger: TestPostgres.logger)
        let between = ChangeApplier(plan: plan, target: route.target, logger: TestPostgres.logger)
        #expect(between.upsertSQL(plan.tables[0]) == forward.upsertSQL(plan.tables[0]))
        #expect(between.deleteSQL(plan.tables[0]) == forward.deleteSQL(plan.tables[0]))
    }

    @Test("a row filter is the index-friendly condition the plan's tenant filter was")
    func rowFilter() {
        let filter = MoveEndpoint.shared(unified, plan: plan, tenant: tenant).filter
        #expect(filter?.condition(parameter: 1) == plan.tenantFilter(parameter: 1))
        #expect(filter?.condition(parameter: 2, alias: "t") == "t.\"shop_id\" = CAST($2 AS integer)")
        #expect(MoveEndpoint.shared(unified, plan: plan, tenant: tenant).name(plan.tables[0]) == plan.unifiedName(plan.tables[0]))
    }
}
