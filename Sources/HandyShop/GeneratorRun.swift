import Logging
import PostgresNIO
import TenantryCore

/// One generation: the plan, the ids handed out so far, and the loader. Used by one task only.
final class GeneratorRun {
    let plan: GeneratorPlan
    let loader: CopyLoader
    let connection: PostgresConnection
    let logger: Logger
    /// Rows inserted per table.
    var counts: [String: Int] = [:]
    /// Ids per table per shop index, ascending.
    var ids: [String: [[Int64]]] = [:]
    /// Template keys per shop index.
    var templateKeys: [[String]] = []

    var shops: Int { plan.options.shops }
    /// The owner of shop index `s` is user `s + 1`; the superadmin comes after all owners.
    var superadminID: Int64 { Int64(shops + 1) }

    init(plan: GeneratorPlan, connection: PostgresConnection, logger: Logger) {
        self.plan = plan
        self.connection = connection
        self.logger = logger
        self.loader = CopyLoader(connection: connection, logger: logger)
    }

    /// The random stream of `table`.
    func random(_ table: String) -> SeededRandom {
        SeededRandom(seed: plan.options.seed, stream: table)
    }

    /// Where the rows of a table go, in id order: the shop index and the row's index within its shop.
    struct Slot {
        var shop: Int
        var local: Int
    }

    /// Lays out the rows of `table` (ids `1...count`, shops interleaved at random) and records its ids.
    func layout(_ table: String) -> [Slot] {
        var rng = SeededRandom(seed: plan.options.seed, stream: "layout " + table)
        var shopOfRow: [Int] = []
        for shop in 0..<shops {
            shopOfRow.append(contentsOf: repeatElement(shop, count: plan.count(table, shopIndex: shop)))
        }
        rng.shuffle(&shopOfRow)
        var perShop = [[Int64]](repeating: [], count: shops)
        var slots: [Slot] = []
        slots.reserveCapacity(shopOfRow.count)
        for (index, shop) in shopOfRow.enumerated() {
            slots.append(Slot(shop: shop, local: perShop[shop].count))
            perShop[shop].append(Int64(index + 1))
        }
        ids[table] = perShop
        counts[table] = slots.count
        return slots
    }

    /// A random id of `table` in shop `shop`; throws when the shop has none (a plan bug).
    func parent(_ table: String, _ shop: Int, _ rng: inout SeededRandom) throws -> Int64 {
        guard let list = ids[table]?[shop], !list.isEmpty else {
            throw TenantryError(code: .invalidArgument, message: "handyshop: shop \(shop + 1) has no \(table)")
        }
        return list[rng.int(0..<list.count)]
    }

    /// Like ``parent(_:_:_:)`` but NULL on the all-NULL row, about 10% of the time, or when there is none.
    func optionalParent(_ table: String, _ shop: Int, _ nullRow: Bool, _ rng: inout SeededRandom) -> Int64? {
        if nullRow || rng.chance(0.1) { return nil }
        return try? parent(table, shop, &rng)
    }

    /// Copies `count` rows into `table` and records the count (for tables without ``layout(_:)``).
    func load(
        _ table: String, _ columns: [String], count: Int, _ fill: (inout CopyRow, Int) throws -> Void
    ) async throws {
        try await loader.load(table, columns: columns, count: count, fill)
        counts[table] = count
    }

    /// Sets every identity sequence to the largest id in its table, so later inserts without an id work.
    func advanceIdentitySequences() async throws {
        let rows = try await connection.query("""
            SELECT table_name::text, column_name::text FROM information_schema.columns
            WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY 1
            """, logger: logger)
        var pairs: [(String, String)] = []
        for try await (table, column) in rows.decode((String, String).self) { pairs.append((table, column)) }
        for (table, column) in pairs {
            try SQLIdentifier.validateName(table, what: "table")
            try SQLIdentifier.validateName(column, what: "column")
            try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT setval(pg_get_serial_sequence('\(table)', '\(column)'), max(\(column))) FROM \(table)
                """), logger: logger)
        }
    }
}
