import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Two real servers: the catalog's own (`default`, where the tenants start) and a second
/// EmbeddedPostgres registered as `second`; tenants moved out of unified (dedicated) on the first.
struct ServerMoveFixture: Sendable {
    let fixture: MoveFixture
    let second: RestartableServer
    let migrations: String

    static func make(shops: Int, rowsPerShop: Int, cutOver: Int? = nil) async throws -> ServerMoveFixture {
        let second = try await RestartableServer.start()
        let secondURL = try second.url()
        let fixture = try await MoveFixture.make(shops: shops, rowsPerShop: rowsPerShop, servers: { keyring in
            [ServerRecord(
                name: "second", host: "127.0.0.1", port: secondURL.port, adminUser: secondURL.user,
                adminPasswordSealed: try keyring.seal(secondURL.password ?? "", tenant: "server:second", field: "admin_password"))]
        }, server: ServerDirectory.defaultServerName)
        let migrations = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-mig-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: migrations, withIntermediateDirectories: true)
        try fixture.migration.sql.write(toFile: "\(migrations)/V1__tenant_schema.sql", atomically: true, encoding: .utf8)
        let made = ServerMoveFixture(fixture: fixture, second: second, migrations: migrations)
        try await made.withOperations { try await fixture.cutOver(Array(fixture.ids.prefix(cutOver ?? shops)), with: $0) }
        return made
    }

    var configuration: TenantryConfiguration { fixture.configuration(migrations: migrations) }

    func withOperations<T: Sendable>(_ body: @escaping @Sendable (Operations) async throws -> T) async throws -> T {
        try await fixture.withOperations(migrations: migrations, body)
    }

    /// The tenant's database on the default server or on `second`.
    func databaseURL(_ tenant: TenantID, onSecond: Bool) async throws -> PostgresURL {
        let database = fixture.base.naming.databaseName(for: tenant)
        return onSecond ? try second.url().with(database: database) : try await TestPostgres.url(database: database)
    }

    /// Whether `database` exists on the default server or on `second`.
    func exists(_ tenant: TenantID, onSecond: Bool) async throws -> Bool {
        let admin = onSecond ? try second.url() : try await TestPostgres.url()
        return try await TestPostgres.strings(
            admin, "SELECT count(*)::text FROM pg_database WHERE datname = '\(fixture.base.naming.databaseName(for: tenant))'") == ["1"]
    }

    /// Every table of the tenant, row by row (as text), in `url`'s tenant database.
    func rows(_ tenant: TenantID, in url: PostgresURL) async throws -> [String: [String]] {
        var result: [String: [String]] = [:]
        for table in fixture.plan.tables {
            let columns = table.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
            result[table.name] = try await TestPostgres.strings(
                url, "SELECT ROW(\(columns))::text FROM \"\(table.name)\" ORDER BY 1").compactMap { $0 }
        }
        return result
    }

    /// The tenant's rows in unified (same columns), row by row.
    func unifiedRows(_ tenant: TenantID) async throws -> [String: [String]] {
        var result: [String: [String]] = [:]
        for table in fixture.plan.tables {
            let columns = table.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
            result[table.name] = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT ROW(\(columns))::text FROM \"\(table.name)\" WHERE shop_id = \(tenant.rawValue) ORDER BY 1")
                .compactMap { $0 }
        }
        return result
    }

    func remove() async {
        try? await second.remove()
        try? FileManager.default.removeItem(atPath: migrations)
    }
}

/// Writes customers through the router in REPEATABLE READ and SERIALIZABLE (and READ COMMITTED),
/// keeping the emails of the writes the router acknowledged.
final class IsolatedWriters: Sendable {
    let router: TenantRouter
    let tenant: TenantID
    let acknowledged = NIOLockedValueBox<[String]>([])
    let failures = NIOLockedValueBox<[String]>([])
    let stop = NIOLockedValueBox(false)

    init(router: TenantRouter, tenant: TenantID) {
        self.router = router
        self.tenant = tenant
    }

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            for isolation in [TenantRouter.Isolation.readCommitted, .repeatableRead, .serializable] {
                group.addTask {
                    var index = 0
                    while !self.stop.withLockedValue({ $0 }) {
                        index += 1
                        let email = "iso.\(isolation).\(index)@example.com"
                        do {
                            try await self.router.withTransaction(tenant: self.tenant, intent: .write, isolation: isolation) { connection in
                                let filter = connection.source == .unified ? "shop_id, " : ""
                                let value = connection.source == .unified ? "\(self.tenant.rawValue), " : ""
                                try await connection.query(PostgresQuery(unsafeSQL: """
                                    INSERT INTO customers (\(filter)first_name, last_name, email) VALUES (\(value)'Iso', 'Level', '\(email)')
                                    """))
                            }
                            self.acknowledged.withLockedValue { $0.append(email) }
                        } catch {
                            self.failures.withLockedValue { $0.append("\(error)") }
                        }
                        try? await Task.sleep(for: .milliseconds(15))
                    }
                }
            }
        }
    }
}

extension MoveFixture {
    /// The configuration of the tests that run ``Operations`` over this fixture, with the fleet
    /// migrations in `migrations`.
    func configuration(migrations: String) -> TenantryConfiguration {
        var configuration = DoctorTests.configuration(self)
        configuration.migrationsDirectory = migrations
        return configuration
    }

    /// Runs `body` with ``Operations`` over this fixture (actor `test`).
    func withOperations<T: Sendable>(migrations: String, _ body: @escaping @Sendable (Operations) async throws -> T) async throws -> T {
        try await Operations.with(
            configuration: configuration(migrations: migrations), databaseURL: unifiedURL, actor: "test", logger: TestPostgres.logger, body)
    }

    /// Copies `tenants` into their databases and cuts them over (they become dedicated).
    func cutOver(_ tenants: [TenantID], with operations: Operations) async throws {
        let move = try await operations.move()
        _ = try await move.migrateData(.tenants(tenants))
        let report = try await move.cutover(.tenants(tenants), maxPause: .seconds(10), retries: 5)
        #expect(report.failed.isEmpty, "\(report.failed)")
    }
}
