import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore

/// The torture's application writers: customers of HandyShop written through ``TenantRouter`` in
/// READ COMMITTED and REPEATABLE READ (the router's `withTransaction(isolation:)`) and
/// SERIALIZABLE (the application's own `BEGIN ISOLATION LEVEL …` on a routed connection, as an
/// application that predates that API does), retried like an application retries
/// (serialization failures, deadlocks, "tenant has moved", lost connections, pool timeouts).
///
/// Each logical row has a unique label (its e-mail) and a version in `notes`
/// (`tw:<shop>:<label>:v<k>`): inserts are idempotent (`WHERE NOT EXISTS`), updates are
/// compare-and-set from the versions that may be current, so a retry after a COMMIT whose answer
/// was lost never applies a write twice. A write is acknowledged only when its COMMIT returned
/// success; the model keeps, per row, the last acknowledged version and the highest attempted.
///
/// Colliding writers: a shop whose writes go to its own database inserts a customer with an
/// explicit id that belongs to another shop in the unified database (free in its own database).
/// A correct system never lets that change the other shop's row in unified.
final class TortureWriters: Sendable {
    enum Isolation: String, CaseIterable, Sendable {
        case readCommitted = "READ COMMITTED"
        case repeatableRead = "REPEATABLE READ"
        case serializable = "SERIALIZABLE"
    }

    /// One logical row the writers own.
    struct Row: Sendable {
        var shop: TenantID
        var label: String
        /// The last acknowledged version (`nil`: the insert was never acknowledged).
        var acked: Int?
        /// The highest version attempted (a COMMIT that failed may still have committed).
        var attempted: Int
    }

    /// A row written with another shop's id, acknowledged.
    struct Collision: Sendable, Hashable {
        var shop: TenantID
        var id: Int64
        var label: String
    }

    struct Counters: Sendable {
        var acknowledged: [Isolation: Int] = [:]
        var retries = 0
        var gaveUp = 0
        var collisions = 0
        /// Transactions that had not ended 30 s after they began (abandoned and retried).
        var stuck = 0
        var firstErrors: [String] = []
    }

    private struct State {
        var rows: [String: Row] = [:]
        var byShop: [TenantID: [String]] = [:]
        var collisions: [Collision] = []
        var counters = Counters()
    }

    let router: TenantRouter
    let shops: [TenantID]
    /// Per shop: ids of other shops' customers (the colliding writers' targets).
    let foreignIDs: [TenantID: [Int64]]
    let seed: UInt64
    let collisionShare: Double
    private let state = NIOLockedValueBox(State())
    private let stopFlag = NIOLockedValueBox(false)
    private let colliding = NIOLockedValueBox(true)
    /// Shops that write no colliding ids (see ``setColliding(_:except:)``).
    private let notColliding = NIOLockedValueBox<Set<TenantID>>([])

    init(router: TenantRouter, shops: [TenantID], foreignIDs: [TenantID: [Int64]], seed: UInt64, collisionShare: Double) {
        self.router = router
        self.shops = shops
        self.foreignIDs = foreignIDs
        self.seed = seed
        self.collisionShare = collisionShare
    }

    var rows: [Row] { state.withLockedValue { Array($0.rows.values) } }
    var collisions: [Collision] { state.withLockedValue { $0.collisions } }
    var counters: Counters { state.withLockedValue { $0.counters } }

    /// Forgets collisions (after the operator removed their rows).
    func clearCollisions() { state.withLockedValue { $0.collisions = [] } }

