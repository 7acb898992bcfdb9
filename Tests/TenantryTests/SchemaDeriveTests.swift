import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("schema derive", .timeLimit(.minutes(3)))
struct SchemaDeriveTests {
    let logger = TestPostgres.logger

    static let trickySchema = """
        CREATE TABLE shops (id bigint PRIMARY KEY, name text);
        CREATE TABLE settings_global (key text PRIMARY KEY, value text);
        CREATE TYPE "Mood" AS ENUM ('happy', 'it''s complicated');
        CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
        CREATE TABLE customers (
            shop_id bigint NOT NULL REFERENCES shops (id),
            id bigint GENERATED ALWAYS AS IDENTITY,
            email text NOT NULL,
            "Display Name" text COLLATE "C",
            mood "Mood" DEFAULT 'happy',
            tags text[] DEFAULT '{}',
            PRIMARY KEY (shop_id, id),
            UNIQUE (shop_id, email),
            CONSTRAINT email_not_empty CHECK (email <> '')
        );
        CREATE TABLE "order" (
            shop_id bigint NOT NULL,
            id serial,
            customer_id bigint NOT NULL,
            parent_id integer,
            qty positive_int NOT NULL,
            price numeric(10,2) NOT NULL,
            total numeric GENERATED ALWAYS AS (qty * price) STORED,
            "select" text,
            deleted_at timestamptz,
            PRIMARY KEY (shop_id, id),
            CONSTRAINT order_customer FOREIGN KEY (shop_id, customer_id) REFERENCES customers (shop_id, id) ON DELETE CASCADE,
            CONSTRAINT order_parent FOREIGN KEY (shop_id, parent_id) REFERENCES "order" (shop_id, id),
            CONSTRAINT order_shop FOREIGN KEY (shop_id) REFERENCES shops (id),
            CONSTRAINT order_shop_positive CHECK (shop_id > 0)
        );
        CREATE INDEX order_live ON "order" (shop_id, customer_id) WHERE deleted_at IS NULL;
        CREATE INDEX customers_lower_email ON customers (shop_id, lower(email));
        CREATE INDEX order_shop_only ON "order" (shop_id);
        CREATE UNIQUE INDEX order_select ON "order" (shop_id, "select" DESC NULLS LAST);
        CREATE INDEX order_tenant_predicate ON "order" (customer_id) WHERE shop_id > 0;
        CREATE INDEX customers_pk_copy ON customers (shop_id, id);
        CREATE TABLE "MixedCase" (shop_id bigint NOT NULL, "Key" text NOT NULL, author text REFERENCES settings_global (key),
            PRIMARY KEY (shop_id, "Key"));
        CREATE TABLE audit_events (shop_id bigint NOT NULL, happened_at timestamptz, what text);
        """

    func unifiedModel() async throws -> (PostgresURL, SchemaModel) {
        let url = try await TestPostgres.makeDatabase("unified")
        let model = try await Database.withConnection(url, logger: logger) { connection in
            try await Database.execute(script: Self.trickySchema, on: connection, logger: logger)
            return try await SchemaIntrospector(logger: logger).read(connection)
        }
        return (url, model)
    }

    @Test("a tenant table without a primary key is one error naming it, unless excluded")
    func tableWithoutKey() async throws {
        let (_, model) = try await unifiedModel()
        let error = #expect(throws: TenantryError.self) { try TenantSchemaDeriver().derive(from: model) }
        #expect(error?.message.contains("audit_events") == true)
        #expect(error?.message.contains("--exclude") == true)
        let result = try TenantSchemaDeriver(excludedTables: ["audit_events"]).derive(from: model)
        #expect(!result.tenantTables.contains("audit_events"))
        #expect(result.changes.contains { $0.table == "audit_events" && $0.action == "excluded" })
    }

