import Foundation
import Hummingbird
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryHummingbird

extension HandyShopService {
    /// A repair as the service returns it.
    public struct Repair: Sendable, Codable, Equatable {
        public var id: Int64
        public var customerId: Int64
        public var orderCode: String
        public var status: String
        public var issueDescription: String
        public var serialNumber: String?
        public var estimatedCost: String?
        public var receivedAt: Date
        public var completedAt: Date?
    }

    /// `POST /repairs` and `PATCH /repairs/{id}`.
    struct RepairInput: Decodable {
        var customerId: Int64?
        var orderCode: String?
        var issueDescription: String?
        var serialNumber: String?
        var estimatedCost: Double?
    }

    /// `POST /repairs/{id}/status`.
    struct StatusInput: Decodable {
        var status: String
        var note: String?
    }

    static let repairColumns = """
        id, customer_id, order_code, status::text, issue_description, serial_number, estimated_cost::text, received_at, completed_at
        """

    static func repairs(_ rows: [PostgresRow]) throws -> [Repair] {
        try rows.map { row in
            let (id, customer, code, status, issue, serial, cost, received, completed) = try row.decode(
                (Int64, Int64, String, String, String, String?, String?, Date, Date?).self)
            return Repair(
                id: id, customerId: customer, orderCode: code, status: status, issueDescription: issue, serialNumber: serial,
                estimatedCost: cost, receivedAt: received, completedAt: completed)
        }
    }

    func addRepairRoutes(to group: RouterGroup<HandyShopRequestContext>) {
        group.get("repairs") { request, context in
            let (tenant, shop) = try Self.shop(context)
            let page = try Self.page(request)
            let status = request.uri.queryParameters.get("status")
            if let status, !Self.statuses.contains(status) {
                throw AdminError(.badRequest, code: "invalid_argument", "status must be one of \(Self.statuses.joined(separator: ", "))")
            }
            let customer = try request.uri.queryParameters.get("customerId").map { text in
                guard let value = Int64(text) else {
                    throw AdminError(.badRequest, code: "invalid_argument", "customerId must be an integer")
                }
                return value
            }
            let repairs = try await router.withConnection(tenant: tenant, intent: .read) { connection in
                var sql = SQLText("SELECT \(Self.repairColumns) FROM repairs WHERE true")
                if connection.source == .unified { sql.add(" AND shop_id = \(sql.bind(shop))") }
                if let status { sql.add(" AND status::text = \(sql.bind(status))") }
                if let customer { sql.add(" AND customer_id = \(sql.bind(customer))") }
                sql.add(" ORDER BY id DESC LIMIT \(sql.bind(page.limit)) OFFSET \(sql.bind(page.offset))")
                return try Self.repairs(try await connection.query(sql.query))
            }
            return try AdminAPI.json(["repairs": repairs])
        }

        group.get("repairs/:id") { _, context in
            let (tenant, shop) = try Self.shop(context)
            let id = try Self.id(context)
            let repair = try await router.withConnection(tenant: tenant, intent: .read) { connection in
                try await Self.repair(id, shop: shop, on: connection)
            }
            return try AdminAPI.json(repair)
        }

        group.post("repairs") { request, context in
            let (tenant, shop) = try Self.shop(context)
            let input = try await request.decode(as: RepairInput.self, context: context)
            guard let customerID = input.customerId, let issue = input.issueDescription, !issue.isEmpty else {
                throw AdminError(.badRequest, code: "invalid_argument", "customerId and issueDescription are required")
            }
            let code = input.orderCode ?? "R-" + UUID().uuidString.prefix(8).uppercased()
            let repair = try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                // The customer must be this shop's (in unified, customer ids are global).
                _ = try await Self.customer(customerID, shop: shop, on: connection)
                let unified = connection.source == .unified
                var sql = SQLText("INSERT INTO repairs (\(unified ? "shop_id, " : "")customer_id, order_code, issue_description, ")
                sql.add("serial_number, estimated_cost, received_at) VALUES (")
                if unified { sql.add(sql.bind(shop) + ", ") }
                sql.add("\(sql.bind(customerID)), \(sql.bind(code)), \(sql.bind(issue)), \(sql.bind(input.serialNumber)), ")
                sql.add("\(sql.bind(input.estimatedCost))::numeric, now()) RETURNING \(Self.repairColumns)")
                return try Self.repairs(try await Self.unique { try await connection.query(sql.query) })[0]
            }
            return try AdminAPI.json(repair, status: .created)
        }

