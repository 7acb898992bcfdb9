import Foundation
import Histogram
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore

/// HandyShop's load generator: application traffic through a ``TenantRouter`` at a fixed rate,
/// across shops with a Zipf skew (a few busy shops, a long tail), a read/write mix.
///
/// Reads list a shop's newest customers and look up one of its repairs; writes register a customer
/// with a repair, or move one of the generator's own repairs to its next status. Every write the
/// database acknowledged is remembered, so ``lostWrites(router:)`` can check afterwards, row by
/// row, that each one is where the catalog says the shop's data lives. Latencies are recorded per
/// source (the unified database or the tenant's own), so one run shows both sides of a move.
public final class HandyShopLoad: Sendable {
    /// What to run.
    public struct Options: Sendable {
        /// Operations per second over all workers.
        public var rate: Int
        /// Concurrent workers (each paces itself to `rate / workers`).
        public var workers: Int
        /// The share of operations that write (0...1).
        public var writeShare: Double
        /// The Zipf exponent of the shop choice (0: uniform).
        public var zipf: Double
        /// The random seed.
        public var seed: UInt64

        public init(rate: Int = 100, workers: Int = 8, writeShare: Double = 0.3, zipf: Double = 1.1, seed: UInt64 = 1) {
            self.rate = rate
            self.workers = workers
            self.writeShare = writeShare
            self.zipf = zipf
            self.seed = seed
        }
    }

    /// Latency percentiles in milliseconds.
    public struct Latency: Sendable, Codable, Equatable {
        public var count: Int
        public var p50: Double
        public var p95: Double
        public var p99: Double
        public var max: Double
    }

    /// What a run did.
    public struct Report: Sendable, Codable, Equatable {
        public var seconds: Double
        public var operations: Int
        public var reads: Int
        public var writes: Int
        public var errors: Int
        /// Up to ten error messages, for the report.
        public var errorSamples: [String]
        /// Operations per second achieved.
        public var throughput: Double
        /// Latency of operations served by the unified database and by tenant databases.
        public var unified: Latency?
        public var tenant: Latency?
        /// Writes acknowledged per source.
        public var writesBySource: [String: Int]
    }

    /// One acknowledged write: a registered customer and its repair, or a status change.
    struct Acknowledged: Sendable {
        var shop: TenantID
        var orderCode: String
        var email: String
        var status: String
    }

    private struct State {
        var histograms: [Route.Source: Histogram<UInt64>] = [:]
        var reads = 0
        var writes = 0
        var errors = 0
        var errorSamples: [String] = []
        var writesBySource: [Route.Source: Int] = [:]
        /// By order code: the last acknowledged status of each repair the generator created.
        var repairs: [String: Acknowledged] = [:]
        var started: ContinuousClock.Instant?
        var stopped: ContinuousClock.Instant?
    }

    public let options: Options
    private let shops: [TenantID]
    private let router: TenantRouter
    private let state = NIOLockedValueBox(State())
    private let stopFlag = NIOLockedValueBox(false)
    private let zipf: Zipf
    private static let statuses = ["received", "diagnosing", "waiting_for_parts", "in_repair", "ready_for_pickup", "done"]

    /// A generator over `shops` (their ids must be HandyShop shop ids) through `router`.
    public init(router: TenantRouter, shops: [TenantID], options: Options) throws {
        guard !shops.isEmpty else { throw TenantryError(code: .invalidArgument, message: "the load needs at least one shop") }
        guard options.rate > 0, options.workers > 0, (0...1).contains(options.writeShare), options.zipf >= 0 else {
            throw TenantryError(code: .invalidArgument, message: "load options: rate and workers must be positive, write share 0-1, zipf ≥ 0")
        }
        for shop in shops where Int64(shop.rawValue) == nil {
            throw TenantryError(code: .invalidArgument, message: "HandyShop shop ids are integers (got '\(shop.rawValue.prefix(40))')")
        }
        self.router = router
        self.shops = shops
        self.options = options
        zipf = Zipf(count: shops.count, exponent: options.zipf)
    }

