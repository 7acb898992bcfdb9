import Foundation
import HandyShop
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// The starting point of a move, as the move tests set it up (Tests/TenantryTests/MoveFixture.swift):
/// a HandyShop unified database on the bench's server with the catalog inside it, some of its
/// shops provisioned as tenants from the derived schema, capture installed.
struct MoveBed: Sendable {
    let admin: PostgresURL
    let unifiedURL: PostgresURL
    let keyring: Keyring
    let plan: MovePlan
    /// Every shop of the unified database.
    let shops: [TenantID]
    /// The shops provisioned as tenants.
    let tenants: [TenantID]
    /// What the generator wrote.
    let generated: HandyShopGenerator.Report
    let generateSeconds: Double

    static let naming: TenantryConfiguration.Naming = {
        var naming = TenantryConfiguration.Naming()
        naming.templateDatabase = "bench_template"
        naming.databaseTemplate = "bench_t_{id}_db"
        naming.roleTemplate = "bench_u_{id}"
        return naming
    }()
    static let seed: UInt64 = 7

    /// Creates database `name` with the catalog and HandyShop's generated data (`shops` shops,
    /// about `rowsPerShop` tenant rows each; `load` instead, when given, loads another schema and its
    /// data), provisions `provision` of the shops (`width` at a time) and installs capture.
    static func make(
        admin: PostgresURL, name: String = "bench_unified", shops: Int, rowsPerShop: Int, provision: [TenantID],
        width: Int = 4, quiet: Bool, load: (@Sendable (PostgresURL) async throws -> HandyShopGenerator.Report)? = nil
    ) async throws -> MoveBed {
        let logger = Bench.logger
        let unifiedURL = admin.with(database: name)
        try await Self.execute("CREATE DATABASE \(try SQLIdentifier.quoted(name))", on: admin)
        try await Catalog.withCatalog(unifiedURL, logger: logger) { _ = try await $0.migrate() }
        if !quiet { Bench.note("generating HandyShop: \(shops) shops × ~\(rowsPerShop) tenant rows…") }
        var generated: HandyShopGenerator.Report?
        let generateSeconds = try await Bench.time {
            if let load {
                generated = try await load(unifiedURL)
            } else {
                generated = try await Self.loadHandyShop(unifiedURL, shops: shops, rowsPerShop: rowsPerShop)
            }
        }
        // The tenant schema, derived exactly as `tenantry schema derive` does; the plan as the mover reads it.
        let (plan, ddl) = try await Database.withConnection(unifiedURL, logger: logger) { connection in
            let unified = try await SchemaIntrospector(logger: logger).read(connection)
            let derived = try TenantSchemaDeriver().derive(from: unified)
            return (try MovePlan.make(unified: unified, discriminator: "shop_id"), try SchemaDDL.render(derived.schema))
        }
        let keyring = Keyring(current: .generate())
        let bed = MoveBed(
            admin: admin, unifiedURL: unifiedURL, keyring: keyring, plan: plan,
            shops: try (1...shops).map { try TenantID("\($0)") }, tenants: provision,
            generated: generated!, generateSeconds: generateSeconds)
        if !provision.isEmpty {
            if !quiet { Bench.note("provisioning \(provision.count) tenant databases…") }
            let migration = MigrationFile(version: 1, name: "tenant schema", sql: ddl)
            try await Catalog.withCatalog(unifiedURL, logger: logger) { catalog in
                let provisioner = TenantProvisioner(
                    catalog: catalog, servers: bed.servers, keyring: keyring, naming: naming, migrations: [migration],
                    actor: "bench", logger: logger)
                try await provisioner.withSession { provisioner in
                    try await Bench.forEach(provision, width: width) { _ = try await provisioner.provision($0) }
                }
            }
        }
        try await bed.capture().install()
        return bed
    }

    /// HandyShop's schema and data (deterministic: the same options give the same rows).
    static func loadHandyShop(_ url: PostgresURL, shops: Int, rowsPerShop: Int) async throws -> HandyShopGenerator.Report {
        try await Database.withConnection(url, logger: Bench.logger) { connection in
            try await HandyShopGenerator.createSchema(on: connection, logger: Bench.logger)
            let report = try await HandyShopGenerator(options: .init(shops: shops, rowsPerShop: rowsPerShop, seed: seed))
                .generate(on: connection, logger: Bench.logger)
            try await connection.query("ANALYZE", logger: Bench.logger)
            return report
        }
    }

    var servers: ServerDirectory {
        ServerDirectory(databaseURL: unifiedURL, superuser: nil, superuserPassword: nil, servers: [], keyring: keyring)
    }

    /// Capture with a 120 s enable timeout: `enable` also waits for other tenants' copy snapshots
    /// (see Benchmarks/README.md, `copy`), which the CLI's 30 s default does not always cover.
    func capture() -> Capture {
        Capture(unifiedURL: unifiedURL, enableTimeout: .seconds(120), logger: Bench.logger)
    }

    /// The tenant database, as the admin login.
    func tenantURL(_ id: TenantID) -> PostgresURL {
        admin.with(database: Self.naming.databaseName(for: id))
    }

    func copier(_ catalog: Catalog) -> Copier {
        Copier(catalog: catalog, servers: servers, unifiedURL: unifiedURL, plan: plan, capture: capture(), actor: "bench",
               logger: Bench.logger)
    }

    /// Rows of `tenant` in the unified database, over every tenant table.
    func unifiedRows(_ tenant: TenantID) async throws -> Int {
        try await Database.withConnection(unifiedURL, logger: Bench.logger) { connection in
            var total = 0
            for table in plan.tables {
                var query = PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(plan.unifiedName(table)) WHERE \(plan.tenantFilter(parameter: 1))")
                query.binds.append(tenant.rawValue)
                total += try await connection.query(query, logger: Bench.logger).decode(Int.self).first { _ in true } ?? 0
            }
            return total
        }
    }

    /// Rows in `tenant`'s database, over every tenant table.
    func tenantRows(_ tenant: TenantID) async throws -> Int {
        let sql = plan.tables.map { "(SELECT count(*) FROM \($0.quoted))" }.joined(separator: " + ")
        return try await Database.withConnection(tenantURL(tenant), logger: Bench.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "SELECT (\(sql))::int"), logger: Bench.logger)
                .decode(Int.self).first { _ in true } ?? 0
        }
    }

    /// Empties every tenant table of `tenant`'s database.
    func truncate(_ tenant: TenantID) async throws {
        try await Database.withConnection(tenantURL(tenant), logger: Bench.logger) { connection in
            try await connection.query(
                PostgresQuery(unsafeSQL: "TRUNCATE \(plan.tables.map(\.quoted).joined(separator: ", "))"), logger: Bench.logger)
        }
    }

    static func execute(_ sql: String, on url: PostgresURL) async throws {
        try await Database.withConnection(url, logger: Bench.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Bench.logger)
        }
    }
}

extension Bench {
    /// Runs `body` for each of `items`, `width` at a time (in order of start); the first failure ends it.
    static func forEach<Item: Sendable>(
        _ items: [Item], width: Int, _ body: @escaping @Sendable (Item) async throws -> Void
    ) async throws {
        _ = try await concurrentMap(items, concurrency: width, body)
    }
}
