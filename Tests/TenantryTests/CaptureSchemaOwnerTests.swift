import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("trust: capture refuses a tenantry schema owned by another role", .timeLimit(.minutes(2)))
struct CaptureSchemaOwnerTests {
    @Test("capture install stops with one clear error when schema tenantry belongs to a non-superuser role")
    func foreignOwner() async throws {
        let url = try await TestPostgres.makeDatabase("capowner")
        let role = "planter_\(UUID().uuidString.prefix(8).lowercased())"
        try await Database.withConnection(url, logger: MoveFixture.logger) { connection in
            for statement in [
                "CREATE ROLE \(role)",
                "CREATE SCHEMA tenantry AUTHORIZATION \(role)",
                "CREATE TABLE shops (id bigint PRIMARY KEY)",
                "CREATE TABLE notes (id bigserial PRIMARY KEY, shop_id bigint NOT NULL REFERENCES shops (id), body text)",
            ] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: MoveFixture.logger) }
        }
        await #expect {
            try await Capture(unifiedURL: url, logger: MoveFixture.logger).install()
        } throws: { error in
            "\(error)".contains("schema tenantry already exists and is owned by role \(role)")
        }
        #expect(try await TestPostgres.strings(url, "SELECT count(*)::text FROM pg_trigger WHERE tgname LIKE 'tenantry_capture%'") == ["0"])
    }
}