    /// Runs until ``stop()``; errors of single operations are counted, never thrown.
    public func run() async {
        state.withLockedValue { $0.started = .now }
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<options.workers {
                group.addTask { await self.work(worker) }
            }
        }
        state.withLockedValue { $0.stopped = .now }
    }

    /// Asks the workers to finish their current operation, and returns once ``run()`` has
    /// returned (no operation in flight any more).
    public func stop() async {
        stopFlag.withLockedValue { $0 = true }
        while state.withLockedValue({ $0.started != nil && $0.stopped == nil }) {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Latencies recorded from now on only (e.g. per phase of a demo).
    public func resetLatencies() {
        state.withLockedValue { $0.histograms = [:] }
    }

    /// The report so far.
    public func report() -> Report {
        state.withLockedValue { state in
            let end = state.stopped ?? .now
            let seconds = state.started.map { (end - $0).totalSeconds } ?? 0
            func latency(_ source: Route.Source) -> Latency? {
                guard let histogram = state.histograms[source], histogram.totalCount > 0 else { return nil }
                func ms(_ value: UInt64) -> Double { (Double(value) / 10).rounded() / 100 }
                return Latency(
                    count: Int(histogram.totalCount), p50: ms(histogram.valueAtPercentile(50)),
                    p95: ms(histogram.valueAtPercentile(95)), p99: ms(histogram.valueAtPercentile(99)), max: ms(histogram.max))
            }
            let operations = state.reads + state.writes + state.errors
            return Report(
                seconds: (seconds * 100).rounded() / 100, operations: operations, reads: state.reads, writes: state.writes,
                errors: state.errors, errorSamples: state.errorSamples,
                throughput: seconds > 0 ? (Double(operations) / seconds * 10).rounded() / 10 : 0,
                unified: latency(.unified), tenant: latency(.tenant),
                writesBySource: Dictionary(uniqueKeysWithValues: state.writesBySource.map { ($0.key.rawValue, $0.value) }))
        }
    }

    /// Acknowledged writes so far.
    public var acknowledgedWrites: Int { state.withLockedValue { $0.writes } }

    /// Checks every acknowledged write, row by row, in the database that holds each shop's data
    /// now (the router's write route): each registered customer and repair exists, and each repair
    /// has the last status acknowledged for it. Returns a description of each write missing or
    /// different (empty: nothing lost). Only after ``stop()``: a write still in flight would be
    /// in the database but not yet acknowledged, and reported as different.
    public func lostWrites() async throws -> [String] {
        guard state.withLockedValue({ $0.started == nil || $0.stopped != nil }) else {
            throw TenantryError(code: .conflict, message: "the load is still running: stop it before checking its writes")
        }
        let repairs = state.withLockedValue { Array($0.repairs.values) }
        var lost: [String] = []
        for (shop, expected) in Dictionary(grouping: repairs, by: \.shop) {
            let codes = expected.map(\.orderCode)
            let found = try await router.withTransaction(tenant: shop, intent: .write) { connection in
                let filter = connection.source == .unified ? "r.shop_id = \(shop.rawValue) AND " : ""
                let rows = try await connection.query(PostgresQuery(unsafeSQL: """
                    SELECT r.order_code, r.status::text, c.email
                    FROM repairs r JOIN customers c ON c.id = r.customer_id
                    WHERE \(filter)r.order_code = ANY(ARRAY[\(codes.map { "'\($0)'" }.joined(separator: ","))])
                    """))
                var found: [String: (String, String)] = [:]
                for row in rows {
                    let (code, status, email) = try row.decode((String, String, String?).self)
                    found[code] = (status, email ?? "")
                }
                return found
            }
            for write in expected {
                guard let (status, email) = found[write.orderCode] else {
                    lost.append("shop \(shop): repair \(write.orderCode) missing")
                    continue
                }
                if status != write.status { lost.append("shop \(shop): repair \(write.orderCode) has status \(status), acknowledged \(write.status)") }
                if email != write.email { lost.append("shop \(shop): repair \(write.orderCode) customer \(email), acknowledged \(write.email)") }
            }
        }
        return lost.sorted()
    }

    // MARK: - Workers

    private func work(_ worker: Int) async {
        var random = SeededRandom(seed: options.seed, stream: "load worker \(worker)")
        let interval = Duration.seconds(Double(options.workers) / Double(options.rate))
        var next = ContinuousClock.now + interval * random.unit()
        var ownRepairs: [TenantID: [String]] = [:]
        var count = 0
        while !stopFlag.withLockedValue({ $0 }) {
            // Fixed rate: start on schedule; when behind by more than a second, drop the backlog
            // instead of bursting.
            let now = ContinuousClock.now
            if next > now { try? await Task.sleep(until: next, clock: .continuous) }
            if ContinuousClock.now - next > .seconds(1) { next = .now }
            next += interval
            if stopFlag.withLockedValue({ $0 }) { break }
            let shop = pickShop(&random)
            let isWrite = random.unit() < options.writeShare
            let start = ContinuousClock.now
            do {
                let source: Route.Source
                if isWrite {
                    let mine = ownRepairs[shop] ?? []
                    if !mine.isEmpty, random.unit() < 0.5 {
                        source = try await advance(mine[Int(random.next() % UInt64(mine.count))], shop: shop)
                    } else {
                        let code = "L\(options.seed)-\(worker)-\(count)"
                        source = try await register(code, shop: shop, worker: worker, count: count)
                        ownRepairs[shop, default: []].append(code)
                        if ownRepairs[shop, default: []].count > 50 { ownRepairs[shop]?.removeFirst() }
                    }
                } else {
                    source = try await read(shop, random: &random)
                }
                let micros = UInt64(max(1, (ContinuousClock.now - start).totalSeconds * 1_000_000))
                state.withLockedValue { state in
                    state.histograms[source, default: Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)]
                        .record(min(micros, 600_000_000))
                    if isWrite {
                        state.writes += 1
                        state.writesBySource[source, default: 0] += 1
                    } else {
                        state.reads += 1
                    }
                }
            } catch {
                let message = Database.message(of: error)
                state.withLockedValue { state in
                    state.errors += 1
                    if state.errorSamples.count < 10 { state.errorSamples.append("shop \(shop): \(message)") }
                }
            }
            count += 1
        }
    }

    private func pickShop(_ random: inout SeededRandom) -> TenantID { shops[zipf.sample(&random)] }

    /// Registers a customer with a repair, in one transaction.
    private func register(_ code: String, shop: TenantID, worker: Int, count: Int) async throws -> Route.Source {
        let email = "load.\(options.seed).\(worker).\(count)@example.com"
        let source = try await router.withTransaction(tenant: shop, intent: .write) { connection in
            let column = connection.source == .unified ? "shop_id, " : ""
            let value = connection.source == .unified ? "\(shop.rawValue), " : ""
            let id = try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO customers (\(column)first_name, last_name, email, tags)
                VALUES (\(value)'Load', 'Generator', '\(email)', ARRAY['load']) RETURNING id
                """)).first?.decode(Int64.self) ?? 0
            try await connection.query(PostgresQuery(unsafeSQL: """
                INSERT INTO repairs (\(column)customer_id, order_code, issue_description, received_at, device_info)
                VALUES (\(value)\(id), '\(code)', 'screen cracked', now(), '{"load": true}')
                """))
            return connection.source
        }
        state.withLockedValue { $0.repairs[code] = Acknowledged(shop: shop, orderCode: code, email: email, status: "received") }
        return source
    }

    /// Moves one of the generator's repairs to its next status.
    private func advance(_ code: String, shop: TenantID) async throws -> Route.Source {
        let current = state.withLockedValue { $0.repairs[code]?.status } ?? "received"
        let index = Self.statuses.firstIndex(of: current) ?? 0
        let next = Self.statuses[(index + 1) % Self.statuses.count]
        let source = try await router.withTransaction(tenant: shop, intent: .write) { connection in
            let filter = connection.source == .unified ? " AND shop_id = \(shop.rawValue)" : ""
            let rows = try await connection.query(PostgresQuery(unsafeSQL: """
                UPDATE repairs SET status = '\(next)', completed_at = CASE WHEN '\(next)' = 'done' THEN now() END
                WHERE order_code = '\(code)'\(filter) RETURNING id
                """))
            guard !rows.isEmpty else {
                throw TenantryError(code: .conflict, message: "repair \(code) of shop \(shop) is gone")
            }
            return connection.source
        }
        state.withLockedValue { $0.repairs[code]?.status = next }
        return source
    }

    /// Lists the shop's newest customers and reads one repair.
    private func read(_ shop: TenantID, random: inout SeededRandom) async throws -> Route.Source {
        let offset = random.next() % 20
        return try await router.withConnection(tenant: shop, intent: .read) { connection in
            let filter = connection.source == .unified ? "WHERE shop_id = \(shop.rawValue) " : ""
            try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT id, first_name, last_name, email FROM customers \(filter)ORDER BY id DESC LIMIT 20
                """))
            try await connection.query(PostgresQuery(unsafeSQL: """
                SELECT id, order_code, status::text FROM repairs \(filter)ORDER BY id DESC OFFSET \(offset) LIMIT 1
                """))
            return connection.source
        }
    }
}
