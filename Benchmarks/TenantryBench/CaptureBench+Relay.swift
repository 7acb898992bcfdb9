import ArgumentParser
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

extension CaptureBench {
    /// Scenario 2: the relay shop copied, then paced writes while the relay runs, then a backlog
    /// drained; finally the tenant is verified equal to its unified rows.
    func relay(_ bed: MoveBed, catalog: Catalog) async throws -> [String: any Sendable] {
        let tenant = try TenantID("\(Self.relayShop)")
        if !json { Bench.note("relay: copying shop \(tenant) (capture on, phase syncing)…") }
        let copy = try await bed.copier(catalog).copy(tenant)
        let relay = Relay(
            configuration: Relay.Configuration(), catalog: catalog, servers: bed.servers, unifiedURL: bed.unifiedURL,
            plan: bed.plan, logger: Bench.logger)
        let writes = try await CustomerWrites.make(bed.unifiedURL, shop: Self.relayShop, tag: "relay")
        var fields: [String: any Sendable] = ["relay_copied_rows": copy.rows, "relay_clients": relayClients]
        do {
            if relayRate > 0 { fields.merge(try await paced(relay, writes: writes, bed: bed, tenant: tenant)) { $1 } }
            if backlog > 0 { fields.merge(try await drain(relay, writes: writes, bed: bed, tenant: tenant)) { $1 } }
            if !json { Bench.note("relay: verifying shop \(tenant)…") }
            let report = try await Verifier(plan: bed.plan, logger: Bench.logger).verify(
                tenant, unifiedURL: bed.unifiedURL, tenantURL: bed.tenantURL(tenant)) { _ = try await relay.catchUp([tenant]) }
            guard report.equal else {
                let differing = report.tables.filter { $0.differenceCount > 0 }.map(\.table)
                throw ValidationError("after the relay, tenant \(tenant) differs from its unified rows in \(differing)")
            }
            fields["relay_verified_equal"] = true
            await relay.close()
            return fields
        } catch {
            await relay.close()
            throw error
        }
    }

