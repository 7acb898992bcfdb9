import Foundation
import HandyShop
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore

/// Application-like writes on HandyShop: inserts with FK chains, updates, deletes with cascades
/// (device type → brands → models, and repairs.model_id set NULL), until stopped.
public struct HandyShopWriter: Sendable {
    let url: PostgresURL
    let shops: [TenantID]
    let seed: UInt64

    /// A writer on the unified database `url`, over `shops`, with its own random `seed`.
    public init(url: PostgresURL, shops: [TenantID], seed: UInt64) {
        self.url = url
        self.shops = shops
        self.seed = seed
    }

    /// Writes until `stop` is set; returns the transactions committed.
    public func run(until stop: NIOLockedValueBox<Bool>) async throws -> Int {
        try await Database.withConnection(url, logger: TestPostgres.logger) { connection in
            var random = SeededRandom(seed: seed)
            var writes = 0
            while !stop.withLockedValue({ $0 }) {
                let shop = Int64(shops[Int(random.next() % UInt64(shops.count))].rawValue)!
                let tag = "w\(seed)_\(writes)"
                let choice = random.next()
                try await Self.retryingDeadlocks {
                try await Database.withTransaction(connection, logger: TestPostgres.logger) { c in
                    switch choice % 5 {
                    case 0, 1:
                        let id = try await c.query("""
                            INSERT INTO customers (shop_id, first_name, last_name, email, tags, address)
                            VALUES (\(shop), 'Zoë', \("O'Brien \t\(tag)"), \(tag + "@example.com"), ARRAY['a,b', NULL, 'x"y'], '{"k": [1, null]}')
                            RETURNING id
                            """, logger: TestPostgres.logger).decode(Int64.self).first(where: { _ in true })!
                        try await c.query("""
                            INSERT INTO repairs (shop_id, customer_id, order_code, issue_description, received_at, estimated_duration)
                            VALUES (\(shop), \(id), \(tag), 'screen\\ncracked', now(), '1 day 02:03:04')
                            """, logger: TestPostgres.logger)
                    case 2:
                        try await c.query("""
                            UPDATE customers SET notes = coalesce(notes, '') || 'u', tags = tags || \(tag)::text
                            WHERE id = (SELECT id FROM customers WHERE shop_id = \(shop) ORDER BY random() LIMIT 1)
                            """, logger: TestPostgres.logger)
                        try await c.query("""
                            UPDATE repairs SET status = 'in_repair', deposit_paid = deposit_paid + 1.25
                            WHERE id IN (SELECT id FROM repairs WHERE shop_id = \(shop) ORDER BY random() LIMIT 3)
                            """, logger: TestPostgres.logger)
                    case 3:
                        // A cascade: a device type takes its brands and models with it; repairs keep a NULL model.
                        try await c.query("SAVEPOINT cascade", logger: TestPostgres.logger)
                        do {
                            try await c.query("""
                                DELETE FROM device_types WHERE id = (
                                    SELECT id FROM device_types WHERE shop_id = \(shop) ORDER BY random() LIMIT 1)
                                """, logger: TestPostgres.logger)
                        } catch where Database.sqlState(of: error) == "23503" {
                            // Still referenced by a table without a cascade: the application would refuse too.
                            try await c.query("ROLLBACK TO SAVEPOINT cascade", logger: TestPostgres.logger)
                        }
                        try await c.query("""
                            INSERT INTO device_types (shop_id, name) VALUES (\(shop), \("type " + tag))
                            """, logger: TestPostgres.logger)
                    default:
                        // Delete a customer written by a writer, with its repairs (and their history, by cascade).
                        let victim = try await c.query("""
                            SELECT id FROM customers WHERE shop_id = \(shop) AND email LIKE 'w%' ORDER BY random() LIMIT 1
                            """, logger: TestPostgres.logger).decode(Int64.self).first(where: { _ in true })
                        if let victim {
                            try await c.query("DELETE FROM repairs WHERE customer_id = \(victim)", logger: TestPostgres.logger)
                            try await c.query("UPDATE customers SET referred_by = NULL WHERE referred_by = \(victim)", logger: TestPostgres.logger)
                            try await c.query("DELETE FROM customers WHERE id = \(victim)", logger: TestPostgres.logger)
                        }
                    }
                }
                }
                writes += 1
            }
            return writes
        }
    }
}

extension HandyShopWriter {
    /// Runs `body` again when PostgreSQL aborted it as a deadlock victim or a serialization
    /// failure, as an application would (writers updating random rows do deadlock each other).
    static func retryingDeadlocks(_ body: () async throws -> Void) async throws {
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch where ["40P01", "40001"].contains(Database.sqlState(of: error) ?? "") && attempt < 5 {
                attempt += 1
            }
        }
    }
}

extension Array {
    /// Splits into at most `parts` slices of near-equal size.
    public func chunked(_ parts: Int) -> [ArraySlice<Element>] {
        let size = Swift.max(1, (count + parts - 1) / parts)
        return stride(from: 0, to: count, by: size).map { self[$0..<Swift.min(count, $0 + size)] }
    }
}
