import ArgumentParser
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench backup`: logical backups of a fleet of small tenant databases, and the restore
/// of one tenant.
///
/// Setup (not timed): a HandyShop unified database with `--tenants` shops (about `--rows-per-shop`
/// tenant rows each over its 19 tenant tables), every shop provisioned as a tenant database and its
/// rows copied in (`migrateData`, as `tenantry migrate-data` does); the restored tenant is cut over
/// and retired (a tenant is restored in place only when its writes no longer sync back).
///
/// Measured, in one run on one server, in this order:
/// 1. **anchor**: a sequential `pg_dump -Fc` loop over the tenant databases (what a cron script
///    does), through ``PostgresDump`` / ``ProcessRunner``;
/// 2. `--rounds` rounds of: `Backups.backupAll(into:concurrency:)` (`tenantry backup --all`) at its
///    default concurrency, then at each other of `--concurrency-list`, each into a fresh directory;
///    then the anchor again. Each backupAll run is compared with the mean of the two anchors around
///    its round (the machine is shared and its load drifts); CPU time is counted per contestant
///    (``CPUTime``);
/// 3. per-tenant profile, one tenant at a time over `--profile-tenants` tenants: a bare `pg_dump`,
///    `Backups.backupDatabase`, `Backups.backup`, and the steps of `backupDatabase` replayed one by
///    one (snapshot and row counts, `pg_dump --snapshot`, `pg_restore --list`, fsync, SHA-256), to
///    say where the time goes;
/// 4. `--restores` × `Backups.restore` of one tenant in place from the default run's backup
///    (checksum, restore, verify, swap, write pause);
/// 5. unless `--no-pitr`, a point-in-time restore of the same tenant (``BackupPointInTime``):
///    archiving enabled (first base backup of the whole server), rows written, T, rows changed,
///    `restoreToTime(T)` with its parts (prepare, base extract, WAL replay, dump, restore).
struct BackupBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "backup --all of N tenant databases vs a sequential pg_dump loop; per-tenant overhead; restore of one tenant.")

    @Option(help: "Tenant databases in the fleet.") var tenants = 200
    @Option(help: "HandyShop tenant rows per shop, on average (over 19 tables; the generator's sizes vary by shop).")
    var rowsPerShop = 300
    @Option(help: "Further backupAll concurrencies measured after the default one (comma-separated).")
    var concurrencyList = "2,4,8"
    @Option(help: "Rounds of (backupAll at each concurrency, then the anchor); the anchor also runs once before the first.")
    var rounds = 2
    @Option(help: "Tenants of the sequential per-tenant profile (bare pg_dump vs backupDatabase vs its steps).")
    var profileTenants = 20
    @Option(help: "In-place restores of one tenant measured (each from the same backup).") var restores = 3
    @Option(help: ArgumentHelp(
        "Milliseconds between two restores.",
        discussion: "Restores name their databases by the UTC second: two restores of one tenant in the same second collide (see Benchmarks/README.md)."))
    var restoreGapMs = 1_100
    @Flag(inversion: .prefixedNo, help: "Measure a point-in-time restore of one tenant (the server runs with archive_mode = on).")
    var pitr = true
    @Flag(help: "Print only the JSON object.") var json = false

    /// `backupAll`'s default concurrency (`tenantry backup --all` without `--concurrency`).
    static let defaultConcurrency = 4

    func validate() throws {
        guard (2...2000).contains(tenants), (1...100_000).contains(rowsPerShop) else {
            throw ValidationError("--tenants must be 2-2000 and --rows-per-shop 1-100000")
        }
        guard (try? concurrencies()) != nil else { throw ValidationError("--concurrency-list: numbers from 1 to 64, comma-separated") }
        guard (1...tenants).contains(profileTenants), (0...20).contains(restores), restoreGapMs >= 0, (1...10).contains(rounds) else {
            throw ValidationError("--profile-tenants must be 1-\(tenants), --restores 0-20, --rounds 1-10")
        }
    }

    /// The default concurrency first, then the others of `--concurrency-list` in their order.
    func concurrencies() throws -> [Int] {
        var list = [Self.defaultConcurrency]
        for part in concurrencyList.split(separator: ",") {
            guard let value = Int(part.trimmingCharacters(in: .whitespaces)), (1...64).contains(value) else {
                throw ValidationError("bad --concurrency-list entry \(part)")
            }
            if !list.contains(value) { list.append(value) }
        }
        return list
    }

    /// The tenant restored: the middle one (shops after the first tenth are of typical size).
    var restoredTenant: TenantID { try! TenantID("\(max(1, tenants / 2))") }

    func run() async throws {
        let options = self
        var fields = try await Bench.withServer(settings: pitr ? BackupPointInTime.serverSettings : [:]) { _, admin in
            if options.pitr { try await BackupPointInTime.discardWAL(admin) }
            let fleet = try await BackupFleet.make(admin: admin, tenants: options.tenants, rowsPerShop: options.rowsPerShop,
                                                   restored: options.restoredTenant, quiet: options.json)
            defer { fleet.removeFiles() }
            return try await fleet.withOperations { operations in
                try await options.measure(fleet, operations: operations)
            }
        }
        fields["benchmark"] = "backup"
        fields["cores"] = ProcessInfo.processInfo.activeProcessorCount
        fields["tenants"] = tenants
        fields["rows_per_shop"] = rowsPerShop
        fields["goal_vs_sequential_pg_dump"] = 1.7
        try Bench.report(fields, json: json)
    }

    func measure(_ fleet: BackupFleet, operations: Operations) async throws -> [String: any Sendable] {
        let quiet = json
        let widths = try concurrencies()
        var fields = try await fleet.size()
        if !quiet {
            Bench.note("fleet: \(fields["fleet_rows"] ?? 0) rows, \(ByteSize.format(fields["fleet_bytes"] as? Int64 ?? 0)) on disk "
                + "(\(ByteSize.format(fields["fleet_data_bytes"] as? Int64 ?? 0)) in tenant tables); warming up…")
        }
        try await fleet.warmUp()

        // (1)-(3) Rounds: the anchor, then backupAll at each concurrency (the default first); the
        // anchor once more after the last round. Each round's backupAll runs are compared with the
        // mean of the anchors around it (the machine's load drifts).
        if !quiet { Bench.note("anchor: sequential pg_dump -Fc over \(fleet.tenants.count) databases…") }
        var anchors = [try await fleet.sequentialPgDump()]
        var runs: [Int: [BackupFleet.AllRun]] = [:]
        var ratios: [Int: [Double]] = [:]
        for round in 1...rounds {
            for width in widths {
                if !quiet { Bench.note("round \(round): backupAll, concurrency \(width)…") }
                runs[width, default: []].append(try await fleet.backupAll(operations, concurrency: width, round: round))
            }
            if !quiet { Bench.note("round \(round): anchor again…") }
            anchors.append(try await fleet.sequentialPgDump())
            let anchorMs = Double(anchors[round - 1].milliseconds + anchors[round].milliseconds) / 2
            for width in widths { ratios[width, default: []].append(anchorMs / Double(max(runs[width]![round - 1].milliseconds, 1))) }
        }
        let median = { (values: [Double]) in BackupProfile.percentile(values, 0.5) }
        let main = runs[Self.defaultConcurrency]!
        let tenantCount = fleet.tenants.count
        let cpu = { (list: [BackupFleet.AllRun]) in
            list.map(\.cpu).reduce(CPUTime()) { CPUTime(own: $0.own + $1.own, children: $0.children + $1.children, server: $0.server + $1.server) }
                .perTenant(tenantCount * list.count)
        }

        // (4) Per tenant, one at a time.
        if !quiet { Bench.note("per-tenant profile over \(profileTenants) tenants…") }
        let profile = try await fleet.profile(operations, count: profileTenants)

        // (5) Restore of one tenant.
        var restore: [String: any Sendable]? = nil
        if restores > 0 {
            if !quiet { Bench.note("restore of tenant \(restoredTenant) in place, \(restores) time(s)…") }
            restore = try await fleet.restores(
                operations, tenant: restoredTenant, from: fleet.storePath(Self.defaultConcurrency, round: 1), count: restores,
                gap: .milliseconds(restoreGapMs))
        }

        // (6) Point-in-time restore of the same tenant.
        var pitrFields: [String: any Sendable]? = nil
        if pitr {
            if !quiet { Bench.note("point-in-time restore of tenant \(restoredTenant): archive enable (base backup), writes, restore --to-time…") }
            pitrFields = try await fleet.pointInTime(operations, tenant: restoredTenant)
        }

        fields["concurrency"] = Self.defaultConcurrency
        fields["rounds"] = rounds
        fields["backup_all_ms"] = Int(median(main.map { Double($0.milliseconds) }))
        fields["backup_all_runs_ms"] = main.map(\.milliseconds)
        fields["backup_bytes"] = main[0].bytes
        fields["sequential_pg_dump_ms"] = Int(median(anchors.map { Double($0.milliseconds) }))
        fields["sequential_pg_dump_runs_ms"] = anchors.map(\.milliseconds)
        fields["sequential_pg_dump_bytes"] = anchors[0].bytes
        fields["vs_sequential_pg_dump"] = Bench.round(median(ratios[Self.defaultConcurrency]!), 2)
        fields["vs_sequential_pg_dump_by_round"] = ratios[Self.defaultConcurrency]!.map { Bench.round($0, 2) }
        fields["cpu_ms_per_tenant"] = ["sequential_pg_dump": cpu(anchors), "backup_all": cpu(main)] as [String: any Sendable]
        fields["load_average"] = (anchors + runs.values.flatMap { $0 }).map { Bench.round($0.load, 1) }.sorted()
        fields["backup_all_by_concurrency"] = widths.map { width -> [String: any Sendable] in
            let list = runs[width]!
            return [
                "concurrency": width, "ms": Int(median(list.map { Double($0.milliseconds) })), "runs_ms": list.map(\.milliseconds),
                "vs_sequential_pg_dump": Bench.round(median(ratios[width]!), 2),
                "vs_sequential_pg_dump_by_round": ratios[width]!.map { Bench.round($0, 2) },
                "tenant_ms_median": list[0].tenantMedianMs, "tenant_ms_p95": list[0].tenantP95Ms, "cpu_ms_per_tenant": cpu(list),
            ]
        }
        let best = widths.max { median(ratios[$0]!) < median(ratios[$1]!) }!
        fields["best_concurrency"] = best
        fields["best_vs_sequential_pg_dump"] = Bench.round(median(ratios[best]!), 2)
        fields["per_tenant_ms"] = profile["backup_database_ms"]
        fields["per_tenant_pg_dump_ms"] = profile["pg_dump_ms"]
        fields["per_tenant_overhead_ms"] = profile["overhead_ms"]
        fields["per_tenant_profile"] = profile
        fields["restore_ms"] = restore.map { $0 as any Sendable } ?? NSNull()
        fields["pitr"] = pitrFields.map { $0 as any Sendable } ?? NSNull()
        return fields
    }
}
