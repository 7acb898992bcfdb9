import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// Registering a new shop: the shop and its owner are created in one transaction, so a failure
/// (a taken slug or e-mail, a lost connection) leaves neither behind. The seed created the shop,
/// committed, then created the owner: a failure in between left a shop nobody could log into
/// (its bug #1). The schema backs this up: one owner per shop, and an owner always has a shop.
public enum HandyShopRegistration {
    /// The new shop.
    public struct Shop: Sendable, Equatable {
        /// Display name.
        public var name: String
        /// Unique URL name.
        public var slug: String
        /// Phone number, if any.
        public var phone: String?

        /// A shop with the given values.
        public init(name: String, slug: String, phone: String? = nil) {
            self.name = name
            self.slug = slug
            self.phone = phone
        }
    }

    /// The shop's owner.
    public struct Owner: Sendable, Equatable {
        /// Login e-mail (unique over all users).
        public var email: String
        /// The password's hash (never the password).
        public var passwordHash: String
        /// Name shown in the app.
        public var displayName: String?

        /// An owner with the given values.
        public init(email: String, passwordHash: String, displayName: String? = nil) {
            self.email = email
            self.passwordHash = passwordHash
            self.displayName = displayName
        }
    }

    /// What a registration created.
    public struct Registered: Sendable, Equatable, Codable {
        /// The new shop's id (the tenant id).
        public var shopID: Int64
        /// The owner's user id.
        public var ownerID: Int64
    }

    /// Creates `shop` and its `owner` in one transaction on `connection` (a unified-database
    /// connection outside any transaction). Throws ``TenantryError/Code/conflict`` when the slug or
    /// the e-mail is taken; nothing is created then.
    public static func register(
        _ shop: Shop, owner: Owner, on connection: PostgresConnection, logger: Logger
    ) async throws -> Registered {
        do {
            return try await Database.withTransaction(connection, logger: logger) { connection in
                let shopID = try await connection.query("""
                    INSERT INTO shops (name, slug, owner_email, phone) VALUES (\(shop.name), \(shop.slug), \(owner.email), \(shop.phone))
                    RETURNING id
                    """, logger: logger).decode(Int64.self).first(where: { _ in true })
                guard let shopID else { throw TenantryError(code: .database, message: "registering a shop: no id returned") }
                let ownerID = try await connection.query("""
                    INSERT INTO users (email, password_hash, role, shop_id, display_name)
                    VALUES (\(owner.email), \(owner.passwordHash), 'owner', \(shopID), \(owner.displayName))
                    RETURNING id
                    """, logger: logger).decode(Int64.self).first(where: { _ in true })
                guard let ownerID else { throw TenantryError(code: .database, message: "registering a shop: no owner id returned") }
                return Registered(shopID: shopID, ownerID: ownerID)
            }
        } catch where Database.sqlState(of: error) == "23505" {
            throw TenantryError(
                code: .conflict, message: "registering shop '\(shop.slug)': the slug or the owner's e-mail is already taken; nothing was created",
                underlying: error)
        }
    }
}
