import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore

extension ServerMoveBench {
    /// One switch, reverse or drain switch: when it ran (load clock), its tenant, the pause the
    /// engine reported.
    struct Flip: Sendable {
        var tenant: String
        var start: Double
        var end: Double
        var engineMs: Double
        var reverse: Bool
    }

    /// Everything measured with the router and the relay running and the writers writing.
    func underLoad(
        _ bed: MoveBed, operations: Operations, move: MoveOperations, second: PostgresURL, drained: [TenantID]
    ) async throws -> [String: any Sendable] {
        var pool = TenantPool.Configuration()
        pool.maxConnections = writers + 20
        let router = TenantRouter(
            configuration: TenantRouter.Configuration(unifiedURL: bed.unifiedURL, pool: pool), catalog: operations.catalog,
            registry: CredentialRegistry(catalog: operations.catalog, keyring: bed.keyring), servers: operations.servers,
            logger: Bench.logger)
        let background = move.relay()
        // The cutover benchmark's writers, with this benchmark's rate, share and writer count.
        let load = RouterWrites(
            router: router, moved: Self.moved, others: bed.shops.filter { $0 != Self.moved },
            options: try CutoverBench.parse(["--rate", "\(rate)", "--tenant-share", "\(tenantShare)", "--writers", "\(writers)"]))
        let maxPause = Duration.milliseconds(Int64(maxPauseMs))
        let tenantRows = try await bed.tenantRows(Self.moved)

        var fields: [String: any Sendable] = ["tenant_rows": tenantRows]
        var flips: [Flip] = []
        var aborted: [String] = []
        // What the benchmark was doing when (load clock), to place write errors.
        var marks: [(Double, String)] = []
        let writes = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await router.run() }
            group.addTask { try await background.run() }
            defer { group.cancelAll() }
            await router.waitUntilListening()
            let running = Task { await load.run() }
            try await Task.sleep(for: .seconds(max(1, hold)))

            marks.append((load.clock.now(), "anchor pg_dump | pg_restore"))
            if !json { Bench.note("anchor: pg_dump -Fc | pg_restore of shop 1's database, A → B…") }
            let anchor = try await Self.dumpRestore(bed, second: second)
            fields["pg_dump_restore_rows"] = anchor.rows
            fields["pg_dump_restore_s"] = Bench.round(anchor.seconds, 2)
            fields["pg_dump_restore_rows_per_s"] = Bench.round(Double(anchor.rows) / anchor.seconds, 0)

