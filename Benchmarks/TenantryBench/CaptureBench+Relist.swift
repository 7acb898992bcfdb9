import ArgumentParser
import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

extension CaptureBench {
    /// Scenario 1b: what re-listing the capture triggers costs the writers. While `clients`
    /// connections write shop 1 (uncaptured, closed loop, as in the throughput rounds), capture is
    /// enabled for `relistEnables` other shops one after another: each enable re-creates the
    /// triggers of every tenant table (`CREATE OR REPLACE TRIGGER`, a SHARE ROW EXCLUSIVE lock per
    /// table, each under `lock_timeout` 50 ms with retries) before its state row is inserted. The
    /// slowest write overlapping the enables is the pause a writer saw; the writes of 2 s before and
    /// after are its baseline (`relist_baseline_*`: on a shared machine a write can be slow for
    /// other reasons). Afterwards the state rows are removed
    /// and the list shrunk again (not timed).
    func relist(_ bed: MoveBed) async throws -> [String: any Sendable] {
        let shops = (3...).prefix(relistEnables).map(Int64.init).filter { $0 <= Int64(self.shops) }
        guard !shops.isEmpty else { return [:] }
        if !json { Bench.note("relist: enabling capture for \(shops.count) shops while \(clients) writers write shop 1…") }
        let capture = bed.capture()
        let writes = try await CustomerWrites.make(bed.unifiedURL, shop: Self.writtenShop, tag: "relist")
        let (started, done, stop) = (StopSignal(), StopSignal(), StopSignal())
        let (load, baseline, enables) = try await WriteLoad.withConnections(bed.unifiedURL, count: clients) { connections in
            // Closed loop until the enables are done (WriteLoad.run stops only at a deadline). A
            // write that overlapped the enables counts for them; the others (2 s before, 2 s
            // after) are the baseline of the same window.
            async let loads: (WriteLoad.Result, WriteLoad.Result) = withTaskGroup(of: (WriteLoad.Result, WriteLoad.Result).self) { group in
                for (client, connection) in connections.enumerated() {
                    group.addTask {
                        var random = SeededRandom(seed: 7, stream: "relist \(client)")
                        var (during, outside) = (WriteLoad.Result(), WriteLoad.Result())
                        var number = 0
                        while !stop.isSet {
                            let began = ContinuousClock.now
                            let beganAfter = done.isSet
                            do {
                                _ = try await writes.write(connection, client: client, number: number, random: &random)
                                let latency = WriteLoad.microseconds(ContinuousClock.now - began)
                                if started.isSet && !beganAfter {
                                    during.operations += 1
                                    during.latencies.append(latency)
                                } else {
                                    outside.operations += 1
                                    outside.latencies.append(latency)
                                }
                            } catch {
                                during.errors += 1
                                if during.firstError == nil { during.firstError = Database.message(of: error) }
                            }
                            number += 1
                        }
                        return (during, outside)
                    }
                }
                return await group.reduce((WriteLoad.Result(), WriteLoad.Result())) { ($0.0 + $1.0, $0.1 + $1.1) }
            }
            var enables: [UInt32] = []
            do {
                try await Task.sleep(for: .seconds(2))
                started.set()
                for shop in shops {
                    let began = ContinuousClock.now
                    try await capture.enable(try TenantID("\(shop)"))
                    enables.append(WriteLoad.microseconds(ContinuousClock.now - began))
                }
                done.set()
                try await Task.sleep(for: .seconds(2))
            } catch {
                stop.set()
                _ = await loads
                throw error
            }
            stop.set()
            let (load, baseline) = await loads
            return (load, baseline, enables)
        }
        if let error = load.firstError { throw ValidationError("relist writes failed: \(error)") }
        try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            try await connection.query("DELETE FROM tenantry.capture_state WHERE tenant_id = ANY(\(shops.map(String.init)))", logger: Bench.logger)
            try await connection.query("DELETE FROM tenantry.changes WHERE tenant_id = ANY(\(shops.map(String.init)))", logger: Bench.logger)
        }
        try await capture.refreshTriggerList()
        return [
            "relist_enables": shops.count,
            "relist_tables": bed.plan.tables.count,
            "relist_enable_p50_ms": Bench.round(WriteLoad.percentileMs(enables, 50)),
            "relist_enable_max_ms": Bench.round(WriteLoad.percentileMs(enables, 100)),
            "relist_write_p50_ms": Bench.round(WriteLoad.percentileMs(load.latencies, 50)),
            "relist_write_p99_ms": Bench.round(WriteLoad.percentileMs(load.latencies, 99)),
            "relist_write_max_ms": Bench.round(WriteLoad.percentileMs(load.latencies, 100)),
            "relist_writes": load.operations,
            "relist_baseline_write_p99_ms": Bench.round(WriteLoad.percentileMs(baseline.latencies, 99)),
            "relist_baseline_write_max_ms": Bench.round(WriteLoad.percentileMs(baseline.latencies, 100)),
        ]
    }

    /// Gives `count` made-up tenants capture state (`zz1`, `zz2`, …: no rows of theirs exist), so
    /// the throughput rounds measure a trigger list of that length (beyond the list limit: every row
    /// fires the function), then lists them.
    func addExtraState(_ bed: MoveBed, count: Int) async throws {
        guard count > 0 else { return }
        try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            // The rows first (the state guard skipped), then the triggers list them.
            try await connection.query("SET session_replication_role = replica", logger: Bench.logger)
            try await connection.query("""
                INSERT INTO tenantry.capture_state (tenant_id, lock_key)
                SELECT 'zz' || g, \(AdvisoryLock.tenant(try TenantID("zz")))
                FROM generate_series(1, \(count)) g ON CONFLICT DO NOTHING
                """, logger: Bench.logger)
        }
        try await bed.capture().refreshTriggerList()
    }
}
