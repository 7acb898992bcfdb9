import ArgumentParser
import Foundation
import PostgresNIO
import EmbeddedPostgres
import Tenantry
import TenantryCore

extension ServerMoveBench {
    /// The anchor: `createdb` of a fresh database on B, then `pg_dump --format=custom` of the
    /// moved tenant's database on A piped straight into `pg_restore` into it (one `bash`, pipefail;
    /// no file in between; `--no-owner --no-privileges`, as the tenant's role does not exist on B
    /// yet). Timed together; the restored tenant tables' rows are counted afterwards and the
    /// database dropped.
    static func dumpRestore(_ bed: MoveBed, second: PostgresURL) async throws -> (rows: Int, seconds: Double) {
        let binaries = try PostgresBinaries.locate()
        let database = "bench_pgdump_1"
        let source = bed.admin
        let dump = [ProcessRunner.quote(binaries.path(of: "pg_dump")), "--format=custom", "--no-password",
                    "--host=\(ProcessRunner.quote(source.host))", "--port=\(source.port)", "--username=\(ProcessRunner.quote(source.user))",
                    "--dbname=\(ProcessRunner.quote(MoveBed.naming.databaseName(for: moved)))"]
        let restore = [ProcessRunner.quote(binaries.path(of: "pg_restore")), "--no-owner", "--no-privileges", "--exit-on-error",
                       "--no-password", "--host=\(ProcessRunner.quote(second.host))", "--port=\(second.port)",
                       "--username=\(ProcessRunner.quote(second.user))", "--dbname=\(database)"]
        // The passwords go through the environment, never argv.
        let script = "set -e -o pipefail\nPGPASSWORD=\"$SOURCE_PASSWORD\" \(dump.joined(separator: " "))"
            + " | PGPASSWORD=\"$TARGET_PASSWORD\" \(restore.joined(separator: " "))"
        var environment = ProcessInfo.processInfo.environment
        environment["SOURCE_PASSWORD"] = source.password ?? ""
        environment["TARGET_PASSWORD"] = second.password ?? ""
        environment["PGSSLMODE"] = "disable"
        environment.removeValue(forKey: "PGPASSWORD")
        var output: ProcessRunner.Output?
        let seconds = try await Bench.time {
            try await MoveBed.execute("CREATE DATABASE \(database)", on: second)
            output = try await ProcessRunner().run("/bin/bash", ["-c", script], environment: environment)
        }
        guard let output, output.succeeded else {
            let line = output?.text.split(separator: "\n").first.map(String.init) ?? "exit \(output?.status ?? -1)"
            throw ValidationError("pg_dump | pg_restore failed: \(line)")
        }
        let sql = bed.plan.tables.map { "(SELECT count(*) FROM \($0.quoted))" }.joined(separator: " + ")
        let rows = try await Database.withConnection(second.with(database: database), logger: Bench.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "SELECT (\(sql))::int"), logger: Bench.logger)
                .decode(Int.self).first { _ in true } ?? 0
        }
        try await MoveBed.execute("DROP DATABASE \(database) WITH (FORCE)", on: second)
        return (rows, seconds)
    }

    /// Every acknowledged write looked up by its unique e-mail: in the database where its shop's
    /// writes go now (the catalog's placement: for the moved and the drained shops, B) and in
    /// unified (reverse sync; for a shared shop the only place). `duplicated`: e-mails found more
    /// than once in any of those databases.
    static func lostWrites(_ writes: [RoutedWrite], operations: Operations) async throws -> (missing: [String], duplicated: Int) {
        var unified: [String: Set<String>] = [:]
        var duplicated = 0
        let unifiedURL = operations.databaseURL
        let unifiedRows = try await TestQueries.strings(
            unifiedURL, "SELECT shop_id::text || ' ' || email FROM customers WHERE email LIKE 'cut-%'")
        for row in unifiedRows {
            let parts = row.split(separator: " ", maxSplits: 1).map(String.init)
            if parts.count == 2, !unified[parts[0], default: []].insert(parts[1]).inserted { duplicated += 1 }
        }
        var tenant: [String: Set<String>] = [:]
        for shop in Set(writes.map(\.shop)).sorted() {
            guard let record = try await operations.catalog.tenant(try TenantID(shop)), record.placement == .dedicated else { continue }
            let url = try operations.servers.adminURL(of: record)
            var emails = Set<String>()
            for email in try await TestQueries.strings(url, "SELECT email FROM customers WHERE email LIKE 'cut-%'") {
                if !emails.insert(email).inserted { duplicated += 1 }
            }
            tenant[shop] = emails
        }
        var missing: [String] = []
        for write in writes where write.ok {
            if let emails = tenant[write.shop], !emails.contains(write.email) {
                missing.append("\(write.email) not in shop \(write.shop)'s database")
            }
            if !(unified[write.shop]?.contains(write.email) ?? false) { missing.append("\(write.email) not in unified (shop \(write.shop))") }
        }
        return (missing, duplicated)
    }

    /// Per flip, the longest latency of its tenant's writes that overlapped it (started before it
    /// returned, ended after it began), in milliseconds: what a writer waited, the router's retry
    /// on the new route included.
    static func writePauses(_ writes: [RoutedWrite], _ flips: [Flip]) -> [(Double, RoutedWrite?)] {
        flips.map { flip in
            let worst = writes.filter { $0.shop == flip.tenant && $0.start < flip.end && $0.end > flip.start }
                .max { $0.end - $0.start < $1.end - $1.start }
            return (worst.map { ($0.end - $0.start) * 1000 } ?? 0, worst)
        }
    }

    static func fields(writes: [RoutedWrite], flips: [Flip]) -> [String: any Sendable] {
        let large = flips.filter { $0.tenant == moved.rawValue }
        let drains = flips.filter { $0.tenant != moved.rawValue }
        let pauses = writePauses(writes, large)
        let values = pauses.map(\.0)
        let engine = large.map(\.engineMs)
        let p = CutoverBench.percentile
        let slowest = zip(pauses, large).max { $0.0.0 < $1.0.0 }.flatMap { pair -> String? in
            guard let write = pair.0.1 else { return nil }
            let flip = pair.1
            return String(format: "%.1f ms on %@, started %+.1f ms after the %@ began (call took %.1f ms, engine pause %.1f ms)",
                          (write.end - write.start) * 1000, write.path, (write.start - flip.start) * 1000,
                          flip.reverse ? "reverse" : "switch", (flip.end - flip.start) * 1000, flip.engineMs)
        } ?? ""
        let steady = writes.filter { write in
            write.moved && write.ok && !large.contains { write.start < $0.end && write.end > $0.start }
        }.map { ($0.end - $0.start) * 1000 }
        let failed = writes.filter { !$0.ok }
        let span = (writes.map(\.end).max() ?? 0) - (writes.map(\.start).min() ?? 0)
        let drainWrite = writePauses(writes, drains).map(\.0)
        return [
            "switch_samples": values.count,
            "switch_pause_p50_ms": Bench.round(p(values, 50), 1),
            "switch_pause_p99_ms": Bench.round(p(values, 99), 1),
            "switch_pause_max_ms": Bench.round(values.max() ?? 0, 1),
            "switch_pauses_ms": values.map { Bench.round($0, 1) },
            "switch_only_pause_p99_ms": Bench.round(p(zip(values, large).filter { !$0.1.reverse }.map(\.0), 99), 1),
            "reverse_only_pause_p99_ms": Bench.round(p(zip(values, large).filter { $0.1.reverse }.map(\.0), 99), 1),
            "switch_engine_pause_p50_ms": Bench.round(p(engine, 50), 1),
            "switch_engine_pause_p99_ms": Bench.round(p(engine, 99), 1),
            "switch_engine_pause_max_ms": Bench.round(engine.max() ?? 0, 1),
            "switch_call_p50_ms": Bench.round(p(large.map { ($0.end - $0.start) * 1000 }, 50), 1),
            "slowest_switch_write": slowest,
            "steady_write_p50_ms": Bench.round(p(steady, 50), 2),
            "steady_write_p99_ms": Bench.round(p(steady, 99), 2),
            "drain_longest_write_pause_ms": Bench.round(drainWrite.max() ?? 0, 1),
            "writes_acknowledged": writes.count - failed.count,
            "writes_moved_shop": writes.filter(\.moved).count,
            "write_errors": failed.count,
            "write_first_error": failed.first?.error ?? "",
            "writes_per_s_achieved": Bench.round(span > 0 ? Double(writes.count) / span : 0, 0),
        ]
    }
}
