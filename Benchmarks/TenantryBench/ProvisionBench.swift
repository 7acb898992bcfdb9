import ArgumentParser
import EmbeddedPostgres
import Foundation
import HandyShop
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench provision`: N tenants provisioned by ``TenantProvisioner`` (role with a SCRAM
/// verifier, clone of the template, privileges, sealed credentials, login check; 4 at a time),
/// against two anchors measured in the same run on the same server with the same template schema:
///
/// - **createdb loop**: `createdb -T <template>` N times from one shell loop, the lower limit of
///   "one database per tenant from a template";
/// - **DDL route**: `CREATE DATABASE` then the tenant DDL run in it, one tenant after another, as
///   tools that migrate every new tenant database do.
struct ProvisionBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provision",
        abstract: "Provisioning N tenants: Tenantry vs a createdb loop (lower limit) vs CREATE DATABASE + DDL.")

    @Option(help: "Tenants provisioned by each contestant.") var tenants = 200
    @Option(help: "Tenantry's parallel width.") var concurrency = 4
    @Option(help: ArgumentHelp(
        "A SQL script of a unified (shared) database; the tenant schema is derived from it.",
        discussion: "Default: HandyShop's unified schema (HandyShopSchema.unifiedSQL)."))
    var unifiedSchema: String?
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (1...5000).contains(tenants) else { throw ValidationError("--tenants must be from 1 to 5000") }
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be from 1 to 64") }
    }

    /// The unified schema script and a name for it.
    static func unifiedSQL(_ path: String?) throws -> (sql: String, source: String) {
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ValidationError("cannot read --unified-schema \(path)")
            }
            return (String(decoding: data, as: UTF8.self), URL(fileURLWithPath: path).lastPathComponent)
        }
        return (HandyShopSchema.unifiedSQL, "handyshop")
    }

    func run() async throws {
        let logger = Bench.logger
        let count = tenants
        let width = concurrency
        let quiet = json
        let (unified, source) = try Self.unifiedSQL(unifiedSchema)
        let result = try await Bench.withServer { _, admin in
            // The tenant schema: derived from the unified one, exactly as `tenantry schema derive` does.
            if !quiet { Bench.note("deriving the tenant schema from \(source)…") }
            try await Self.execute("CREATE DATABASE bench_unified", on: admin, logger: logger)
            let model = try await Database.withConnection(admin.with(database: "bench_unified"), logger: logger) { connection in
                try await Database.execute(script: unified, on: connection, logger: logger)
                return try await SchemaIntrospector(logger: logger).read(connection)
            }
            let derived = try TenantSchemaDeriver().derive(from: model)
            let ddl = try SchemaDDL.render(derived.schema)
            let migrations = [MigrationFile(version: 1, name: "tenant_schema", sql: ddl)]

            let naming = {
                var naming = TenantryConfiguration.Naming()
                naming.templateDatabase = "bench_template"
                naming.databaseTemplate = "bench_t_{id}_db"
                naming.roleTemplate = "bench_u_{id}"
                return naming
            }()
            try await Self.execute("CREATE DATABASE bench_catalog", on: admin, logger: logger)
            let catalogURL = admin.with(database: "bench_catalog")
            let servers = ServerDirectory(
                databaseURL: catalogURL, superuser: nil, superuserPassword: nil, servers: [], keyring: nil)
            // The template, at the latest version, before any clock starts: all three clone or build from it.
            try await TemplateDatabase(name: naming.templateDatabase, servers: servers, migrations: migrations, logger: logger)
                .prepare(server: nil)
            try await Self.warmUp(admin, template: naming.templateDatabase, logger: logger)

            // (1) createdb loop.
            if !quiet { Bench.note("createdb loop: \(count) × createdb -T \(naming.templateDatabase)…") }
            try await Self.execute("CHECKPOINT", on: admin, logger: logger)
            let createdbLoop = try await Bench.time {
                try await Self.createdbLoop(admin, template: naming.templateDatabase, count: count)
            }
            try await Self.expectDatabases(prefix: "anchor_c_", count: count, admin: admin, logger: logger)
            try await Self.dropDatabases(prefix: "anchor_c_", admin: admin, logger: logger)

            // (2) Tenantry.
            if !quiet { Bench.note("tenantry: \(count) × TenantProvisioner.provision, \(width) at a time…") }
            try await Self.execute("CHECKPOINT", on: admin, logger: logger)
            let keyring = Keyring(current: .generate())
            let tenantry = try await Catalog.withCatalog(catalogURL, logger: logger) { catalog in
                _ = try await catalog.migrate()
                let provisioner = TenantProvisioner(
                    catalog: catalog, servers: servers, keyring: keyring, naming: naming, migrations: migrations,
                    actor: "bench", logger: logger)
                let ids = try (1...count).map { try TenantID("\($0)") }
                // One session, as `tenantry provision` uses: admin connections and the template check are shared.
                return try await provisioner.withSession { provisioner in
                    try await Bench.time {
                        try await Self.provisionAll(ids, with: provisioner, width: width)
                    }
                }
            }
            try await Self.expectDatabases(prefix: "bench_t_", count: count, admin: admin, logger: logger)
            try await Self.dropDatabases(prefix: "bench_t_", admin: admin, logger: logger)

            // (3) DDL route.
            if !quiet { Bench.note("DDL route: \(count) × (CREATE DATABASE, then the tenant DDL), one after another…") }
            try await Self.execute("CHECKPOINT", on: admin, logger: logger)
            let ddlRoute = try await Bench.time {
                try await Database.withConnection(admin, logger: logger) { connection in
                    for index in 1...count {
                        try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE anchor_d_\(index)"), logger: logger)
                        try await Database.withConnection(admin.with(database: "anchor_d_\(index)"), logger: logger) { tenant in
                            try await Database.execute(script: ddl, on: tenant, logger: logger)
                        }
                    }
                }
            }
            try await Self.expectDatabases(prefix: "anchor_d_", count: count, admin: admin, logger: logger)
            return (createdbLoop: createdbLoop, tenantry: tenantry, ddlRoute: ddlRoute, tables: derived.schema.tables.count)
        }
        try Bench.report([
            "benchmark": "provision",
            "tenants": count,
            "concurrency": width,
            "cores": ProcessInfo.processInfo.activeProcessorCount,
            "schema": source,
            "tenant_tables": result.tables,
            "tenantry_s": Bench.round(result.tenantry),
            "createdb_loop_s": Bench.round(result.createdbLoop),
            "ddl_route_s": Bench.round(result.ddlRoute),
            "tenantry_tenants_per_s": Bench.round(Double(count) / result.tenantry, 1),
            "createdb_loop_tenants_per_s": Bench.round(Double(count) / result.createdbLoop, 1),
            "ddl_route_tenants_per_s": Bench.round(Double(count) / result.ddlRoute, 1),
            "provision_vs_createdb_loop": Bench.round(result.tenantry / result.createdbLoop, 2),
            "goal_provision_vs_createdb_loop": 1.3,
            "ddl_route_vs_provision": Bench.round(result.ddlRoute / result.tenantry, 2),
            "goal_ddl_route_vs_provision": 1.5,
        ], json: json)
    }

    /// Provisions `ids`, `width` at a time; the first failure ends the run.
    static func provisionAll(_ ids: [TenantID], with provisioner: TenantProvisioner, width: Int) async throws {
        _ = try await concurrentMap(ids, concurrency: width) { id in _ = try await provisioner.provision(id) }
    }

    /// One `/bin/sh` loop running `createdb -T template anchor_c_<i>` for i in 1…count.
    static func createdbLoop(_ admin: PostgresURL, template: String, count: Int) async throws {
        let createdb = try PostgresBinaries.locate().path(of: "createdb")
        var environment = ProcessInfo.processInfo.environment
        environment["PGHOST"] = admin.host
        environment["PGPORT"] = "\(admin.port)"
        environment["PGUSER"] = admin.user
        environment["PGPASSWORD"] = admin.password ?? ""
        environment["PGSSLMODE"] = "disable"
        let script = "i=1; while [ $i -le \(count) ]; do "
            + "\(ProcessRunner.quote(createdb)) -T \(ProcessRunner.quote(template)) anchor_c_$i || exit 1; i=$((i+1)); done"
        let output = try await ProcessRunner().run("/bin/sh", ["-c", script], environment: environment)
        guard output.succeeded else {
            throw ValidationError("the createdb loop failed: \(output.text.split(separator: "\n").first ?? "exit \(output.status)")")
        }
    }

    /// Clones the template twice and drops the clones, so no contestant pays for cold caches.
    static func warmUp(_ admin: PostgresURL, template: String, logger: Logger) async throws {
        for index in 0..<2 {
            try await execute("CREATE DATABASE bench_warm_\(index) TEMPLATE \(template)", on: admin, logger: logger)
        }
        try await dropDatabases(prefix: "bench_warm_", admin: admin, logger: logger)
    }

    static func expectDatabases(prefix: String, count: Int, admin: PostgresURL, logger: Logger) async throws {
        let found = try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query(
                "SELECT count(*)::int FROM pg_database WHERE starts_with(datname, \(prefix))", logger: logger)
                .decode(Int.self).first { _ in true } ?? 0
        }
        guard found == count else { throw ValidationError("expected \(count) databases named \(prefix)…, found \(found)") }
    }

    /// Drops every database whose name starts with `prefix` (outside the timed sections).
    static func dropDatabases(prefix: String, admin: PostgresURL, logger: Logger) async throws {
        try await Database.withConnection(admin, logger: logger) { connection in
            var names: [String] = []
            for try await name in try await connection.query(
                "SELECT datname::text FROM pg_database WHERE starts_with(datname, \(prefix))", logger: logger).decode(String.self) {
                names.append(name)
            }
            for name in names {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "DROP DATABASE \(try SQLIdentifier.quoted(name)) WITH (FORCE)"), logger: logger)
            }
        }
    }

    static func execute(_ sql: String, on url: PostgresURL, logger: Logger) async throws {
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
    }
}
