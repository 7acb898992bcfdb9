import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("trust: only Tenantry's apply sessions skip capture", .timeLimit(.minutes(3)))
struct ApplyingBypassTests {
    @Test("an application role that sets tenantry.applying is refused, for a captured tenant and for a moved one")
    func applicationRoleRefused() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let role = "app_\(UUID().uuidString.prefix(8).lowercased())"
        try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
            for statement in [
                "CREATE ROLE \(role) LOGIN PASSWORD 'app-password-123'",
                "GRANT USAGE ON SCHEMA public TO \(role)",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \(role)",
                "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO \(role)",
            ] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: MoveFixture.logger) }
        }
        let appURL = try PostgresURL(
            "postgres://\(role):app-password-123@\(fixture.unifiedURL.host):\(fixture.unifiedURL.port)/\(fixture.unifiedURL.database)")
        try await fixture.withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            _ = try await fixture.cutover(catalog: catalog, relay: relay).cutover(fixture.ids[1], maxPause: .seconds(30))
            for shop in fixture.ids {
                await #expect {
                    try await Database.withConnection(appURL, logger: MoveFixture.logger) { connection in
                        try await connection.query("SET tenantry.applying = 'on'", logger: MoveFixture.logger)
                        try await connection.query(PostgresQuery(unsafeSQL: """
                            INSERT INTO customers (shop_id, first_name, last_name) VALUES (\(shop.rawValue), 'By', 'Pass')
                            """), logger: MoveFixture.logger)
                    }
                } throws: { error in
                    Database.sqlState(of: error) == "42501" && Database.message(of: error).contains("tenantry.applying is reserved")
                }
            }
            _ = try await relay.catchUp(timeout: .seconds(30))
            #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE last_name = 'Pass'") == ["0"])
            #expect(try await fixture.independentDifferences(fixture.ids[0]) == [])
        }
    }

    @Test("a table name holding the dollar-quote tag cannot end the capture function's body")
    func dollarQuoteTag() async throws {
        let name = "notes$tenantry$; DROP TABLE victims; --"
        let fixture = try await MoveFixture.make(tenants: 1) { connection in
            try await connection.query("CREATE TABLE shops (id bigint PRIMARY KEY)", logger: MoveFixture.logger)
            try await connection.query("CREATE TABLE victims (id int)", logger: MoveFixture.logger)
            try await connection.query(PostgresQuery(unsafeSQL: """
                CREATE TABLE "\(name)" (id bigserial PRIMARY KEY, shop_id bigint NOT NULL REFERENCES shops (id), body text)
                """), logger: MoveFixture.logger)
            try await connection.query("INSERT INTO shops VALUES (1)", logger: MoveFixture.logger)
        }
        #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT to_regclass('victims')::text") == ["victims"])
        try await fixture.withMover { copier, relay, _ in
            _ = try await copier.copy(fixture.ids[0])
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: "INSERT INTO \"\(name)\" (shop_id, body) VALUES (1, 'captured')"),
                                           logger: MoveFixture.logger)
            }
            _ = try await relay.catchUp(timeout: .seconds(30))
        }
        #expect(try await TestPostgres.strings(
            try await fixture.tenantURL(fixture.ids[0]), "SELECT body FROM \"\(name.replacingOccurrences(of: "\"", with: "\"\""))\"") == ["captured"])
    }
}
