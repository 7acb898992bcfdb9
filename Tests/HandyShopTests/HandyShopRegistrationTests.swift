import Foundation
import HandyShop
import Logging
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("HandyShop: one owner per shop, owners have a shop, atomic registration", .timeLimit(.minutes(3)))
struct HandyShopRegistrationTests {
    let logger = HS.logger

    func refusal(_ url: PostgresURL, _ sql: String) async throws -> String? {
        do {
            try await Database.withConnection(url, logger: logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            }
            return nil
        } catch {
            return Database.message(of: error)
        }
    }

    @Test("a second owner for a shop and an owner without a shop are refused; the generated data fits")
    func ownerConstraints() async throws {
        let (url, _) = try await HS.generated(shops: 3, rowsPerShop: 30)
        let second = try await refusal(url, """
            INSERT INTO users (email, password_hash, role, shop_id) VALUES ('second-owner@example.com', 'x', 'owner', 1)
            """)
        #expect(second?.contains("users_one_owner_per_shop") == true, "\(second ?? "accepted")")
        let orphan = try await refusal(url, """
            INSERT INTO users (email, password_hash, role, shop_id) VALUES ('orphan@example.com', 'x', 'owner', NULL)
            """)
        #expect(orphan?.contains("users_owner_has_shop") == true, "\(orphan ?? "accepted")")
        // Demoting an owner to shop-less is refused as well; employees and superadmins need no shop.
        #expect(try await refusal(url, "UPDATE users SET shop_id = NULL WHERE role = 'owner' AND shop_id = 2")?
            .contains("users_owner_has_shop") == true)
        #expect(try await refusal(url, """
            INSERT INTO users (email, password_hash, role, shop_id) VALUES ('helper@example.com', 'x', 'employee', 1),
                ('root2@example.com', 'x', 'superadmin', NULL)
            """) == nil)
        #expect(try await HS.int(url, "SELECT count(*) FROM users WHERE role = 'owner'") == 3)
    }

    @Test("registration creates the shop and its owner together; a failure leaves neither")
    func atomicRegistration() async throws {
        let (url, _) = try await HS.generated(shops: 2, rowsPerShop: 20)
        let registered = try await Database.withConnection(url, logger: logger) { connection in
            try await HandyShopRegistration.register(
                .init(name: "Neu Reparatur", slug: "neu-reparatur"),
                owner: .init(email: "chef@neu.example", passwordHash: "$2b$12$hash", displayName: "Chef"),
                on: connection, logger: logger)
        }
        #expect(registered.shopID == 3)
        #expect(try await TestPostgres.strings(url, """
            SELECT u.role || ' ' || s.slug FROM users u JOIN shops s ON s.id = u.shop_id WHERE u.id = \(registered.ownerID)
            """) == ["owner neu-reparatur"])

        // The owner's e-mail is taken (the shop's insert succeeded first): nothing remains.
        await #expect {
            try await Database.withConnection(url, logger: logger) { connection in
                try await HandyShopRegistration.register(
                    .init(name: "Doppelt", slug: "doppelt"),
                    owner: .init(email: "chef@neu.example", passwordHash: "$2b$12$other"), on: connection, logger: logger)
            }
        } throws: { error in
            (error as? TenantryError)?.code == .conflict
        }
        #expect(try await HS.int(url, "SELECT count(*) FROM shops WHERE slug = 'doppelt'") == 0)
        #expect(try await HS.int(url, "SELECT count(*) FROM shops") == 3)
        // A taken slug: no owner is created either.
        await #expect(throws: TenantryError.self) {
            try await Database.withConnection(url, logger: logger) { connection in
                try await HandyShopRegistration.register(
                    .init(name: "Again", slug: "neu-reparatur"),
                    owner: .init(email: "new@again.example", passwordHash: "h"), on: connection, logger: logger)
            }
        }
        #expect(try await HS.int(url, "SELECT count(*) FROM users WHERE email = 'new@again.example'") == 0)
        // Every shop has exactly one owner.
        #expect(try await HS.int(url, """
            SELECT count(*) FROM shops s WHERE (SELECT count(*) FROM users u WHERE u.shop_id = s.id AND u.role = 'owner') <> 1
            """) == 0)
    }
}
