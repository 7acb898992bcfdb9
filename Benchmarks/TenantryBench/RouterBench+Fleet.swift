import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// The benchmark's tenants: a catalog and N provisioned tenant databases on one throwaway server,
/// each holding the same `items` table (1,000 rows), all dedicated (reads and writes routed to
/// their database).
struct BenchFleet: Sendable {
    let admin: PostgresURL
    let catalogURL: PostgresURL
    let keyring: Keyring
    let ids: [TenantID]

    static let rows = 1000
    static let naming: TenantryConfiguration.Naming = {
        var naming = TenantryConfiguration.Naming()
        naming.templateDatabase = "bench_template"
        naming.databaseTemplate = "bench_{id}_db"
        naming.roleTemplate = "bench_u_{id}"
        return naming
    }()
    static let migration = MigrationFile(version: 1, name: "items", sql: """
        CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL);
        INSERT INTO items SELECT i, 'item ' || i, i * 1.25 FROM generate_series(1, \(rows)) i;
        ANALYZE items;
        """)

    /// Provisions `count` tenants ("1"…"count"), `width` at a time, from `migrations` (default: the
    /// `items` table), and makes them dedicated.
    static func make(
        admin: PostgresURL, count: Int, width: Int, migrations: [MigrationFile] = [migration], quiet: Bool
    ) async throws -> BenchFleet {
        let logger = Bench.logger
        try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query("CREATE DATABASE bench_catalog", logger: logger)
        }
        let catalogURL = admin.with(database: "bench_catalog")
        let keyring = Keyring(current: .generate())
        let ids = try (1...count).map { try TenantID(String($0)) }
        try await Catalog.withCatalog(catalogURL, logger: logger) { catalog in
            _ = try await catalog.migrate()
            let provisioner = TenantProvisioner(
                catalog: catalog,
                servers: ServerDirectory(databaseURL: admin, superuser: nil, superuserPassword: nil, servers: [], keyring: keyring),
                keyring: keyring, naming: naming, migrations: migrations, actor: "bench", logger: logger)
            let start = ContinuousClock.now
            try await provisioner.withSession { provisioner in
                try await forEachConcurrently(ids, concurrency: width) { id in
                    _ = try await provisioner.provision(id)
                    var record = try await catalog.requireTenant(id)
                    record.placement = .dedicated
                    try await catalog.upsertTenant(record)
                } finished: { _, result, finished in
                    try result.get()
                    if !quiet, finished % 100 == 0 || finished == ids.count {
                        Bench.note("provisioned \(finished)/\(ids.count) tenants (\(Int(Double(finished) / elapsedSeconds(since: start))) /s)")
                    }
                }
            }
        }
        return BenchFleet(admin: admin, catalogURL: catalogURL, keyring: keyring, ids: ids)
    }

    /// The tenant's database URL with its own role and password (what the router logs in with).
    func tenantURL(_ id: TenantID, catalog: Catalog) async throws -> PostgresURL {
        guard let credential = try await catalog.credential(id) else {
            throw TenantryError(code: .tenantNotFound, message: "no credential for \(id)")
        }
        let password = try keyring.open(credential.passwordSealed, tenant: id.rawValue, field: "password")
        return admin.with(database: Self.naming.databaseName(for: id)).with(user: credential.username, password: password)
    }

    /// A router over the fleet's catalog.
    func makeRouter(
        catalog: Catalog, cap: Int, perTenant: Int, monitor: PerformanceMonitor? = nil, registry: CredentialRegistry? = nil
    ) -> TenantRouter {
        var pool = TenantPool.Configuration()
        pool.maxConnections = cap
        pool.maxPerKey = perTenant
        pool.leaseTimeout = .seconds(30)
        var configuration = TenantRouter.Configuration(unifiedURL: catalogURL, pool: pool)
        configuration.monitor = monitor
        return TenantRouter(
            configuration: configuration, catalog: catalog,
            registry: registry ?? CredentialRegistry(catalog: catalog, keyring: keyring),
            servers: ServerDirectory(databaseURL: admin, superuser: nil, superuserPassword: nil, servers: [], keyring: keyring),
            logger: Bench.logger)
    }

    /// The benchmarks' request through `router`: a point select by primary key on the tenant
    /// `ids[tenant]`'s database (a read, routed by the read policy), rows consumed.
    static func pointSelect(_ router: TenantRouter, _ ids: [TenantID]) -> @Sendable (Int, Int) async throws -> Void {
        { tenant, key in
            _ = try await router.withConnection(tenant: ids[tenant], intent: .read) { connection in
                try await connection.query("SELECT id, name, price FROM items WHERE id = \(key)")
            }
        }
    }
}

func elapsedSeconds(since start: ContinuousClock.Instant) -> Double {
    (ContinuousClock.now - start).totalSeconds
}
