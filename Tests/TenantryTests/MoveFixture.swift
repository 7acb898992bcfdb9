import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// A HandyShop unified database (with the catalog inside it), its tenants provisioned from the
/// derived schema, and capture installed: the starting point of a move.
struct MoveFixture {
    let base: ProvisioningFixture
    let unifiedURL: PostgresURL
    let ids: [TenantID]
    let plan: MovePlan
    let migration: MigrationFile
    static let logger = TestPostgres.logger

    static func make(shops: Int, rowsPerShop: Int = 120, provision: Int? = nil) async throws -> MoveFixture {
        let base = try await ProvisioningFixture.make()
        let url = base.catalogURL
        let (plan, ddl) = try await Database.withConnection(url, logger: logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: logger)
            _ = try await HandyShopGenerator(options: .init(shops: shops, rowsPerShop: rowsPerShop, seed: 7))
                .generate(on: connection, logger: logger)
            let unified = try await SchemaIntrospector(logger: logger).read(connection)
            let derived = try TenantSchemaDeriver().derive(from: unified)
            return (try MovePlan.make(unified: unified, discriminator: "shop_id"), try SchemaDDL.render(derived.schema))
        }
        let migration = MigrationFile(version: 1, name: "tenant schema", sql: ddl)
        let ids = try (1...(provision ?? shops)).map { try TenantID("\($0)") }
        let fixture = MoveFixture(base: base, unifiedURL: url, ids: ids, plan: plan, migration: migration)
        try await fixture.withProvisioner { provisioner in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for slice in ids.chunked(4) {
                    group.addTask { for id in slice { _ = try await provisioner.provision(id) } }
                }
                try await group.waitForAll()
            }
        }
        try await fixture.capture().install()
        return fixture
    }

    func withProvisioner<T: Sendable>(_ body: @Sendable (TenantProvisioner) async throws -> T) async throws -> T {
        try await Catalog.withCatalog(base.catalogURL, logger: Self.logger) { catalog in
            let provisioner = TenantProvisioner(
                catalog: catalog, servers: directory(), keyring: base.keyring, naming: base.naming,
                migrations: [migration], actor: "test", logger: Self.logger)
            return try await body(provisioner)
        }
    }

    func directory(servers: [ServerRecord] = []) -> ServerDirectory {
        ServerDirectory(databaseURL: unifiedURL, superuser: nil, superuserPassword: nil, servers: servers, keyring: base.keyring)
    }

    func capture() -> Capture {
        Capture(unifiedURL: unifiedURL, enableTimeout: .seconds(20), logger: Self.logger)
    }

    /// Runs `body` with a copier and a relay over the fixture's catalog.
    func withMover<T: Sendable>(
        relay configuration: Relay.Configuration = Relay.Configuration(), servers: [ServerRecord] = [],
        _ body: @Sendable (Copier, Relay, Catalog) async throws -> T
    ) async throws -> T {
        try await Catalog.withCatalog(base.catalogURL, logger: Self.logger) { catalog in
            let copier = Copier(
                catalog: catalog, servers: directory(servers: servers), unifiedURL: unifiedURL, plan: plan, capture: capture(),
                actor: "test", logger: Self.logger)
            let relay = Relay(
                configuration: configuration, catalog: catalog, servers: directory(servers: servers), unifiedURL: unifiedURL,
                plan: plan, logger: Self.logger)
            do {
                let result = try await body(copier, relay, catalog)
                await relay.close()
                return result
            } catch {
                await relay.close()
                throw error
            }
        }
    }

    func tenantURL(_ id: TenantID) async throws -> PostgresURL {
        try await TestPostgres.url(database: base.naming.databaseName(for: id))
    }

    /// Every tenant table's rows of `id`, as `ROW(…)::text` sorted, from each side, computed by a
    /// query independent of the verifier.
    func independentDifferences(_ id: TenantID) async throws -> [String] {
        var differences: [String] = []
        for table in plan.tables {
            let columns = table.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
            let unified = try await TestPostgres.strings(
                unifiedURL, "SELECT ROW(\(columns))::text FROM \"\(table.name)\" WHERE shop_id = \(id.rawValue) ORDER BY 1")
            let tenant = try await TestPostgres.strings(
                try await tenantURL(id), "SELECT ROW(\(columns))::text FROM \"\(table.name)\" ORDER BY 1")
            if unified != tenant {
                let u = Set(unified.compactMap { $0 }), t = Set(tenant.compactMap { $0 })
                differences.append("\(table.name): \(u.subtracting(t).count) only in unified, \(t.subtracting(u).count) only in tenant")
            }
        }
        return differences
    }
}

