import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// Seconds since the load began (one clock for writes and cutover windows).
struct LoadClock: Sendable {
    let origin = ContinuousClock.now
    func now() -> Double { (ContinuousClock.now - origin).totalSeconds }
}

/// One write through the router: which shop, when it started and ended (load clock), its label
/// (the customer's e-mail) and whether it was acknowledged.
struct RoutedWrite: Sendable {
    var moved: Bool
    var shop: String
    var start: Double
    var end: Double
    var email: String
    var ok: Bool
    var error: String?
    /// The sides the router ran it on, in order, with when each attempt's body began
    /// (`unified@0ms>tenant@180ms`: rejected as moved after waiting on the fence, run again).
    var path = ""
}

/// Paced single-row INSERTs of `customers` through ``TenantRouter``: write `k` is due at `k / rate`
/// seconds; `writers` tasks share the schedule, so a writer held up by a fence does not hold up
/// the others. The router sends each write where its shop's writes go at that moment.
final class RouterWrites: Sendable {
    let router: TenantRouter
    let moved: TenantID
    let others: [TenantID]
    let rate: Double
    let share: Double
    let writers: Int
    let clock = LoadClock()
    private let log = WriteLog()

    init(router: TenantRouter, moved: TenantID, others: [TenantID], options: CutoverBench) {
        self.router = router
        self.moved = moved
        self.others = others
        self.rate = options.rate
        self.share = options.tenantShare
        self.writers = options.writers
    }

    actor WriteLog {
        var writes: [RoutedWrite] = []
        var stopped = false
        func add(_ write: RoutedWrite) { writes.append(write) }
        func stop() { stopped = true }
    }

    /// Writes until ``stop()``.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<writers {
                group.addTask { await self.writer(task) }
            }
        }
    }

    private func writer(_ task: Int) async {
        var number = 0
        while !(await log.stopped), !Task.isCancelled {
            let k = number * writers + task
            number += 1
            let due = Double(k) / rate
            let now = clock.now()
            if due > now { try? await Task.sleep(for: .milliseconds(Int64((due - now) * 1000))) }
            // A fixed share of the schedule goes to the moved shop (spread evenly), the rest round-robin.
            let isMoved = (k * 7_919) % 1_000 < Int(share * 1_000)
            let shop = isMoved ? moved : others[k % others.count]
            let email = "cut-\(k)@bench.example"
            let start = clock.now()
            var write = RoutedWrite(moved: isMoved, shop: shop.rawValue, start: start, end: start, email: email, ok: false)
            do {
                try await router.withTransaction(tenant: shop, intent: .write) { connection in
                    write.path += (write.path.isEmpty ? "" : ">") + connection.source.rawValue
                        + String(format: "@%.0fms", (clock.now() - start) * 1000)
                    if connection.source == .unified {
                        _ = try await connection.query("""
                            INSERT INTO customers (shop_id, first_name, last_name, email, tags)
                            VALUES (\(Int64(shop.rawValue) ?? 0), 'Cutover', 'Bench', \(email), ARRAY['bench'])
                            """)
                    } else {
                        _ = try await connection.query("""
                            INSERT INTO customers (first_name, last_name, email, tags) VALUES ('Cutover', 'Bench', \(email), ARRAY['bench'])
                            """)
                    }
                }
                write.ok = true
            } catch {
                write.error = Database.message(of: error)
            }
            write.end = clock.now()
            await log.add(write)
        }
    }

    /// Stops the writers (each finishes its current write) and returns every write.
    func stop(after running: Task<Void, Never>) async -> [RoutedWrite] {
        await log.stop()
        await running.value
        return await log.writes
    }

    /// The acknowledged writes that are not where they must be: the moved shop's in its tenant
    /// database and (reverse sync) in the unified database, the other shops' in the unified one.
    func missing(bed: MoveBed, writes: [RoutedWrite]) async throws -> [String] {
        let tenantEmails = Set(try await TestQueries.strings(bed.tenantURL(moved), "SELECT email FROM customers WHERE email LIKE 'cut-%'"))
        var unified: [String: Set<String>] = [:]
        for row in try await TestQueries.strings(
            bed.unifiedURL, "SELECT shop_id::text || ' ' || email FROM customers WHERE email LIKE 'cut-%'") {
            let parts = row.split(separator: " ", maxSplits: 1).map(String.init)
            if parts.count == 2 { unified[parts[0], default: []].insert(parts[1]) }
        }
        var missing: [String] = []
        for write in writes where write.ok {
            if write.moved && !tenantEmails.contains(write.email) { missing.append("\(write.email) not in the tenant database") }
            if !(unified[write.shop]?.contains(write.email) ?? false) { missing.append("\(write.email) not in unified (shop \(write.shop))") }
        }
        return missing
    }
}

/// Small queries of the bench's own checks.
enum TestQueries {
    /// The first column of every row, as text (NULLs left out).
    static func strings(_ url: PostgresURL, _ sql: String) async throws -> [String] {
        try await Database.withConnection(url, logger: Bench.logger) { connection in
            var result: [String] = []
            for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Bench.logger).decode(String?.self) {
                if let value { result.append(value) }
            }
            return result
        }
    }
}