            try await move.withServerMoves { moves in
                if !json { Bench.note("move start: shop 1 (\(tenantRows) rows) → B…") }
                marks.append((load.clock.now(), "move start (copy)"))
                // When the copy's first and last progress came: the rows phase, apart from provisioning.
                let progress = NIOLockedValueBox<(first: Double?, last: Double?)>((nil, nil))
                let clock = load.clock
                let called = clock.now()
                let started = try await moves.start(Self.moved, to: Self.secondServer, reason: "bench") { _ in
                    progress.withLockedValue { $0 = ($0.first ?? clock.now(), clock.now()) }
                }
                let (first, last) = progress.withLockedValue { $0 }
                if let first, let last, last > first {
                    fields["copy_setup_s"] = Bench.round(first - called, 2)
                    fields["copy_rows_phase_s"] = Bench.round(last - first, 2)
                    fields["copy_rows_phase_rows_per_s"] = Bench.round(Double(started.rowsCopied) / (last - first), 0)
                }
                let copyRate = Double(started.rowsCopied) / started.copySeconds
                fields["copy_rows"] = started.rowsCopied
                fields["copy_s"] = Bench.round(started.copySeconds, 2)
                fields["copy_rows_per_s"] = Bench.round(copyRate, 0)
                fields["copy_vs_pg_dump_restore"] = Bench.round(copyRate / (Double(anchor.rows) / anchor.seconds), 2)
                if !json { Bench.note("copied \(started.rowsCopied) rows in \(String(format: "%.2f", started.copySeconds)) s; catching up, verifying…") }
                marks.append((load.clock.now(), "catch up + verify"))
                fields["catch_up_s"] = Bench.round(try await Bench.time { try await moves.catchUp(Self.moved) }, 2)
                var verified: Verifier.Report?
                fields["verify_s"] = Bench.round(try await Bench.time { verified = try await moves.verify(Self.moved) }, 2)
                fields["verify_equal"] = verified?.equal ?? false
                guard verified?.equal == true else {
                    throw ValidationError("verify found differences: \(verified?.tables.flatMap(\.differences).prefix(5).map(\.description) ?? [])")
                }

                marks.append((load.clock.now(), "switch/reverse cycles"))
                for cycle in 1...(cycles + 1) {
                    flips.append(try await flip(moves, load.clock, reverse: false, maxPause: maxPause, aborted: &aborted))
                    if cycle > cycles { break }
                    try await Task.sleep(for: .seconds(hold))
                    if cycle == 1 { fields["follower_probe"] = await Self.probeFollower(bed) }
                    flips.append(try await flip(moves, load.clock, reverse: true, maxPause: maxPause, aborted: &aborted))
                    if !json {
                        let last = flips.suffix(2).map { String(format: "%.0f", $0.engineMs) }.joined(separator: " / ")
                        Bench.note("cycle \(cycle)/\(cycles): switch / reverse paused \(last) ms (engine)")
                    }
                    try await Task.sleep(for: .seconds(hold))
                }
                try await Task.sleep(for: .seconds(hold))
                marks.append((load.clock.now(), "complete"))
                fields["complete_s"] = Bench.round(try await Bench.time { _ = try await moves.complete(Self.moved) }, 2)

                if !json { Bench.note("drain: \(drained.count) tenants A → B, \(drainConcurrency) at a time (ServerMoves.run)…") }
                marks.append((load.clock.now(), "drain"))
                let drain = try await self.drain(moves, drained, clock: load.clock, maxPause: maxPause)
                fields.merge(drain.fields) { $1 }
                flips += drain.flips
            }
            marks.append((load.clock.now(), "after the drain"))
            try await Task.sleep(for: .seconds(hold))
            let writes = await load.stop(after: running)
            if !json { Bench.note("writers stopped (\(writes.count) writes); relay catching up, then checking every write…") }
            _ = try await background.catchUp(timeout: .seconds(300))
            return writes
        }
        await background.close()
        let lost = try await Self.lostWrites(writes, operations: operations)
        fields.merge(Self.fields(writes: writes, flips: flips)) { $1 }
        fields["write_error_examples"] = Self.errorExamples(writes, flips: flips, marks: marks)
        fields["aborted_attempts"] = aborted.count
        fields["aborted_first_error"] = aborted.first ?? ""
        fields["writes_lost"] = lost.missing.count
        fields["writes_lost_examples"] = Array(lost.missing.prefix(5))
        fields["writes_duplicated"] = lost.duplicated
        return fields
    }

    /// Up to 10 failed writes: shop, when (load clock), during what, the router's path, the error.
    static func errorExamples(_ writes: [RoutedWrite], flips: [Flip], marks: [(Double, String)]) -> [String] {
        writes.filter { !$0.ok }.prefix(10).map { write in
            let phase = marks.last { $0.0 <= write.start }?.1 ?? "before the anchor"
            let during = flips.firstIndex { $0.tenant == write.shop && write.start < $0.end && write.end > $0.start }.map { index in
                let flip = flips[index]
                return String(format: ", overlapping a %@ of shop %@ (%.3f–%.3f s)", flip.reverse ? "reverse" : "switch", flip.tenant, flip.start, flip.end)
            } ?? flips.last { $0.tenant == write.shop && $0.end <= write.start }.map { flip in
                String(format: ", %.0f ms after a %@ of shop %@ returned", (write.start - flip.end) * 1000,
                       flip.reverse ? "reverse" : "switch", flip.tenant)
            } ?? ""
            return String(format: "shop %@ at %.3f–%.3f s (%@%@) path %@: %@", write.shop, write.start, write.end, phase, during,
                          write.path, write.error ?? "")
        }
    }

    /// One INSERT of a customer, without an id, straight into the source database on A (now the
    /// follower: marked moved) after the first switch and a hold, as a writer with a stale route
    /// would send it; what the database answers. Expected: the guard's refusal (SQLSTATE 25006,
    /// "has moved"), which the router retries on the new route.
    static func probeFollower(_ bed: MoveBed) async -> String {
        do {
            try await MoveBed.execute("""
                INSERT INTO customers (first_name, last_name, email, tags) VALUES ('Probe', 'Bench', 'probe@bench.example', ARRAY['bench'])
                """, on: bed.tenantURL(moved))
            return "accepted (the follower took an application write)"
        } catch {
            return "\(Database.sqlState(of: error) ?? "?"): \(Database.message(of: error))"
        }
    }

    /// One switch or reverse of the large tenant; an attempt aborted over `maxPause` is noted and retried.
    func flip(
        _ moves: ServerMoves, _ clock: LoadClock, reverse: Bool, maxPause: Duration, aborted: inout [String]
    ) async throws -> Flip {
        while true {
            let start = clock.now()
            do {
                let report = reverse
                    ? try await moves.reverse(Self.moved, maxPause: maxPause)
                    : try await moves.switchTraffic(Self.moved, maxPause: maxPause)
                return Flip(tenant: Self.moved.rawValue, start: start, end: clock.now(), engineMs: report.pauseMilliseconds, reverse: reverse)
            } catch let error as TenantryError where error.code == .timeout {
                aborted.append(error.message)
                if aborted.count > 20 { throw error }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// The small tenants moved A → B, `drainConcurrency` at a time, each by ``ServerMoves/run``
    /// (start, catch up, verify, switch, complete); the switch window of each is taken from its
    /// progress ("switching" → "completing").
    func drain(
        _ moves: ServerMoves, _ tenants: [TenantID], clock: LoadClock, maxPause: Duration
    ) async throws -> (fields: [String: any Sendable], flips: [Flip]) {
        let results = NIOLockedValueBox<[(Flip, Int, Int)]>([])
        let started = clock.now()
        try await Bench.forEach(tenants, width: drainConcurrency) { tenant in
            let switching = NIOLockedValueBox<Double?>(nil)
            let completing = NIOLockedValueBox<Double?>(nil)
            let report = try await moves.run(tenant, to: Self.secondServer, reason: "bench drain", maxPause: maxPause) { step in
                if step == "switching" { switching.withLockedValue { $0 = clock.now() } }
                if step == "completing" { completing.withLockedValue { $0 = clock.now() } }
            }
            let flip = Flip(
                tenant: tenant.rawValue, start: switching.withLockedValue { $0 } ?? 0, end: completing.withLockedValue { $0 } ?? clock.now(),
                engineMs: report.switched.pauseMilliseconds, reverse: false)
            results.withLockedValue { $0.append((flip, report.start.rowsCopied, report.abortedSwitches)) }
        }
        let seconds = clock.now() - started
        let done = results.withLockedValue { $0 }
        let flips = done.map(\.0)
        return ([
            "drain_tenants": done.count,
            "drain_mechanism": "ServerMoves.run per tenant, \(drainConcurrency) at a time (no drain library API on main)",
            "drain_rows": done.map(\.1).reduce(0, +),
            "drain_seconds": Bench.round(seconds, 2),
            "drain_longest_pause_ms": Bench.round(flips.map(\.engineMs).max() ?? 0, 1),
            "drain_pause_p50_ms": Bench.round(CutoverBench.percentile(flips.map(\.engineMs), 50), 1),
            "drain_aborted_switches": done.map(\.2).reduce(0, +),
        ], flips)
    }
}
