import Foundation
import Hummingbird
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryHummingbird

extension HandyShopService {
    /// A customer as the service returns it.
    public struct Customer: Sendable, Codable, Equatable {
        public var id: Int64
        public var firstName: String
        public var lastName: String
        public var email: String?
        public var phone: String?
        public var notes: String?
        public var createdAt: Date
    }

    /// `POST /customers` and `PATCH /customers/{id}` (on PATCH every field is optional).
    struct CustomerInput: Decodable {
        var firstName: String?
        var lastName: String?
        var email: String?
        var phone: String?
        var notes: String?
    }

    static let customerColumns = "id, first_name, last_name, email, phone, notes, created_at"

    static func customers(_ rows: [PostgresRow]) throws -> [Customer] {
        try rows.map { row in
            let (id, first, last, email, phone, notes, created) = try row.decode(
                (Int64, String, String, String?, String?, String?, Date).self)
            return Customer(id: id, firstName: first, lastName: last, email: email, phone: phone, notes: notes, createdAt: created)
        }
    }

    func addCustomerRoutes(to group: RouterGroup<HandyShopRequestContext>) {
        group.get("customers") { request, context in
            let (tenant, shop) = try Self.shop(context)
            let page = try Self.page(request)
            let customers = try await router.withConnection(tenant: tenant, intent: .read) { connection in
                var sql = SQLText("SELECT \(Self.customerColumns) FROM customers WHERE deleted_at IS NULL")
                if connection.source == .unified { sql.add(" AND shop_id = \(sql.bind(shop))") }
                sql.add(" ORDER BY id DESC LIMIT \(sql.bind(page.limit)) OFFSET \(sql.bind(page.offset))")
                return try Self.customers(try await connection.query(sql.query))
            }
            return try AdminAPI.json(["customers": customers])
        }

        group.get("customers/:id") { _, context in
            let (tenant, shop) = try Self.shop(context)
            let id = try Self.id(context)
            let customer = try await router.withConnection(tenant: tenant, intent: .read) { connection in
                try await Self.customer(id, shop: shop, on: connection)
            }
            return try AdminAPI.json(customer)
        }

        group.post("customers") { request, context in
            let (tenant, shop) = try Self.shop(context)
            let input = try await request.decode(as: CustomerInput.self, context: context)
            guard let first = input.firstName, !first.isEmpty, let last = input.lastName, !last.isEmpty else {
                throw AdminError(.badRequest, code: "invalid_argument", "firstName and lastName are required")
            }
            let customer = try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                var sql = SQLText("")
                let unified = connection.source == .unified
                sql.add("INSERT INTO customers (\(unified ? "shop_id, " : "")first_name, last_name, email, phone, notes) VALUES (")
                if unified { sql.add(sql.bind(shop) + ", ") }
                sql.add("\(sql.bind(first)), \(sql.bind(last)), \(sql.bind(input.email)), \(sql.bind(input.phone)), \(sql.bind(input.notes)))")
                sql.add(" RETURNING \(Self.customerColumns)")
                return try Self.customers(try await Self.unique { try await connection.query(sql.query) })[0]
            }
            return try AdminAPI.json(customer, status: .created)
        }

        group.patch("customers/:id") { request, context in
            let (tenant, shop) = try Self.shop(context)
            let id = try Self.id(context)
            let input = try await request.decode(as: CustomerInput.self, context: context)
            if input.firstName?.isEmpty == true || input.lastName?.isEmpty == true {
                throw AdminError(.badRequest, code: "invalid_argument", "firstName and lastName must not be empty")
            }
            let customer = try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                var sql = SQLText("UPDATE customers SET ")
                sql.add("first_name = coalesce(\(sql.bind(input.firstName)), first_name), ")
                sql.add("last_name = coalesce(\(sql.bind(input.lastName)), last_name), ")
                sql.add("email = coalesce(\(sql.bind(input.email)), email), ")
                sql.add("phone = coalesce(\(sql.bind(input.phone)), phone), ")
                sql.add("notes = coalesce(\(sql.bind(input.notes)), notes)")
                sql.add(" WHERE id = \(sql.bind(id)) AND deleted_at IS NULL")
                if connection.source == .unified { sql.add(" AND shop_id = \(sql.bind(shop))") }
                sql.add(" RETURNING \(Self.customerColumns)")
                guard let customer = try Self.customers(try await Self.unique { try await connection.query(sql.query) }).first else {
                    throw AdminError(.notFound, code: "customer_not_found", "no customer \(id) in this shop")
                }
                return customer
            }
            return try AdminAPI.json(customer)
        }
    }

    /// One customer of the shop, or 404.
    static func customer(_ id: Int64, shop: Int64, on connection: RoutedConnection) async throws -> Customer {
        var sql = SQLText("SELECT \(customerColumns) FROM customers WHERE id = ")
        sql.add(sql.bind(id) + " AND deleted_at IS NULL")
        if connection.source == .unified { sql.add(" AND shop_id = \(sql.bind(shop))") }
        guard let customer = try customers(try await connection.query(sql.query)).first else {
            throw AdminError(.notFound, code: "customer_not_found", "no customer \(id) in this shop")
        }
        return customer
    }

    /// Runs `body`; a unique violation becomes 409 `conflict` (e.g. an email or order code in use).
    static func unique<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch where Database.sqlState(of: error) == "23505" {
            throw AdminError(.conflict, code: "conflict", "a record with the same unique value exists")
        }
    }
}