    /// Writes with `workers` tasks until ``stop()``.
    func run(round: Int, workers: Int, pause: Duration) async {
        stopFlag.withLockedValue { $0 = false }
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask { await self.work(round: round, worker: worker, pause: pause) }
            }
        }
    }

    func stop() { stopFlag.withLockedValue { $0 = true } }

    /// Turns the colliding writers on or off (they run at the start of each round only), on
    /// for every shop but `except`.
    func setColliding(_ on: Bool, except: Set<TenantID> = []) {
        colliding.withLockedValue { $0 = on }
        notColliding.withLockedValue { $0 = except }
    }

    private func work(round: Int, worker: Int, pause: Duration) async {
        var random = SeededRandom(seed: seed, stream: "torture writer \(round)-\(worker)")
        var number = 0
        while !stopFlag.withLockedValue({ $0 }) {
            let shop = shops[random.int(0..<shops.count)]
            let isolation = Isolation.allCases[(number + worker) % 3]
            if random.unit() < collisionShare, colliding.withLockedValue({ $0 }), !notColliding.withLockedValue({ $0.contains(shop) }) {
                await collide(shop, isolation: isolation, random: &random, label: "tc-r\(round)-w\(worker)-\(number)@torture.example")
            } else {
                let mine = state.withLockedValue { $0.byShop[shop] ?? [] }
                if !mine.isEmpty, random.unit() < 0.5 {
                    await update(mine[random.int(0..<mine.count)], isolation: isolation)
                } else {
                    await insert(shop, label: "tw-r\(round)-w\(worker)-\(number)@torture.example", isolation: isolation)
                }
            }
            number += 1
            try? await Task.sleep(for: pause)
        }
    }

    static func notes(_ shop: TenantID, _ label: String, _ version: Int) -> String { "tw:\(shop.rawValue):\(label):v\(version)" }

    /// The version in a `notes` value (`nil`: not one of ours).
    static func version(of notes: String) -> Int? {
        guard let range = notes.range(of: ":v", options: .backwards) else { return nil }
        return Int(notes[range.upperBound...])
    }

    private func insert(_ shop: TenantID, label: String, isolation: Isolation) async {
        state.withLockedValue {
            $0.rows[label] = Row(shop: shop, label: label, acked: nil, attempted: 0)
            $0.byShop[shop, default: []].append(label)
            if $0.byShop[shop]!.count > 200 { $0.byShop[shop]!.removeFirst() }
        }
        let notes = Self.notes(shop, label, 0)
        let ok = await attempt(shop, isolation) { connection in
            let unified = connection.source == .unified
            var query = PostgresQuery(unsafeSQL: """
                INSERT INTO customers (\(unified ? "shop_id, " : "")first_name, last_name, email, tags, notes)
                SELECT \(unified ? "\(shop.rawValue), " : "")'Torture', 'Writer', $1, ARRAY['torture'], $2
                WHERE NOT EXISTS (SELECT 1 FROM customers WHERE email = $1\(unified ? " AND shop_id = \(shop.rawValue)" : ""))
                """)
            query.binds.append(label)
            query.binds.append(notes)
            try await connection.query(query)
            return true
        }
        if ok == true { state.withLockedValue { $0.rows[label]?.acked = 0; $0.counters.acknowledged[isolation, default: 0] += 1 } }
    }

    private func update(_ label: String, isolation: Isolation) async {
        guard let row = state.withLockedValue({ state -> Row? in
            guard var row = state.rows[label], row.acked != nil else { return nil }
            row.attempted += 1
            state.rows[label] = row
            return row
        }) else { return }
        let version = row.attempted
        // Any version from the last acknowledged to the last attempted may be current.
        let previous = ((row.acked ?? 0)...(version - 1)).map { Self.notes(row.shop, label, $0) }
        let notes = Self.notes(row.shop, label, version)
        let ok = await attempt(row.shop, isolation) { connection in
            let unified = connection.source == .unified
            var query = PostgresQuery(unsafeSQL: """
                UPDATE customers SET notes = $1
                WHERE email = $2\(unified ? " AND shop_id = \(row.shop.rawValue)" : "") AND (notes = ANY($3) OR notes = $1)
                RETURNING id
                """)
            query.binds.append(notes)
            query.binds.append(label)
            query.binds.append(previous)
            return try await !connection.query(query).isEmpty
        }
        if ok == true {
            state.withLockedValue { state in
                let acked = max(state.rows[label]?.acked ?? 0, version)
                state.rows[label]?.acked = acked
                state.counters.acknowledged[isolation, default: 0] += 1
            }
        }
    }

    private func collide(_ shop: TenantID, isolation: Isolation, random: inout SeededRandom, label: String) async {
        guard let foreign = foreignIDs[shop], !foreign.isEmpty else { return }
        let id = foreign[random.int(0..<foreign.count)]
        let notes = Self.notes(shop, label, 0)
        let ok = await attempt(shop, isolation, retries: 3) { connection in
            // Only where the shop writes its own database: in unified the id is taken.
            guard connection.source == .tenant else { return false }
            var query = PostgresQuery(unsafeSQL: """
                INSERT INTO customers (id, first_name, last_name, email, tags, notes)
                VALUES (\(id), 'Colliding', 'Writer', $1, ARRAY['torture'], $2) ON CONFLICT DO NOTHING RETURNING id
                """)
            query.binds.append(label)
            query.binds.append(notes)
            return try await !connection.query(query).isEmpty
        }
        if ok == true {
            state.withLockedValue {
                $0.collisions.append(Collision(shop: shop, id: id, label: label))
                $0.counters.collisions += 1
            }
        }
    }

    /// Runs `body` in one transaction of `isolation` for `shop`, retrying transient failures;
    /// `true`/`false`: committed (with the body's answer); `nil`: gave up or a permanent error.
    private func attempt(
        _ shop: TenantID, _ isolation: Isolation, retries: Int = 40, _ body: @escaping @Sendable (RoutedConnection) async throws -> Bool
    ) async -> Bool? {
        for attempt in 0..<retries {
            do {
                // An application's deadline: a query on a connection the server closed (a restart)
                // may wait forever; the transaction is abandoned and retried (its COMMIT in doubt).
                if let result = try await Self.within(.seconds(30), { try await self.transaction(shop, isolation, body) }) {
                    return result
                }
                state.withLockedValue {
                    $0.counters.stuck += 1
                    if $0.counters.firstErrors.count < 8 { $0.counters.firstErrors.append("\(isolation.rawValue): no answer in 30 s") }
                }
                continue
            } catch {
                let underlying = (error as? TenantryError)?.underlying ?? error
                let sqlState = Database.sqlState(of: underlying) ?? ""
                let permanent = sqlState.hasPrefix("23") || sqlState.hasPrefix("42") || sqlState.hasPrefix("22")
                if sqlState == "25006" { router.invalidateRoutes(shop) }  // "tenant … has moved": the route changed
                state.withLockedValue {
                    if $0.counters.firstErrors.count < 8 { $0.counters.firstErrors.append("\(isolation.rawValue): \(Database.message(of: error))") }
                    if permanent || attempt == retries - 1 { $0.counters.gaveUp += 1 } else { $0.counters.retries += 1 }
                }
                if permanent { return nil }
                try? await Task.sleep(for: .milliseconds(20 * Int64(min(attempt + 1, 25))))
            }
        }
        return nil
    }

    /// Runs `body` in a task of its own and waits at most `limit` for it; `nil` when it has not
    /// ended by then (the task is left behind).
    static func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T? {
        let box = NIOLockedValueBox<Result<T, any Error>?>(nil)
        Task {
            do {
                let value = try await body()
                box.withLockedValue { $0 = .success(value) }
            } catch {
                box.withLockedValue { $0 = .failure(error) }
            }
        }
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if let result = box.withLockedValue({ $0 }) { return try result.get() }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return nil
    }

    private func transaction(
        _ shop: TenantID, _ isolation: Isolation, _ body: @escaping @Sendable (RoutedConnection) async throws -> Bool
    ) async throws -> Bool {
        switch isolation {
        case .readCommitted: return try await router.withTransaction(tenant: shop, intent: .write, body)
        case .repeatableRead: return try await router.withTransaction(tenant: shop, intent: .write, isolation: .repeatableRead, body)
        case .serializable: break  // the application's own BEGIN on a routed connection, below
        }
        return try await router.withConnection(tenant: shop, intent: .write) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "BEGIN ISOLATION LEVEL \(isolation.rawValue)"))
            do {
                let result = try await body(connection)
                try await connection.query("COMMIT")
                return result
            } catch {
                _ = try? await connection.connection.query("ROLLBACK", logger: connection.logger)
                throw error
            }
        }
    }
}
