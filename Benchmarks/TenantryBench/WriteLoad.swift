import Foundation
import HandyShop
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// Application-like single-row writes on HandyShop's `customers`, each its own autocommit
/// transaction: even-numbered writes INSERT a customer of the shop, odd ones UPDATE a random
/// existing customer of the shop.
struct CustomerWrites: Sendable {
    let shop: Int64
    /// Existing customers of the shop (the UPDATE targets).
    let ids: [Int64]
    let tag: String

    /// The customers of `shop` in the database `url`.
    static func make(_ url: PostgresURL, shop: Int64, tag: String) async throws -> CustomerWrites {
        let ids = try await Database.withConnection(url, logger: Bench.logger) { connection in
            var ids: [Int64] = []
            for try await id in try await connection.query(
                "SELECT id FROM customers WHERE shop_id = \(shop) ORDER BY id", logger: Bench.logger).decode(Int64.self) {
                ids.append(id)
            }
            return ids
        }
        guard !ids.isEmpty else { throw TenantryError(code: .invalidArgument, message: "shop \(shop) has no customers") }
        return CustomerWrites(shop: shop, ids: ids, tag: tag)
    }

    /// Write number `number` of `client`; returns the new customer's id for an INSERT.
    @discardableResult
    func write(_ connection: PostgresConnection, client: Int, number: Int, random: inout SeededRandom) async throws -> Int64? {
        let label = "\(tag)-\(client)-\(number)"
        if number % 2 == 0 {
            return try await connection.query("""
                INSERT INTO customers (shop_id, first_name, last_name, email, tags)
                VALUES (\(shop), 'Bench', \(label), \(label + "@bench.example"), ARRAY['bench'])
                RETURNING id
                """, logger: Bench.logger).decode(Int64.self).first { _ in true }
        }
        let id = ids[Int(random.next() % UInt64(ids.count))]
        try await connection.query("UPDATE customers SET notes = \(label) WHERE id = \(id)", logger: Bench.logger)
        return nil
    }
}

/// Load from a set of connections, one task each: closed-loop (as fast as each can) or paced (a
/// global schedule of `rate` operations per second, spread over the tasks; a late task catches up
/// without sleeping, so the offered load is kept when the server keeps up).
enum WriteLoad {
    struct Result: Sendable {
        var operations = 0
        var errors = 0
        var seconds = 0.0
        /// Latencies of successful operations, microseconds.
        var latencies: [UInt32] = []
        var firstError: String?

        var throughput: Double { seconds > 0 ? Double(operations) / seconds : 0 }

        static func + (lhs: Result, rhs: Result) -> Result {
            Result(operations: lhs.operations + rhs.operations, errors: lhs.errors + rhs.errors, seconds: lhs.seconds + rhs.seconds,
                   latencies: lhs.latencies + rhs.latencies, firstError: lhs.firstError ?? rhs.firstError)
        }
    }

    /// Runs `operation(connection, task, number, &random)` on every connection for `duration`
    /// (closed loop when `rate` is nil), or until `limit` operations in all were started.
    static func run(
        _ connections: [PostgresConnection], duration: Duration, rate: Double? = nil, limit: Int? = nil, seed: UInt64,
        _ operation: @escaping @Sendable (PostgresConnection, Int, Int, inout SeededRandom) async throws -> Void
    ) async -> Result {
        let start = ContinuousClock.now
        let deadline = start + duration
        let width = connections.count
        var total = await withTaskGroup(of: Result.self) { group in
            for (task, connection) in connections.enumerated() {
                group.addTask {
                    var random = SeededRandom(seed: seed, stream: "task \(task)")
                    var result = Result()
                    result.latencies.reserveCapacity(1 << 16)
                    var number = 0
                    while true {
                        let global = number * width + task
                        if let limit, global >= limit { break }
                        if let rate {
                            let due = start + .nanoseconds(Int64(Double(global) / rate * 1e9))
                            if due >= deadline { break }
                            if due > .now { try? await Task.sleep(until: due, clock: .continuous) }
                        } else if ContinuousClock.now >= deadline {
                            break
                        }
                        let began = ContinuousClock.now
                        do {
                            try await operation(connection, task, number, &random)
                            result.operations += 1
                            result.latencies.append(microseconds(ContinuousClock.now - began))
                        } catch {
                            result.errors += 1
                            if result.firstError == nil { result.firstError = Database.message(of: error) }
                        }
                        number += 1
                    }
                    return result
                }
            }
            return await group.reduce(Result()) { $0 + $1 }
        }
        total.seconds = (ContinuousClock.now - start).totalSeconds
        return total
    }

    static func microseconds(_ duration: Duration) -> UInt32 {
        UInt32(min(UInt64(UInt32.max), duration.wholeMicroseconds))
    }

    /// Nearest-rank percentile of `values` (microseconds), in milliseconds.
    static func percentileMs(_ values: [UInt32], _ p: Double) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let rank = max(1, Int((p / 100 * Double(sorted.count)).rounded(.up)))
        return Double(sorted[rank - 1]) / 1000
    }

    /// `count` connections to `url`, closed after `body`.
    static func withConnections<T: Sendable>(
        _ url: PostgresURL, count: Int, _ body: ([PostgresConnection]) async throws -> T
    ) async throws -> T {
        var connections: [PostgresConnection] = []
        do {
            for _ in 0..<count { connections.append(try await Database.connect(url, logger: Bench.logger)) }
            let result = try await body(connections)
            for connection in connections { try? await connection.close() }
            return result
        } catch {
            for connection in connections { try? await connection.close() }
            throw error
        }
    }
}
