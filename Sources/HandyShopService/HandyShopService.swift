import Foundation
import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import Tenantry
import TenantryCore
import TenantryHummingbird

/// The request context of the HandyShop service: the tenant (shop) the ``TenantMiddleware`` found.
public struct HandyShopRequestContext: TenantRequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// The shop.
    public var tenant: TenantID?

    /// A context for one request.
    public init(source: Source) {
        self.coreContext = .init(source: source)
    }

    /// Bodies over 64 KiB are refused (413).
    public var maxUploadSize: Int { 64 * 1024 }
}

/// HandyShop's example web service over the ``TenantRouter``: customers and repairs of the shop
/// the request names (``TenantMiddleware``), read and written wherever the shop's data lives now —
/// the unified database (rows filtered and stamped with `shop_id`) or the shop's own database —
/// so it keeps working, unchanged, through every phase of a move.
///
/// Routes (also under `/shops/{id}` when the path-prefix source is configured):
/// `GET/POST /customers`, `GET/PATCH /customers/{id}`, `GET/POST /repairs`,
/// `GET/PATCH /repairs/{id}`, `POST /repairs/{id}/status`.
public struct HandyShopService: Sendable {
    /// The router (run it while the service runs).
    public let router: TenantRouter
    /// How requests name their shop.
    public let tenants: TenantIdentification.Configuration
    let catalog: Catalog
    let logger: Logger
    let middleware: TenantMiddleware<HandyShopRequestContext>

    /// The repair statuses, in workflow order (HandyShop's `repair_status` enum).
    public static let statuses = ["received", "diagnosing", "waiting_for_parts", "in_repair", "ready_for_pickup", "done", "cancelled"]

    /// A service over `router`; a shop is known when the catalog has it or the unified `shops` table
    /// does. Throws a `configuration` error for tenant settings the middleware refuses (a JWT
    /// secret shorter than 32 bytes, a JWT source without a secret).
    public init(
        router: TenantRouter, catalog: Catalog, tenants: TenantIdentification.Configuration = .init(), logger: Logger
    ) throws(TenantryError) {
        self.router = router
        self.catalog = catalog
        self.tenants = tenants
        self.logger = logger
        self.middleware = try TenantMiddleware<HandyShopRequestContext>(configuration: tenants) { id in
            if try await catalog.tenant(id) != nil { return true }
            guard let shop = Int64(id.rawValue) else { return false }
            return try await router.withConnection(tenant: id, source: .unified) { connection in
                try await !connection.query("SELECT 1 FROM shops WHERE id = \(shop)").isEmpty
            }
        }
    }

    /// The routes behind the JSON error handling and the tenant middleware.
    public func makeRouter() -> Router<HandyShopRequestContext> {
        let httpRouter = Router(context: HandyShopRequestContext.self)
        httpRouter.add(middleware: JSONErrorMiddleware(bodyLimit: 64 * 1024))
        var groups = [httpRouter.group().add(middleware: middleware)]
        for prefix in tenants.sources.compactMap(\.routePrefix) {
            groups.append(httpRouter.group(RouterPath(prefix + "/:shop")).add(middleware: middleware))
        }
        for group in groups {
            addCustomerRoutes(to: group)
            addRepairRoutes(to: group)
        }
        return httpRouter
    }

    /// The service as an application on `host:port`, running the router and `services` (e.g. the
    /// relay its router drains after a synced write) alongside.
    public func makeApplication(host: String = "127.0.0.1", port: Int = 8081, services: [any Service] = []) -> some ApplicationProtocol {
        Application(
            router: makeRouter(), configuration: .init(address: .hostname(host, port: port), serverName: "handyshop"),
            services: [router] + services, logger: logger)
    }

    // MARK: - Helpers

    /// The shop of the request, as HandyShop's integer shop id.
    static func shop(_ context: HandyShopRequestContext) throws -> (TenantID, Int64) {
        guard let tenant = context.tenant else {
            throw AdminError(.badRequest, code: "tenant_required", "no shop in the request")
        }
        guard let shop = Int64(tenant.rawValue) else {
            throw AdminError(.badRequest, code: "invalid_tenant_id", "HandyShop shop ids are integers")
        }
        return (tenant, shop)
    }

    /// An integer path parameter.
    static func id(_ context: HandyShopRequestContext, _ name: String = "id") throws -> Int64 {
        guard let value = context.parameters.get(name).flatMap(Int64.init), value > 0 else {
            throw AdminError(.badRequest, code: "invalid_argument", "\(name) must be a positive integer")
        }
        return value
    }

    /// `limit` (1–200, default 50) and `offset` (≥ 0) query parameters.
    static func page(_ request: Request) throws -> (limit: Int, offset: Int) {
        let limit = request.uri.queryParameters.get("limit").map { Int($0) } ?? 50
        let offset = request.uri.queryParameters.get("offset").map { Int($0) } ?? 0
        guard let limit, (1...200).contains(limit), let offset, offset >= 0 else {
            throw AdminError(.badRequest, code: "invalid_argument", "limit must be from 1 to 200 and offset at least 0")
        }
        return (limit, offset)
    }
}

/// A SQL text with its binds, built piece by piece (the shop filter exists only on unified).
struct SQLText {
    var text = ""
    var binds = PostgresBindings()

    init(_ text: String) { self.text = text }

    /// Appends `text`.
    mutating func add(_ text: String) { self.text += text }

    /// Binds `value` and returns its placeholder.
    mutating func bind(_ value: some PostgresDynamicTypeEncodable) -> String {
        binds.append(value)
        return "$\(binds.count)"
    }

    /// Binds an optional value.
    mutating func bind(_ value: (some PostgresDynamicTypeEncodable)?) -> String {
        if let value { binds.append(value) } else { binds.appendNull() }
        return "$\(binds.count)"
    }

    var query: PostgresQuery { PostgresQuery(unsafeSQL: text, binds: binds) }
}
