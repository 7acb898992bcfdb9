import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import HandyShopService
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("HandyShop service over the router", .timeLimit(.minutes(3)))
struct HandyShopServiceTests {
    @Test("customers and repairs: create, list, update, status change, for a shop cut over and a shop still shared")
    func customersAndRepairs() async throws {
        let fixture = try await AdminFixture.make(shops: 2, rowsPerShop: 20)
        let keyring = try #require(fixture.configuration.keyring)
        try await Operations.with(configuration: fixture.configuration, databaseURL: fixture.url, actor: "test", logger: AdminFixture.logger) { operations in
            let provisioned = try await operations.provision(.all)
            try #require(provisioned.failed.isEmpty, "\(provisioned.failed)")
            let move = try await operations.move()
            let copied = try await move.migrateData(.tenants([try TenantID("1")]))
            try #require(copied.failed.isEmpty, "\(copied.failed)")
            let cut = try await move.cutover(.tenants([try TenantID("1")]), maxPause: .seconds(5))
            try #require(cut.failed.isEmpty, "\(cut.failed)")

            let router = operations.router(keyring: keyring, monitor: nil)
            let service = try HandyShopService(
                router: router, catalog: operations.catalog, tenants: .init(sources: [.header(), .pathPrefix("/shops")]),
                logger: AdminFixture.logger)
            let app = Application(router: service.makeRouter(), services: [router], logger: AdminFixture.logger)
            try await app.test(.router) { client in
                var customers: [String: Int] = [:]
                for shop in ["1", "2"] {
                    let header = ["X-Tenant-ID": shop]
                    let created = try await client.call(
                        .post, "/customers", token: nil,
                        body: #"{"firstName": "Ada", "lastName": "Lovelace", "email": "ada.\#(shop)@example.com"}"#, headers: header)
                    #expect(created.status == .created, "shop \(shop): \(created.text)")
                    let customer = try #require(created.json["id"] as? Int)
                    customers[shop] = customer
                    let list = try await client.call(.get, "/customers?limit=5", token: nil, headers: header)
                    let listed = (list.json["customers"] as? [[String: Any]])?.compactMap { $0["id"] as? Int } ?? []
                    #expect(listed.contains(customer), "shop \(shop): \(list.text.prefix(300))")

                    let patched = try await client.call(.patch, "/customers/\(customer)", token: nil, body: #"{"phone": "555-0100"}"#, headers: header)
                    #expect(patched.status == .ok && patched.json["phone"] as? String == "555-0100", "\(patched.text)")

                    let repair = try await client.call(
                        .post, "/shops/\(shop)/repairs", token: nil,
                        body: #"{"customerId": \#(customer), "issueDescription": "cracked screen", "estimatedCost": 89.5}"#)
                    #expect(repair.status == .created && repair.json["status"] as? String == "received", "\(repair.text)")
                    let repairID = try #require(repair.json["id"] as? Int)
                    let moved = try await client.call(
                        .post, "/repairs/\(repairID)/status", token: nil, body: #"{"status": "in_repair", "note": "parts arrived"}"#, headers: header)
                    #expect(moved.status == .ok && moved.json["status"] as? String == "in_repair", "\(moved.text)")
                    let open = try await client.call(.get, "/shops/\(shop)/repairs?status=in_repair", token: nil)
                    #expect((open.json["repairs"] as? [[String: Any]])?.contains { $0["id"] as? Int == repairID } == true, "\(open.text.prefix(300))")

                    let badStatus = try await client.call(.post, "/repairs/\(repairID)/status", token: nil, body: #"{"status": "lost"}"#, headers: header)
                    #expect(badStatus.status == .badRequest && badStatus.errorCode == "invalid_argument")
                    let withShop = try await client.call(
                        .post, "/customers", token: nil, body: #"{"firstName": "Eve", "lastName": "X", "shop_id": 1}"#, headers: header)
                    #expect(withShop.status == .badRequest && withShop.errorCode == "discriminator_not_allowed")
                }
                // One shop never sees another's rows.
                let foreign = try await client.call(.get, "/customers/\(customers["1"] ?? 0)", token: nil, headers: ["X-Tenant-ID": "2"])
                #expect(foreign.status == .notFound && foreign.errorCode == "customer_not_found", "\(foreign.text)")
                let foreignRepair = try await client.call(
                    .post, "/repairs", token: nil, body: #"{"customerId": \#(customers["2"] ?? 0), "issueDescription": "x"}"#,
                    headers: ["X-Tenant-ID": "1"])
                #expect(foreignRepair.status == .notFound, "\(foreignRepair.text)")
                let unknown = try await client.call(.get, "/customers", token: nil, headers: ["X-Tenant-ID": "9"])
                #expect(unknown.status == .notFound && unknown.errorCode == "tenant_not_found")
                let missing = try await client.call(.get, "/customers", token: nil)
                #expect(missing.status == .badRequest && missing.errorCode == "tenant_required")
            }
            // Shop 1 (cut over) wrote to its own database; shop 2 (shared) to unified.
            let tenantSide = try await TestPostgres.strings(
                try await fixture.tenantURL("1"), "SELECT status::text FROM repairs r JOIN customers c ON c.id = r.customer_id WHERE c.email = 'ada.1@example.com'")
            #expect(tenantSide == ["in_repair"])
            let unifiedSide = try await TestPostgres.strings(
                fixture.url, "SELECT shop_id::text FROM customers WHERE email IN ('ada.1@example.com', 'ada.2@example.com')")
            #expect(unifiedSide == ["2"])
        }
    }

    @Test("with a JWT secret, X-Tenant-ID alone is 401 and writes nothing; the token's claim is the shop, other sources only agree")
    func jwtRequired() async throws {
        let fixture = try await AdminFixture.make(shops: 3, rowsPerShop: 10)
        let keyring = try #require(fixture.configuration.keyring)
        let secret = Array("handyshop-service-secret-0123456789".utf8)
        try await Operations.with(configuration: fixture.configuration, databaseURL: fixture.url, actor: "test", logger: AdminFixture.logger) { operations in
            let router = operations.router(keyring: keyring, monitor: nil)
            var tenants = TenantIdentification.Configuration(sources: [.header(), .jwtClaim("shop_id")])
            tenants.jwtSecret = secret
            tenants.jwtAudience = "handyshop"
            let service = try HandyShopService(router: router, catalog: operations.catalog, tenants: tenants, logger: AdminFixture.logger)
            let app = Application(router: service.makeRouter(), services: [router], logger: AdminFixture.logger)
            let exp = JSONValue.number(Date().timeIntervalSince1970 + 300)
            let shop1 = try JWTVerifier.sign(["shop_id": .integer(1), "exp": exp, "aud": .string("handyshop")], secret: secret)
            try await app.test(.router) { client in
                // The issue's reproduction: a header alone reads shop 1's customers and writes for shop 3.
                let read = try await client.call(.get, "/customers", token: nil, headers: ["X-Tenant-ID": "1"])
                #expect(read.status == .unauthorized && read.errorCode == "token_required", "\(read.text.prefix(200))")
                let write = try await client.call(
                    .post, "/customers", token: nil, body: #"{"firstName": "Mallory", "lastName": "X"}"#, headers: ["X-Tenant-ID": "3"])
                #expect(write.status == .unauthorized, "\(write.text.prefix(200))")
                let garbage = try await client.call(.get, "/customers", token: "not-a-jwt", headers: ["X-Tenant-ID": "1"])
                #expect(garbage.status == .unauthorized && garbage.errorCode == "invalid_token")
                let wrongAudience = try JWTVerifier.sign(["shop_id": .integer(1), "exp": exp, "aud": .string("other")], secret: secret)
                #expect(try await client.call(.get, "/customers", token: wrongAudience).status == .unauthorized)

                let ok = try await client.call(.get, "/customers", token: shop1)
                #expect(ok.status == .ok, "\(ok.text.prefix(200))")
                #expect(try await client.call(.get, "/customers", token: shop1, headers: ["X-Tenant-ID": "1"]).status == .ok)
                let other = try await client.call(
                    .post, "/customers", token: shop1, body: #"{"firstName": "Mallory", "lastName": "Y"}"#, headers: ["X-Tenant-ID": "3"])
                #expect(other.status == .badRequest && other.errorCode == "tenant_mismatch", "\(other.text.prefix(200))")
            }
            #expect(try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM customers WHERE first_name = 'Mallory'") == ["0"])
        }
    }

    @Test("a JWT secret shorter than 32 bytes, or a JWT source without a secret, is refused when the service is made")
    func jwtConfiguration() async throws {
        let fixture = try await AdminFixture.make(shops: 1, rowsPerShop: 5)
        let keyring = try #require(fixture.configuration.keyring)
        try await Operations.with(configuration: fixture.configuration, databaseURL: fixture.url, actor: "test", logger: AdminFixture.logger) { operations in
            let router = operations.router(keyring: keyring, monitor: nil)
            var short = TenantIdentification.Configuration(sources: [.jwtClaim()])
            short.jwtSecret = Array("sixteen-byte-key".utf8)
            #expect(throws: TenantryError.self) {
                try HandyShopService(router: router, catalog: operations.catalog, tenants: short, logger: AdminFixture.logger)
            }
            #expect(throws: TenantryError.self) {
                try HandyShopService(router: router, catalog: operations.catalog, tenants: .init(sources: [.jwtClaim()]), logger: AdminFixture.logger)
            }
        }
    }
}