        group.patch("repairs/:id") { request, context in
            let (tenant, shop) = try Self.shop(context)
            let id = try Self.id(context)
            let input = try await request.decode(as: RepairInput.self, context: context)
            if input.customerId != nil || input.orderCode != nil {
                throw AdminError(.badRequest, code: "invalid_argument", "customerId and orderCode cannot change")
            }
            let repair = try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                var sql = SQLText("UPDATE repairs SET ")
                sql.add("issue_description = coalesce(\(sql.bind(input.issueDescription)), issue_description), ")
                sql.add("serial_number = coalesce(\(sql.bind(input.serialNumber)), serial_number), ")
                sql.add("estimated_cost = coalesce(\(sql.bind(input.estimatedCost))::numeric, estimated_cost)")
                sql.add(" WHERE id = \(sql.bind(id))")
                if connection.source == .unified { sql.add(" AND shop_id = \(sql.bind(shop))") }
                sql.add(" RETURNING \(Self.repairColumns)")
                guard let repair = try Self.repairs(try await connection.query(sql.query)).first else {
                    throw AdminError(.notFound, code: "repair_not_found", "no repair \(id) in this shop")
                }
                return repair
            }
            return try AdminAPI.json(repair)
        }

        group.post("repairs/:id/status") { request, context in
            let (tenant, shop) = try Self.shop(context)
            let id = try Self.id(context)
            let input = try await request.decode(as: StatusInput.self, context: context)
            guard Self.statuses.contains(input.status) else {
                throw AdminError(.badRequest, code: "invalid_argument", "status must be one of \(Self.statuses.joined(separator: ", "))")
            }
            let repair = try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                let unified = connection.source == .unified
                let old = try await Self.repair(id, shop: shop, on: connection, forUpdate: true)
                var update = SQLText("UPDATE repairs SET status = ")
                update.add("\(update.bind(input.status))::repair_status, completed_at = CASE WHEN ")
                update.add("\(update.bind(input.status)) = 'done' THEN now() END WHERE id = \(update.bind(id))")
                if unified { update.add(" AND shop_id = \(update.bind(shop))") }
                update.add(" RETURNING \(Self.repairColumns)")
                let repair = try Self.repairs(try await connection.query(update.query))[0]
                var history = SQLText("INSERT INTO repair_status_history (\(unified ? "shop_id, " : "")repair_id, old_status, new_status, note, changed_at) VALUES (")
                if unified { history.add(history.bind(shop) + ", ") }
                history.add("\(history.bind(id)), \(history.bind(old.status))::repair_status, \(history.bind(input.status))::repair_status, ")
                history.add("\(history.bind(input.note)), now())")
                try await connection.query(history.query)
                return repair
            }
            return try AdminAPI.json(repair)
        }
    }

    /// One repair of the shop, or 404.
    static func repair(_ id: Int64, shop: Int64, on connection: RoutedConnection, forUpdate: Bool = false) async throws -> Repair {
        var sql = SQLText("SELECT \(repairColumns) FROM repairs WHERE id = ")
        sql.add(sql.bind(id))
        if connection.source == .unified { sql.add(" AND shop_id = \(sql.bind(shop))") }
        if forUpdate { sql.add(" FOR UPDATE") }
        guard let repair = try repairs(try await connection.query(sql.query)).first else {
            throw AdminError(.notFound, code: "repair_not_found", "no repair \(id) in this shop")
        }
        return repair
    }
}