    @Test("tricky schema: derived DDL applies, and the tenant DB matches column by column and constraint by constraint")
    func trickySchema() async throws {
        let (_, unified) = try await unifiedModel()
        let result = try TenantSchemaDeriver(excludedTables: ["audit_events"]).derive(from: unified)
        #expect(Set(result.tenantTables) == ["customers", "order", "MixedCase"])
        #expect(Set(result.globalTables) == ["shops", "settings_global"])
        #expect(Set(result.droppedGlobalForeignKeys) == [
            "customers.customers_shop_id_fkey → shops", "order.order_shop → shops",
            "MixedCase.MixedCase_author_fkey → settings_global",
        ])

        let ddl = try SchemaDDL.render(result.schema)
        let tenantURL = try await TestPostgres.makeDatabase("tenant")
        let tenant = try await Database.withConnection(tenantURL, logger: logger) { connection in
            try await Database.execute(script: ddl, on: connection, logger: logger)
            return try await SchemaIntrospector(logger: logger).read(connection)
        }

        // The tenant database is exactly the derived model (types, defaults, identity, generated,
        // collations, keys, checks, foreign keys, indexes).
        #expect(tenant.enums == result.schema.enums)
        #expect(tenant.domains == result.schema.domains)
        #expect(tenant.sequences == result.schema.sequences)
        for derived in result.schema.tables {
            let actual = try #require(tenant.table(derived.name), "\(derived.name) missing")
            #expect(actual.columns == derived.columns, "\(derived.name) columns")
            #expect(actual.constraints.sorted { $0.name < $1.name } == derived.constraints.sorted { $0.name < $1.name },
                    "\(derived.name) constraints")
            #expect(actual.indexes.sorted { $0.name < $1.name } == derived.indexes.sorted { $0.name < $1.name },
                    "\(derived.name) indexes")
        }

        let customers = try #require(tenant.table("customers"))
        #expect(!customers.hasColumn("shop_id"))
        #expect(customers.primaryKey?.columns == ["id"])
        #expect(customers.columns.first { $0.name == "id" }?.generation == .identityAlways)
        #expect(customers.columns.first { $0.name == "Display Name" }?.collation == "\"C\"")
        #expect(customers.constraints.contains { $0.kind == .unique && $0.columns == ["email"] })
        #expect(customers.constraints.contains { $0.name == "email_not_empty" })
        #expect(customers.indexes.map(\.name) == ["customers_lower_email"])
        #expect(customers.indexes.first?.keys.first?.definition == "(lower(email))")

        let order = try #require(tenant.table("order"))
        #expect(order.primaryKey?.columns == ["id"])
        #expect(order.columns.first { $0.name == "total" }?.generation == .stored)
        #expect(order.columns.first { $0.name == "id" }?.defaultExpression?.contains("order_id_seq") == true)
        #expect(order.columns.first { $0.name == "qty" }?.type == "positive_int")
        let customerFK = try #require(order.constraints.first { $0.name == "order_customer" })
        #expect(customerFK.columns == ["customer_id"] && customerFK.referencedColumns == ["id"] && customerFK.onDelete == "CASCADE")
        let parentFK = try #require(order.constraints.first { $0.name == "order_parent" })
        #expect(parentFK.referencedTable == "order" && parentFK.columns == ["parent_id"])
        #expect(!order.constraints.contains { $0.name == "order_shop" || $0.name == "order_shop_positive" })
        #expect(Set(order.indexes.map(\.name)) == ["order_live", "order_select"])
        #expect(order.indexes.first { $0.name == "order_live" }?.predicate == "deleted_at IS NULL")
        #expect(order.indexes.first { $0.name == "order_select" }?.keys.first?.options == "DESC NULLS LAST")

        let mixed = try #require(tenant.table("MixedCase"))
        #expect(mixed.primaryKey?.columns == ["Key"])
        #expect(!mixed.constraints.contains { $0.kind == .foreignKey })

        // Every foreign key is DEFERRABLE INITIALLY IMMEDIATE.
        let deferrable = try await TestPostgres.strings(tenantURL, """
            SELECT string_agg(conname || ':' || condeferrable || condeferred, ',' ORDER BY conname)
            FROM pg_constraint WHERE contype = 'f'
            """)
        #expect(deferrable == ["order_customer:truefalse,order_parent:truefalse"])

        // The report lists each rewrite and drop.
        let report = result.changes.map(\.description)
        #expect(report.contains("customers: rewrote primary key customers_pkey (shop_id, id) → (id)"))
        #expect(report.contains { $0.hasPrefix("order: dropped index order_shop_only") })
        #expect(report.contains { $0.hasPrefix("order: dropped index order_tenant_predicate") })
        #expect(report.contains { $0.hasPrefix("customers: dropped index customers_pk_copy") })
        #expect(report.contains { $0.hasPrefix("order: dropped check order_shop_positive") })
        #expect(report.contains { $0.hasPrefix("order: rewrote foreign key order_customer") })

        // The tenant schema works: cascades and the self reference behave as in unified.
        try await Database.withConnection(tenantURL, logger: logger) { connection in
            try await Database.execute(script: """
                INSERT INTO customers (email) VALUES ('a@b.c');
                INSERT INTO "order" (customer_id, qty, price) VALUES (1, 2, 3.50);
                INSERT INTO "order" (customer_id, parent_id, qty, price) VALUES (1, 1, 1, 1);
                DELETE FROM customers;
                """, on: connection, logger: logger)
        }
        #expect(try await TestPostgres.strings(tenantURL, "SELECT count(*)::text FROM \"order\"") == ["0"])
    }
}
