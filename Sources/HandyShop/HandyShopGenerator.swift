import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// Deterministic HandyShop data for the unified database: shops `1...N`, one owner per shop, a
/// little global data, and skewed, hostile tenant rows in all 19 tenant tables, loaded with COPY.
///
/// Same ``Options`` → byte-identical data: every value comes from a seeded SplitMix64 generator
/// (one stream per table) and times are relative to a fixed epoch (2024-06-01 UTC). Tenant ids are
/// explicit and unique across shops (one identity sequence per table, shops interleaved as in a real
/// shared database); identity sequences are advanced to `max(id)` afterwards.
public struct HandyShopGenerator: Sendable {
    /// What to generate.
    public struct Options: Sendable {
        /// Number of shops (tenants), ids `1...shops`.
        public var shops: Int
        /// Average number of tenant rows per shop, over all 19 tenant tables. The first ~10% of the
        /// shops (at least one) are about 5× larger than the rest, which vary in size.
        public var rowsPerShop: Int
        /// The seed of all randomness.
        public var seed: UInt64

        /// Options with the given values.
        public init(shops: Int = 8, rowsPerShop: Int = 300, seed: UInt64 = 42) {
            self.shops = shops
            self.rowsPerShop = rowsPerShop
            self.seed = seed
        }
    }

    /// What was generated.
    public struct Report: Sendable, Codable, Equatable {
        /// The shop ids, `1...shops`.
        public var shopIDs: [Int64]
        /// Rows inserted per table (global and tenant tables).
        public var rowsByTable: [String: Int]
        /// All rows inserted (the sum of ``rowsByTable``).
        public var totalRows: Int
        /// Rows inserted into the 19 tenant tables (about `shops × rowsPerShop`).
        public var tenantRows: Int

        /// A report with the given values.
        public init(shopIDs: [Int64], rowsByTable: [String: Int], totalRows: Int, tenantRows: Int) {
            self.shopIDs = shopIDs
            self.rowsByTable = rowsByTable
            self.totalRows = totalRows
            self.tenantRows = tenantRows
        }
    }

    /// The options this generator uses.
    public let options: Options

    /// A generator for `options`.
    public init(options: Options) {
        self.options = options
    }

    /// Loads ``HandyShopSchema/unifiedSQL`` (into an empty database).
    public static func createSchema(on connection: PostgresConnection, logger: Logger) async throws {
        try await Database.execute(script: HandyShopSchema.unifiedSQL, on: connection, logger: logger)
    }

    /// Inserts shops `1...N` (explicit ids), their users (one owner per shop, plus one superadmin),
    /// some global rows and the tenant rows, in one transaction; then advances every identity
    /// sequence. Expects the schema (``createSchema(on:logger:)``) and empty tables.
    public func generate(on connection: PostgresConnection, logger: Logger) async throws -> Report {
        guard options.shops >= 1, options.rowsPerShop >= 1 else {
            throw TenantryError(code: .invalidArgument, message: "handyshop: shops and rowsPerShop must be at least 1")
        }
        let run = GeneratorRun(plan: GeneratorPlan(options: options), connection: connection, logger: logger)
        try await Database.withTransaction(connection, logger: logger) { _ in
            // The COPY text is UTF-8 and the interval input uses the postgres style (only for this transaction).
            try await connection.query("SET LOCAL client_encoding = 'UTF8'", logger: logger)
            try await connection.query("SET LOCAL intervalstyle = 'postgres'", logger: logger)
            try await run.loadGlobalTables()
            try await run.loadTenantTables()
            try await run.advanceIdentitySequences()
        }
        let tenantRows = HandyShopSchema.tenantTables.reduce(0) { $0 + (run.counts[$1] ?? 0) }
        return Report(
            shopIDs: (1...options.shops).map(Int64.init), rowsByTable: run.counts,
            totalRows: run.counts.values.reduce(0, +), tenantRows: tenantRows)
    }
}

/// How many rows each shop gets in each tenant table.
struct GeneratorPlan: Sendable {
    let options: Options
    /// Tenant rows per shop (index 0 is shop 1).
    let shopRows: [Int]
    typealias Options = HandyShopGenerator.Options

    /// Fraction of a shop's rows and minimum per shop, per tenant table. `kiosk_online_status` gets
    /// one row per kiosk instead (its share is part of `kiosk_devices`).
    static let shares: [String: (share: Double, minimum: Int)] = [
        "customers": (0.12, 2), "device_types": (0.015, 2), "user_brands": (0.03, 2),
        "user_models": (0.06, 2), "employees": (0.015, 1), "repairs": (0.15, 2),
        "repair_status_history": (0.20, 2), "qr_codes": (0.05, 1), "signatures": (0.05, 1),
        "spare_parts": (0.05, 1), "cost_estimates": (0.06, 1), "orders": (0.04, 1),
        "email_templates": (0.015, 2), "newsletter_subscribers": (0.04, 1), "email_log": (0.06, 1),
        "loaner_devices": (0.015, 1), "kiosk_devices": (0.01, 1), "support_access_tokens": (0.01, 1),
    ]

    init(options: Options) {
        self.options = options
        var rng = SeededRandom(seed: options.seed, stream: "shop sizes")
        let big = max(1, options.shops / 10)
        let weights = (0..<options.shops).map { $0 < big ? 5.0 : 0.2 + rng.unit() }
        let scale = Double(options.shops) / weights.reduce(0, +)
        shopRows = weights.map { max(1, Int(($0 * scale * Double(options.rowsPerShop)).rounded())) }
    }

    /// Rows of `table` for the shop at `shopIndex` (0-based).
    func count(_ table: String, shopIndex: Int) -> Int {
        guard let entry = Self.shares[table] else { return 0 }
        return max(entry.minimum, Int((Double(shopRows[shopIndex]) * entry.share).rounded()))
    }
}
