import ArgumentParser
import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench copy`: copying tenants' rows out of a HandyShop unified database into their
/// tenant databases, by ``Copier`` (the copy step of a move) against two anchors on the same data,
/// the same server and the same tenant databases, in the same run:
///
/// - **psql pipe** (the limit): per tenant and table,
///   `psql -c '\copy (SELECT … WHERE shop_id = N) TO STDOUT' | psql -c '\copy t (…) FROM PSTDIN'`;
/// - **row by row** (what naive scripts do): SELECT a tenant's rows, INSERT each one with binds,
///   one transaction per tenant.
struct CopyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copying tenants out of the unified database: Copier vs a psql \\copy pipe (the limit) vs row-by-row INSERTs.")

    @Option(help: "Shops (tenants) in the unified database; all are copied.") var shops = 50
    @Option(help: "HandyShop rows per shop, on average (50 × 20,000 ≈ 1M tenant rows).") var rowsPerShop = 20_000
    @Option(help: "Tenants copied at a time, by Tenantry and by both anchors.") var concurrency = 2
    @Option(help: "Shops the row-by-row anchor copies (evenly spread; its rows/s is compared); 0: all.")
    var rowByRowShops = 5
    @Option(help: "Rounds of Tenantry and the psql stream (alternating which goes first; times summed).") var rounds = 1
    @Option(help: "Only these contestants, comma-separated (tenantry, pipe, stream, serial, row_by_row); for iteration.")
    var only: String?
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (1...1000).contains(shops), (1...1_000_000).contains(rowsPerShop) else {
            throw ValidationError("--shops must be 1-1000 and --rows-per-shop 1-1000000")
        }
        guard (1...16).contains(concurrency), rowByRowShops >= 0, rounds >= 1 else {
            throw ValidationError("--concurrency must be 1-16, --row-by-row-shops at least 0 and --rounds at least 1")
        }
        let known: Set<String> = ["tenantry", "pipe", "stream", "serial", "row_by_row"]
        if let unknown = contestants.first(where: { !known.contains($0) }) {
            throw ValidationError("--only: unknown contestant '\(unknown)' (tenantry, pipe, stream, serial, row_by_row)")
        }
    }

    /// One contestant's result.
    struct Run: Sendable {
        var tenants = 0
        var rows = 0
        var seconds = 0.0
        var rowsPerSecond: Double { seconds > 0 ? Double(rows) / seconds : 0 }

        static func + (a: Run, b: Run) -> Run {
            Run(tenants: a.tenants + b.tenants, rows: a.rows + b.rows, seconds: a.seconds + b.seconds)
        }
    }

    /// The contestants to run (all without `--only`).
    var contestants: [String] {
        only?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            ?? ["tenantry", "pipe", "stream", "serial", "row_by_row"]
    }

    func run() async throws {
        let options = self
        let fields = try await Bench.withServer { _, admin in
            let ids = try (1...options.shops).map { try TenantID("\($0)") }
            let bed = try await MoveBed.make(
                admin: admin, shops: options.shops, rowsPerShop: options.rowsPerShop, provision: ids, quiet: options.json)
            return try await Catalog.withCatalog(bed.unifiedURL, logger: Bench.logger) { catalog in
                try await options.measure(bed, catalog: catalog)
            }
        }
        try Bench.report(fields, json: json)
    }

    func measure(_ bed: MoveBed, catalog: Catalog) async throws -> [String: any Sendable] {
        let quiet = json
        let width = concurrency
        var expected: [TenantID: Int] = [:]
        for id in bed.tenants { expected[id] = try await bed.unifiedRows(id) }
        let total = expected.values.reduce(0, +)
        let megabytes = try await Self.tenantDataMegabytes(bed)
        if !quiet { Bench.note("\(total) tenant rows (\(Int(megabytes)) MB) in \(bed.tenants.count) shops; warming the cache…") }
        try await Self.warmUp(bed)

        let runs = Set(contestants)
        let sizes = expected
        // (1) Tenantry, `width` tenants at a time (and how often 2+ copy snapshots were open at once),
        // and (3) one psql pair per tenant, as many at a time: `--rounds` times each, alternating
        // which goes first, times summed, so that drift of the shared machine hits both.
        let copier = bed.copier(catalog)
        let overlap = CopyOverlap()
        let tenantryTimes = PerTenantTimes()
        let streamTimes = PerTenantTimes()
        var tenantry = Run()
        var stream = Run()
        for round in 0..<rounds {
            for name in round % 2 == 0 ? ["tenantry", "stream"] : ["stream", "tenantry"] where runs.contains(name) {
                if name == "tenantry" {
                    if !quiet { Bench.note("round \(round + 1): tenantry: Copier.copy, \(width) tenant(s) at a time…") }
                    tenantry = tenantry + (try await Self.timed(bed, catalog: catalog, tenants: bed.tenants, expected: expected) {
                        try await overlap.sampling(bed.unifiedURL) {
                            try await Self.copyAll(bed.tenants, copier: copier, width: width, times: tenantryTimes)
                        }
                    })
                } else {
                    if !quiet { Bench.note("round \(round + 1): psql stream: one psql pair per tenant for all its tables, \(width) tenant(s) at a time…") }
                    stream = stream + (try await Self.timed(bed, catalog: catalog, tenants: bed.tenants, expected: expected) {
                        try await Bench.forEach(bed.tenants, width: width) { id in
                            try await streamTimes.time(rows: sizes[id] ?? 0) { try await Self.psqlStream(bed, tenant: id) }
                        }
                    })
                }
            }
        }
        // (2) The psql pipe, as many tenants at a time.
        var pipe = Run()
        if runs.contains("pipe") {
            if !quiet { Bench.note("psql pipe: per table psql \\copy … TO STDOUT | psql \\copy … FROM PSTDIN, \(width) tenant(s) at a time…") }
            pipe = try await Self.timed(bed, catalog: catalog, tenants: bed.tenants, expected: expected) {
                try await Bench.forEach(bed.tenants, width: width) { try await Self.psqlPipe(bed, tenant: $0) }
            }
        }
        // (4) Tenantry, one tenant at a time.
        var serial = tenantry
        if width > 1, runs.contains("serial") {
            if !quiet { Bench.note("tenantry: Copier.copy, 1 tenant at a time…") }
            serial = try await Self.timed(bed, catalog: catalog, tenants: bed.tenants, expected: expected) {
                try await Self.copyAll(bed.tenants, copier: copier, width: 1, times: PerTenantTimes())
            }
        }
        // (5) Row by row, on a subset of the shops.
        var naive = Run()
        if runs.contains("row_by_row") {
            let subset = Self.spread(bed.tenants, count: rowByRowShops)
            if !quiet { Bench.note("row by row: SELECT, then one INSERT per row, \(subset.count) shop(s), \(width) at a time…") }
            naive = try await Self.timed(bed, catalog: catalog, tenants: subset, expected: expected) {
                try await Bench.forEach(subset, width: width) { _ = try await Self.rowByRow(bed, tenant: $0) }
            }
        }
        let (tenantryFixed, tenantrySlope) = tenantryTimes.fit()
        let (streamFixed, streamSlope) = streamTimes.fit()

        var fields: [String: any Sendable] = [
            "benchmark": "copy",
            "cores": ProcessInfo.processInfo.activeProcessorCount,
            "shops": bed.tenants.count,
            "rows_per_shop": rowsPerShop,
            "tenant_tables": bed.plan.tables.count,
            "rows": total,
            "data_mb": Bench.round(megabytes, 1),
            "concurrency": width,
            "rounds": rounds,
            "generate_s": Bench.round(bed.generateSeconds),
            "tenantry_copies_overlapping_share": Bench.round(overlap.overlappingShare, 2),
            "row_by_row_shops": naive.tenants,
            "row_by_row_subset": naive.tenants < bed.tenants.count,
            "row_by_row_extrapolated_s": naive.rows > 0 ? Bench.round(Double(total) / naive.rowsPerSecond, 1) : 0,
            "goal_copy_vs_psql_pipe": 0.8,
            "goal_copy_vs_row_by_row": 10,
            "copy_vs_psql_pipe": Bench.round(Self.ratio(tenantry, pipe), 2),
            "copy_serial_vs_psql_pipe": Bench.round(Self.ratio(serial, pipe), 2),
            "copy_vs_psql_stream": Bench.round(Self.ratio(tenantry, stream), 2),
            "copy_vs_row_by_row": Bench.round(Self.ratio(tenantry, naive), 1),
            "psql_stream_vs_row_by_row": Bench.round(Self.ratio(stream, naive), 1),
            "goal_copy_vs_psql_stream": 0.9,
            "tenantry_fit_fixed_ms": Bench.round(tenantryFixed * 1000, 1),
            "tenantry_fit_us_per_row": Bench.round(tenantrySlope * 1e6, 2),
            "psql_stream_fit_fixed_ms": Bench.round(streamFixed * 1000, 1),
            "psql_stream_fit_us_per_row": Bench.round(streamSlope * 1e6, 2),
        ]
        for (name, run) in [("tenantry", tenantry), ("tenantry_serial", serial), ("psql_pipe", pipe), ("psql_stream", stream),
                           ("row_by_row", naive)] {
            fields["\(name)_rows"] = run.rows
            fields["\(name)_s"] = Bench.round(run.seconds)
            fields["\(name)_rows_per_s"] = Bench.round(run.rowsPerSecond, 0)
        }
        return fields
    }

    /// Empties the tenant databases and puts every tenant back in phase `shared` without capture,
    /// checkpoints, times `body`, then checks each of `tenants` holds exactly its unified rows.
    static func timed(
        _ bed: MoveBed, catalog: Catalog, tenants: [TenantID], expected: [TenantID: Int], _ body: () async throws -> Void
    ) async throws -> Run {
        try await reset(bed, catalog: catalog)
        try await MoveBed.execute("CHECKPOINT", on: bed.admin)
        let seconds = try await Bench.time(body)
        var rows = 0
        for id in tenants {
            let found = try await bed.tenantRows(id)
            guard found == expected[id] else {
                throw ValidationError("tenant \(id) has \(found) rows in its database, \(expected[id] ?? 0) in the unified one")
            }
            rows += found
        }
        return Run(tenants: tenants.count, rows: rows, seconds: seconds)
    }

    static func reset(_ bed: MoveBed, catalog: Catalog) async throws {
        for id in bed.tenants {
            if try await catalog.move(id) != nil { try await catalog.setPhase(id, to: .shared) }
            try await bed.truncate(id)
        }
        try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            try await connection.query("DELETE FROM tenantry.capture_state", logger: Bench.logger)
            try await connection.query("DELETE FROM tenantry.changes", logger: Bench.logger)
        }
        // The capture triggers list nobody again: every round is a first migration, which lists
        // its tenants (a round after one that left them listed would skip that cost).
        try await bed.capture().refreshTriggerList()
    }

    /// Copies `tenants` with ``Copier``, `width` at a time, listing them in the capture triggers
    /// ahead of their copies as `migrate-data` does (each tenant's time includes its share).
    static func copyAll(_ tenants: [TenantID], copier: Copier, width: Int, times: PerTenantTimes) async throws {
        let ahead = copier.listAhead(tenants)
        try await Bench.forEach(tenants, width: width) { id in
            let start = ContinuousClock.now
            try await ahead.prepare(id)
            let report = try await copier.copy(id)
            guard !report.skipped else { throw ValidationError("the copier skipped tenant \(id): not reset") }
            times.record(rows: report.rows, seconds: (ContinuousClock.now - start).totalSeconds)
        }
    }

    /// `count` of `ids`, evenly spread from the middle of the first stride (all when `count` is 0
    /// or too large).
    static func spread(_ ids: [TenantID], count: Int) -> [TenantID] {
        guard count > 0, count < ids.count else { return ids }
        return (0..<count).map { ids[(2 * $0 + 1) * ids.count / (2 * count)] }
    }

    /// Reads every tenant table once, so that no contestant pays for a cold cache.
    static func warmUp(_ bed: MoveBed) async throws {
        try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            for table in bed.plan.tables {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "SELECT count(*), sum(length(t::text)) FROM \(bed.plan.unifiedName(table)) t"),
                    logger: Bench.logger)
            }
        }
    }

    /// Size of the tenant tables in the unified database (heap and TOAST, without indexes).
    static func tenantDataMegabytes(_ bed: MoveBed) async throws -> Double {
        let names = bed.plan.tables.map { bed.plan.unifiedName($0) }
        return try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            let bytes = try await connection.query(
                "SELECT sum(pg_table_size(to_regclass(n)))::float8 FROM unnest(\(names)::text[]) n", logger: Bench.logger)
                .decode(Double.self).first { _ in true } ?? 0
            return bytes / 1_048_576
        }
    }

    /// `a`'s rows/s ÷ `b`'s (0 when either did not run).
    static func ratio(_ a: Run, _ b: Run) -> Double {
        a.rowsPerSecond > 0 && b.rowsPerSecond > 0 ? a.rowsPerSecond / b.rowsPerSecond : 0
    }

    /// `"name"`, quoted.
    static func quote(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// Samples the unified database every 20 ms while the copier runs: how often two or more copy
/// snapshots (open transactions other than the sampler's, each copy's COPY TO session — which
/// shares its copy's snapshot — not counted) were open at once, of the samples with at least one.
final class CopyOverlap: @unchecked Sendable {
    private let lock = NSLock()
    private var busy = 0
    private var overlapping = 0

    var overlappingShare: Double { lock.withLock { busy > 0 ? Double(overlapping) / Double(busy) : 0 } }

    func sampling(_ url: PostgresURL, _ body: @escaping @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await Database.withConnection(url, logger: Bench.logger) { connection in
                    while !Task.isCancelled {
                        let open = try await connection.query("""
                            SELECT count(*)::int FROM pg_stat_activity
                            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
                              AND application_name <> 'tenantry-copy'
                              AND xact_start < clock_timestamp() - interval '20 milliseconds'
                            """, logger: Bench.logger).decode(Int.self).first { _ in true } ?? 0
                        self.lock.withLock {
                            if open >= 1 { self.busy += 1 }
                            if open >= 2 { self.overlapping += 1 }
                        }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
            }
            try await body()
            group.cancelAll()
            try? await group.waitForAll()
        }
    }
}
