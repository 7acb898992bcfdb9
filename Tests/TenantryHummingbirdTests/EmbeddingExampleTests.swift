import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Tenantry
import TenantryCore
import TenantryHummingbird
import TenantryTestSupport
import Testing

// The example of docs/embedding.md, verbatim between the two markers (a test below compares them).
// BEGIN embedding example
/// The host's request context: the tenant `TenantMiddleware` found, and the admin caller
/// the bearer token names (for the audit log).
struct ShopContext: TenantRequestContext, ActorRequestContext {
    var coreContext: CoreRequestContextStorage
    var tenant: TenantID?
    var actor: String?

    init(source: Source) {
        self.coreContext = .init(source: source)
    }
}

/// The host application: its own routes per shop, and Tenantry's admin API under /api/superadmin.
func makeShopApplication(
    operations: Operations, keyring: Keyring, adminToken: String, logger: Logger
) throws -> some ApplicationProtocol {
    let tenants = operations.router(keyring: keyring, monitor: nil)
    let admin = AdminAPI(
        configuration: .init(token: adminToken), operations: operations, metrics: nil,
        monitor: PerformanceMonitor(), logger: logger)
    let router = Router(context: ShopContext.self)

    // X-Tenant-ID names the shop; the TenantRouter finds its data wherever it lives now.
    let identify = try TenantMiddleware<ShopContext>(configuration: .init()) { id in
        try await operations.catalog.tenant(id) != nil
    }
    router.group("shop").add(middleware: identify).get("customers/count") { _, context in
        guard let tenant = context.tenant, let shop = Int64(tenant.rawValue) else { throw HTTPError(.badRequest) }
        let count = try await tenants.withConnection(tenant: tenant, intent: .read) { connection in
            // The shared database holds every shop's rows; the shop's own database only its own.
            let rows = connection.source == .unified
                ? try await connection.query("SELECT count(*) FROM customers WHERE shop_id = \(shop)")
                : try await connection.query("SELECT count(*) FROM customers")
            return try rows.first?.decode(Int64.self) ?? 0
        }
        return "\(count)"
    }

    router.addRoutes(admin.routes(), atPath: "/api/superadmin")
    return Application(router: router, services: [tenants, admin.jobs], logger: logger)
}
// END embedding example

@Suite("docs/embedding.md: a Hummingbird application with Tenantry's middleware and admin routes", .timeLimit(.minutes(3)))
struct EmbeddingExampleTests {
    @Test("the example app answers a tenant route (before and after the shop's cutover) and the mounted admin API")
    func example() async throws {
        let fixture = try await AdminFixture.make(shops: 2, rowsPerShop: 20)
        let keyring = try #require(fixture.configuration.keyring)
        try await Operations.with(configuration: fixture.configuration, databaseURL: fixture.url, actor: "test", logger: AdminFixture.logger) { operations in
            let shared = try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM customers WHERE shop_id = 1")
            let app = try makeShopApplication(
                operations: operations, keyring: keyring, adminToken: AdminFixture.token, logger: AdminFixture.logger)
            try await app.test(.router) { client in
                // The admin API, mounted by the host: the token is required, jobs run.
                let anonymous = try await client.call(.get, "/api/superadmin/migration/status", token: nil)
                #expect(anonymous.status == .unauthorized && anonymous.errorCode == "unauthorized", "\(anonymous.text)")
                let status = try await client.call(.get, "/api/superadmin/migration/status")
                #expect(status.status == .ok && status.json["jobs"] != nil, "\(status.text.prefix(300))")
                let unknown = try await client.call(.get, "/shop/customers/count", token: nil, headers: ["X-Tenant-ID": "1"])
                #expect(unknown.status == .notFound && unknown.errorCode == "tenant_not_found", "not in the catalog yet: \(unknown.text)")
                let provisioned = try await client.runJob("provision-all", body: #"{"tenants": ["1"]}"#)
                #expect(provisioned.job["state"] as? String == "succeeded", "\(provisioned.job)")

                // Provisioned, not moved: the route reads the shared database.
                let count = try await client.call(.get, "/shop/customers/count", token: nil, headers: ["X-Tenant-ID": "1"])
                #expect(count.status == .ok && [count.text] == shared, "\(count.text)")
                let copied = try await client.runJob("migrate-data", body: #"{"tenants": ["1"]}"#)
                #expect(copied.job["state"] as? String == "succeeded", "\(copied.job)")
                let cut = try await client.runJob("cutover", body: #"{"tenants": ["1"]}"#)
                #expect(cut.job["state"] as? String == "succeeded", "\(cut.job)")

                // The same route now reads the shop's own database (a row only it has is counted).
                let tenantURL = try await fixture.tenantURL("1")
                let added = try await TestPostgres.strings(
                    tenantURL, "INSERT INTO customers (first_name, last_name) VALUES ('Only', 'Here') RETURNING (SELECT count(*) + 1 FROM customers)::text")
                let after = try await client.call(.get, "/shop/customers/count", token: nil, headers: ["X-Tenant-ID": "1"])
                #expect(after.status == .ok && [after.text] == added && added != shared, "\(after.text) \(added) \(shared)")
            }
        }
    }

    @Test("docs/embedding.md quotes the example verbatim")
    func documentQuotesExample() throws {
        let here = URL(fileURLWithPath: #filePath)
        let root = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let source = try String(contentsOf: here, encoding: .utf8)
        let document = try String(contentsOf: root.appendingPathComponent("docs/embedding.md"), encoding: .utf8)
        let example = try #require(Self.between(source, "// BEGIN embedding example\n", "// END embedding example"))
        let quoted = try #require(Self.between(document, "```swift\n", "```"))
        #expect(quoted == "import Hummingbird\nimport Logging\nimport Tenantry\nimport TenantryCore\nimport TenantryHummingbird\n\n" + example)
    }

    static func between(_ text: String, _ start: String, _ end: String) -> String? {
        guard let from = text.range(of: start), let to = text.range(of: end, range: from.upperBound..<text.endIndex) else { return nil }
        return String(text[from.upperBound..<to.lowerBound])
    }
}