/// Application-like writes on HandyShop: inserts with FK chains, updates, deletes with cascades
/// (device type → brands → models, and repairs.model_id set NULL), until stopped.
struct HandyShopWriter {
    let url: PostgresURL
    let shops: [TenantID]
    let seed: UInt64

    func run(until stop: NIOLockedValueBox<Bool>) async throws -> Int {
        try await Database.withConnection(url, logger: TestPostgres.logger) { connection in
            var random = SplitMix(seed: seed)
            var writes = 0
            while !stop.withLockedValue({ $0 }) {
                let shop = Int64(shops[Int(random.next() % UInt64(shops.count))].rawValue)!
                let tag = "w\(seed)_\(writes)"
                try await Database.withTransaction(connection, logger: TestPostgres.logger) { c in
                    switch random.next() % 5 {
                    case 0, 1:
                        let id = try await c.query("""
                            INSERT INTO customers (shop_id, first_name, last_name, email, tags, address)
                            VALUES (\(shop), 'Zoë', \("O'Brien \t\(tag)"), \(tag + "@example.com"), ARRAY['a,b', NULL, 'x"y'], '{"k": [1, null]}')
                            RETURNING id
                            """, logger: TestPostgres.logger).decode(Int64.self).first(where: { _ in true })!
                        try await c.query("""
                            INSERT INTO repairs (shop_id, customer_id, order_code, issue_description, received_at, estimated_duration)
                            VALUES (\(shop), \(id), \(tag), 'screen\\ncracked', now(), '1 day 02:03:04')
                            """, logger: TestPostgres.logger)
                    case 2:
                        try await c.query("""
                            UPDATE customers SET notes = coalesce(notes, '') || 'u', tags = tags || \(tag)::text
                            WHERE id = (SELECT id FROM customers WHERE shop_id = \(shop) ORDER BY random() LIMIT 1)
                            """, logger: TestPostgres.logger)
                        try await c.query("""
                            UPDATE repairs SET status = 'in_repair', deposit_paid = deposit_paid + 1.25
                            WHERE id IN (SELECT id FROM repairs WHERE shop_id = \(shop) ORDER BY random() LIMIT 3)
                            """, logger: TestPostgres.logger)
                    case 3:
                        // A cascade: a device type takes its brands and models with it; repairs keep a NULL model.
                        try await c.query("SAVEPOINT cascade", logger: TestPostgres.logger)
                        do {
                            try await c.query("""
                                DELETE FROM device_types WHERE id = (
                                    SELECT id FROM device_types WHERE shop_id = \(shop) ORDER BY random() LIMIT 1)
                                """, logger: TestPostgres.logger)
                        } catch where Database.sqlState(of: error) == "23503" {
                            // Still referenced by a table without a cascade: the application would refuse too.
                            try await c.query("ROLLBACK TO SAVEPOINT cascade", logger: TestPostgres.logger)
                        }
                        try await c.query("""
                            INSERT INTO device_types (shop_id, name) VALUES (\(shop), \("type " + tag))
                            """, logger: TestPostgres.logger)
                    default:
                        // Delete a customer written by a writer, with its repairs (and their history, by cascade).
                        let victim = try await c.query("""
                            SELECT id FROM customers WHERE shop_id = \(shop) AND email LIKE 'w%' ORDER BY random() LIMIT 1
                            """, logger: TestPostgres.logger).decode(Int64.self).first(where: { _ in true })
                        if let victim {
                            try await c.query("DELETE FROM repairs WHERE customer_id = \(victim)", logger: TestPostgres.logger)
                            try await c.query("UPDATE customers SET referred_by = NULL WHERE referred_by = \(victim)", logger: TestPostgres.logger)
                            try await c.query("DELETE FROM customers WHERE id = \(victim)", logger: TestPostgres.logger)
                        }
                    }
                }
                writes += 1
            }
            return writes
        }
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Array {
    func chunked(_ parts: Int) -> [ArraySlice<Element>] {
        let size = Swift.max(1, (count + parts - 1) / parts)
        return stride(from: 0, to: count, by: size).map { self[$0..<Swift.min(count, $0 + size)] }
    }
}