extension CutoverBench {
    /// Nearest-rank percentile.
    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted[max(1, Int((p / 100 * Double(sorted.count)).rounded(.up))) - 1]
    }

    /// The longest latency of the moved shop's writes overlapping each window, in milliseconds.
    static func pauses(_ writes: [RoutedWrite], _ windows: [Window]) -> [Double] {
        worst(writes, windows).map { $0.map { ($0.end - $0.start) * 1000 } ?? 0 }
    }

    /// The slowest of the moved shop's writes overlapping each window.
    static func worst(_ writes: [RoutedWrite], _ windows: [Window]) -> [RoutedWrite?] {
        windows.map { window in
            writes.filter { $0.moved && $0.start < window.end && $0.end > window.start }
                .max { $0.end - $0.start < $1.end - $1.start }
        }
    }

    /// The slowest write over all windows: latency, where it ran, when relative to its window.
    static func slowest(_ writes: [RoutedWrite], _ windows: [Window]) -> String {
        let pairs = zip(worst(writes, windows), windows).compactMap { write, window in write.map { ($0, window) } }
        guard let (write, window) = pairs.max(by: { $0.0.end - $0.0.start < $1.0.end - $1.0.start }) else { return "" }
        return String(format: "%.1f ms on %@, started %+.1f ms after the call began (call took %.1f ms, fence %.1f ms)",
                      (write.end - write.start) * 1000, write.path, (write.start - window.start) * 1000,
                      (window.end - window.start) * 1000, window.fenceMs)
    }

    static func fields(
        writes: [RoutedWrite], cutovers: [Window], rollbacks: [Window], extra: [String: any Sendable]
    ) -> [String: any Sendable] {
        let pauses = Self.pauses(writes, cutovers)
        let rollbackPauses = Self.pauses(writes, rollbacks)
        let windows = cutovers + rollbacks
        let steady = writes.filter { write in
            write.moved && write.ok && !windows.contains { write.start < $0.end && write.end > $0.start }
        }.map { ($0.end - $0.start) * 1000 }
        let failed = writes.filter { !$0.ok }
        let span = (writes.map(\.end).max() ?? 0) - (writes.map(\.start).min() ?? 0)
        var fields: [String: any Sendable] = [
            "samples": pauses.count,
            "pause_p50_ms": Bench.round(percentile(pauses, 50), 1),
            "pause_p99_ms": Bench.round(percentile(pauses, 99), 1),
            "pause_max_ms": Bench.round(pauses.max() ?? 0, 1),
            "pauses_ms": pauses.map { Bench.round($0, 1) },
            "fence_p50_ms": Bench.round(percentile(cutovers.map(\.fenceMs), 50), 1),
            "fence_p99_ms": Bench.round(percentile(cutovers.map(\.fenceMs), 99), 1),
            "fence_max_ms": Bench.round(cutovers.map(\.fenceMs).max() ?? 0, 1),
            "cutover_call_p50_ms": Bench.round(percentile(cutovers.map { ($0.end - $0.start) * 1000 }, 50), 1),
            "rollback_samples": rollbackPauses.count,
            "rollback_pause_p50_ms": Bench.round(percentile(rollbackPauses, 50), 1),
            "rollback_pause_p99_ms": Bench.round(percentile(rollbackPauses, 99), 1),
            "rollback_fence_p99_ms": Bench.round(percentile(rollbacks.map(\.fenceMs), 99), 1),
            "rollback_pauses_ms": rollbackPauses.map { Bench.round($0, 1) },
            "slowest_cutover_write": slowest(writes, cutovers),
            "slowest_rollback_write": slowest(writes, rollbacks),
            "steady_write_p50_ms": Bench.round(percentile(steady, 50), 2),
            "steady_write_p99_ms": Bench.round(percentile(steady, 99), 2),
            "writes_acknowledged": writes.count - failed.count,
            "writes_moved_shop": writes.filter(\.moved).count,
            "write_errors": failed.count,
            "write_first_error": failed.first?.error ?? "",
            "writes_per_s_achieved": Bench.round(span > 0 ? Double(writes.count) / span : 0, 0),
        ]
        // The fence's steps (take, drain, check, flags, commit): p50 and p99 over the samples.
        for (prefix, windows) in [("fence_part", cutovers), ("rollback_fence_part", rollbacks)] {
            for name in Set(windows.flatMap(\.parts.keys)) {
                let values = windows.map { $0.parts[name] ?? 0 }
                fields["\(prefix)_\(name)_p50_ms"] = Bench.round(percentile(values, 50), 1)
                fields["\(prefix)_\(name)_p99_ms"] = Bench.round(percentile(values, 99), 1)
            }
        }
        // The writes the switch itself held up: rejected on the old side, run again on the new
        // one (their path has two sides). The pause above also counts writes that only met the
        // machine's load while the call ran (its preparation lasts up to seconds).
        let switched = writes.filter { $0.path.contains(">") }
        fields["switched_write_pause_p99_ms"] = Bench.round(percentile(Self.pauses(switched, cutovers), 99), 1)
        fields["rollback_switched_write_pause_p99_ms"] = Bench.round(percentile(Self.pauses(switched, rollbacks), 99), 1)
        for name in Set(cutovers.flatMap(\.preparation.keys)) {
            let values = cutovers.map { $0.preparation[name] ?? 0 }
            fields["before_fence_\(name)_p50_ms"] = Bench.round(percentile(values, 50), 1)
            fields["before_fence_\(name)_p99_ms"] = Bench.round(percentile(values, 99), 1)
        }
        fields.merge(extra) { $1 }
        return fields
    }
}