    /// Writes paced at `relayRate` for `relaySeconds` while ``Relay/run()`` runs. Every INSERT is a
    /// marker: its lag is the time from its commit (the INSERT returned) until a poller of the
    /// tenant database (every 5 ms) sees the row. `capture.states()` is sampled every 100 ms too.
    func paced(_ relay: Relay, writes: CustomerWrites, bed: MoveBed, tenant: TenantID) async throws -> [String: any Sendable] {
        if !json { Bench.note("relay: \(Int(relayRate)) writes/s for \(relaySeconds) s while the relay runs…") }
        let markers = MarkerLag()
        let stop = StopSignal()
        let capture = bed.capture()
        let appliedBefore = relay.statistics.applied
        let (rate, duration, clients) = (relayRate, Duration.milliseconds(Int64(relaySeconds * 1000)), relayClients)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await relay.run() }
            async let polled: Void = Self.pollMarkers(markers, tenantURL: bed.tenantURL(tenant), stop: stop)
            async let stateLags: [UInt32] = Self.sampleStateLag(capture, tenant: tenant, stop: stop)
            let start = ContinuousClock.now
            let cpuBefore = SystemCPU.read()
            let load = try await WriteLoad.withConnections(bed.unifiedURL, count: clients) { connections in
                await WriteLoad.run(connections, duration: duration, rate: rate, seed: 42) { connection, client, number, random in
                    if let id = try await writes.write(connection, client: client, number: number, random: &random) {
                        markers.committed(id)
                    }
                }
            }
            let window = (ContinuousClock.now - start).totalSeconds
            let cpuBusy = SystemCPU.busyShare(since: cpuBefore)
            let appliedInWindow = relay.statistics.applied - appliedBefore
            // Until the relay has applied everything: every marker seen, the queue empty.
            let deadline = ContinuousClock.now + .seconds(300)
            while try await capture.states([tenant]).first?.queueDepth ?? 0 > 0 || markers.pendingCount > 0 {
                guard ContinuousClock.now < deadline else { throw ValidationError("the relay did not catch up within 300 s") }
                try await Task.sleep(for: .milliseconds(5))
            }
            let caughtUp = (ContinuousClock.now - start).totalSeconds
            stop.set()
            try await polled
            let sampled = try await stateLags
            group.cancelAll()
            if let error = load.firstError { throw ValidationError("writes failed during the relay run: \(error)") }
            let lags = markers.latencies
            return [
                "relay_offered_writes_per_second": rate,
                "relay_writes_per_second": Bench.round(load.throughput, 0),
                "relay_writes": load.operations,
                "relay_changes_per_second": Bench.round(Double(appliedInWindow) / window, 0),
                "relay_applied_total": relay.statistics.applied - appliedBefore,
                "relay_caught_up_after_writes_s": Bench.round(caughtUp - window),
                "relay_lag_markers": lags.count,
                "relay_lag_p50_ms": Bench.round(WriteLoad.percentileMs(lags, 50), 1),
                "relay_lag_p99_ms": Bench.round(WriteLoad.percentileMs(lags, 99), 1),
                "relay_lag_max_ms": Bench.round(WriteLoad.percentileMs(lags, 100), 1),
                "relay_state_lag_p99_ms": Bench.round(WriteLoad.percentileMs(sampled, 99), 1),
                "relay_write_p99_ms": Bench.round(WriteLoad.percentileMs(load.latencies, 99)),
                "relay_machine_cpu_busy": Bench.round(cpuBusy ?? -1, 2),
            ]
        }
    }

    /// `backlog` changes captured with the relay stopped, then drained by ``Relay/catchUp(_:timeout:)``.
    func drain(_ relay: Relay, writes: CustomerWrites, bed: MoveBed, tenant: TenantID) async throws -> [String: any Sendable] {
        if !json { Bench.note("relay: capturing a backlog of \(backlog) changes with the relay stopped…") }
        let load = try await WriteLoad.withConnections(bed.unifiedURL, count: relayClients) { connections in
            await WriteLoad.run(connections, duration: .seconds(3600), limit: backlog, seed: 43) { connection, client, number, random in
                try await writes.write(connection, client: client, number: number + 1_000_000, random: &random)
            }
        }
        if let error = load.firstError { throw ValidationError("writes failed while building the backlog: \(error)") }
        let depth = try await bed.capture().states([tenant]).first?.queueDepth ?? 0
        if !json { Bench.note("relay: draining \(depth) changes (catchUp)…") }
        try await MoveBed.execute("CHECKPOINT", on: bed.admin)
        var applied = 0
        let seconds = try await Bench.time {
            applied = try await relay.catchUp([tenant], timeout: .seconds(600)).applied
        }
        return [
            "relay_backlog_changes": depth,
            "relay_backlog_s": Bench.round(seconds),
            "relay_backlog_changes_per_second": Bench.round(Double(applied) / seconds, 0),
        ]
    }

    /// Marks each INSERT of `markers` seen once its row is in the tenant database.
    static func pollMarkers(_ markers: MarkerLag, tenantURL: PostgresURL, stop: StopSignal) async throws {
        try await Database.withConnection(tenantURL, logger: Bench.logger) { connection in
            while true {
                let ids = markers.pendingIDs()
                if ids.isEmpty, stop.isSet { return }
                if !ids.isEmpty {
                    var found: [Int64] = []
                    for try await id in try await connection.query(
                        "SELECT id FROM customers WHERE id = ANY(\(ids))", logger: Bench.logger).decode(Int64.self) {
                        found.append(id)
                    }
                    markers.seen(found, at: .now)
                }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    /// The tenant's `lagSeconds` (age of its oldest waiting change) every 100 ms, in microseconds.
    static func sampleStateLag(_ capture: Capture, tenant: TenantID, stop: StopSignal) async throws -> [UInt32] {
        var samples: [UInt32] = []
        while !stop.isSet {
            if let state = try await capture.states([tenant]).first {
                samples.append(UInt32(min(Double(UInt32.max), state.lagSeconds * 1e6)))
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return samples
    }
}

/// Commit times of marker rows not yet seen in the tenant database, and the lags of those seen.
final class MarkerLag: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [Int64: ContinuousClock.Instant] = [:]
    private var seenLatencies: [UInt32] = []

    func committed(_ id: Int64) {
        let now = ContinuousClock.now
        lock.withLock { pending[id] = now }
    }

    func pendingIDs() -> [Int64] { lock.withLock { Array(pending.keys) } }

    var pendingCount: Int { lock.withLock { pending.count } }

    func seen(_ ids: [Int64], at instant: ContinuousClock.Instant) {
        lock.withLock {
            for id in ids {
                if let committed = pending.removeValue(forKey: id) {
                    seenLatencies.append(WriteLoad.microseconds(instant - committed))
                }
            }
        }
    }

    var latencies: [UInt32] { lock.withLock { seenLatencies } }
}

/// A flag set once, read from any task.
final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// The machine's CPU time from /proc/stat (Linux; all processes, not only the bench's).
enum SystemCPU {
    struct Sample { var busy: Double; var total: Double }

    static func read() -> Sample? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return nil }
        let idle = values[3] + values[4]
        let total = values.prefix(8).reduce(0, +)
        return Sample(busy: total - idle, total: total)
    }

    /// The share of all cores' time that was busy since `before`.
    static func busyShare(since before: Sample?) -> Double? {
        guard let before, let after = read(), after.total > before.total else { return nil }
        return (after.busy - before.busy) / (after.total - before.total)
    }
}
