import ArgumentParser
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry-bench capture`: what change capture costs the application's writes, and how fast the
/// relay keeps a syncing tenant current.
///
/// 1. **Write throughput**: `--clients` connections doing single-row autocommit writes (INSERT or
///    UPDATE of one `customers` row) for one shop, closed loop, against three contestants in
///    alternating rounds of the same run: the shop in a unified database **without capture**
///    (the anchor: the same schema and data, no triggers), the shop **uncaptured** in the unified
///    database with capture installed (every tenant table has the triggers; the tenant has no
///    capture state, as every tenant not being moved, so their `WHEN` lists do not name it, while
///    `--uncaptured-peers` other shops are captured, as while they are being moved: the lists
///    name them), and
///    the shop **captured** (capture enabled: each write also appends its row image to
///    `tenantry.changes`). Then (`--relist-enables`) the writers' pause while capture is enabled
///    for other shops, each enable re-creating every table's triggers with a longer list.
/// 2. **Relay**: another shop copied (phase `syncing`) while ``Relay/run()`` runs, under writes
///    paced at `--relay-rate` per second for `--relay-seconds`: changes applied per second and the
///    lag from each INSERT's commit to the row being visible in the tenant database. Then a
///    backlog of `--backlog` changes is captured with the relay stopped and drained by
///    ``Relay/catchUp(_:timeout:)``: the relay's capacity.
struct CaptureBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Write throughput with capture (captured, uncaptured) vs without triggers; relay changes/s and lag at a paced write rate.")

    @Option(help: "Shops in the unified database.") var shops = 20
    @Option(help: "HandyShop rows per shop, on average.") var rowsPerShop = 2_000
    @Option(help: "Concurrent writing connections of the throughput rounds.") var clients = 8
    @Option(help: "Seconds per contestant per round.") var seconds = 5.0
    @Option(help: "Rounds (contestants alternate within each).") var rounds = 3
    @Option(help: "Writes per second offered while the relay runs (0: skip the relay scenario).") var relayRate = 2_000.0
    @Option(help: "Seconds of paced writes while the relay runs.") var relaySeconds = 10.0
    @Option(help: "Writing connections of the relay scenario.") var relayClients = 8
    @Option(help: "Changes captured with the relay stopped, then drained (0: skip).") var backlog = 30_000
    @Flag(help: "Durable commits (fsync and synchronous_commit on) instead of the bench's usual fsync=off.") var durable = false
    @Option(help: "Only these contestants of the throughput rounds, comma-separated (no_trigger, uncaptured, captured; run only when named: bare, shop 1 in the unified database with customers' capture triggers dropped, and the floor contestants of CaptureBench+Floor.swift: floor_*, full*, logical_*); for profiling.")
    var only: String?
    @Option(help: "Shops whose capture is enabled, one after another, while shop 1 is written: the writers' pause from re-listing the triggers (0: skip).")
    var relistEnables = 10
    @Option(help: "Made-up tenants given capture state before the throughput rounds: a longer trigger list (beyond 100, every row fires the function).")
    var extraState = 0
    @Option(help: "Other shops captured (capture enabled, not written) during the throughput rounds, as while they are being moved: the triggers list them (0: nobody else, the list is empty).")
    var uncapturedPeers = 8
    @Flag(help: "Print only the JSON object.") var json = false

    func validate() throws {
        guard (2...1000).contains(shops), (1...1_000_000).contains(rowsPerShop) else {
            throw ValidationError("--shops must be 2-1000 and --rows-per-shop 1-1000000")
        }
        guard (1...256).contains(clients), (1...256).contains(relayClients), rounds >= 1, seconds > 0, relaySeconds > 0,
              relayRate >= 0, backlog >= 0 else {
            throw ValidationError("--clients and --relay-clients 1-256; --rounds, --seconds, --relay-seconds positive")
        }
        let unknown = (only ?? "").split(separator: ",").map(String.init).filter { Contestant(rawValue: $0) == nil }
        guard unknown.isEmpty else {
            throw ValidationError("--only names unknown contestants (\(unknown.joined(separator: ", "))); known: \(Contestant.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (0...(shops - 2)).contains(uncapturedPeers) else {
            throw ValidationError("--uncaptured-peers must be 0 to --shops minus 2 (shops 1 and 2 are the written and the relay shop)")
        }
    }

    /// The shop of the throughput rounds, and the shop the relay scenario moves.
    static let writtenShop: Int64 = 1
    static let relayShop: Int64 = 2

    enum Contestant: String, CaseIterable, Sendable {
        /// `bare` (only when `--only` names it): shop 1 in `bench_unified` with `customers`' capture
        /// triggers dropped, a control that tells the unified database's own cost from the triggers'.
        case noTrigger = "no_trigger", uncaptured, captured, bare
        /// The floor of capture (only when `--only` names them): see `CaptureBench+Floor.swift`.
        case floorEmpty = "floor_empty", floorFence = "floor_fence", floorAppend = "floor_append", floorImage = "floor_image"
        case floorImageSequenced = "floor_image_sequenced", floorImageIndexed = "floor_image_indexed"
        case logicalDecode = "logical_decode", logicalOutbox = "logical_outbox", logicalImages = "logical_images"
        case full, fullNoWhen = "full_no_when", fullNoDefiner = "full_no_definer", fullNoState = "full_no_state"
        case fullNoTextColumns = "full_no_text_columns", fullNoKeyCompare = "full_no_key_compare", fullNoFence = "full_no_fence"
        case fullExplicit = "full_explicit", fullExplicitJSON = "full_explicit_json", fullRowToJSON = "full_row_to_json"
    }

    func run() async throws {
        let options = self
        var settings = durable ? ["fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"] : [:]
        // A logical contestant decodes a replication slot: the whole run (anchor included) at wal_level logical.
        let logical = chosenContestants.contains(where: \.isLogical)
        if logical { settings.merge(["wal_level": "logical", "max_replication_slots": "4", "max_wal_senders": "4"]) { $1 } }
        let fields = try await Bench.withServer(settings: settings) { _, admin in
            // The anchor's database: the same generator run (deterministic), no capture.
            let plainURL = admin.with(database: "bench_plain")
            try await MoveBed.execute("CREATE DATABASE bench_plain", on: admin)
            _ = try await MoveBed.loadHandyShop(plainURL, shops: options.shops, rowsPerShop: options.rowsPerShop)
            let bed = try await MoveBed.make(
                admin: admin, shops: options.shops, rowsPerShop: options.rowsPerShop,
                provision: options.relayRate > 0 || options.backlog > 0 ? [try TenantID("\(Self.relayShop)")] : [],
                quiet: options.json)
            try await options.addExtraState(bed, count: options.extraState)
            try await options.capturePeers(bed, on: true)
            var fields = try await options.throughput(bed, plainURL: plainURL)
            // The other scenarios as before: the peers' state removed, the list shrunk.
            try await options.capturePeers(bed, on: false)
            if options.relistEnables > 0 { fields.merge(try await options.relist(bed)) { $1 } }
            if options.relayRate > 0 || options.backlog > 0 {
                let relay = try await Catalog.withCatalog(bed.unifiedURL, logger: Bench.logger) { catalog in
                    try await options.relay(bed, catalog: catalog)
                }
                fields.merge(relay) { $1 }
            }
            return fields
        }
        var report = fields
        report["benchmark"] = "capture"
        report["cores"] = ProcessInfo.processInfo.activeProcessorCount
        report["shops"] = shops
        report["rows_per_shop"] = rowsPerShop
        report["durable_commits"] = durable
        report["extra_capture_state"] = extraState
        report["uncaptured_peers"] = uncapturedPeers
        report["wal_level"] = logical ? "logical" : "replica"
        try Bench.report(report, json: json)
    }

    /// Scenario 1: the three contestants, in rotating order, `rounds` times.
    func throughput(_ bed: MoveBed, plainURL: PostgresURL) async throws -> [String: any Sendable] {
        let tenant = try TenantID("\(Self.writtenShop)")
        let capture = bed.capture()
        let duration = Duration.milliseconds(Int64(seconds * 1000))
        let contestants = chosenContestants
        let floors = contestants.contains { $0.onPlainDatabase && $0 != .noTrigger }
        var totals: [Contestant: WriteLoad.Result] = [:]
        // Server CPU per write: the writing backends' user + system time (/proc/<pid>/stat), a
        // measure other load on the machine moves far less than throughput.
        var cpuTicks: [Contestant: Int] = [:]
        // A logical contestant's WAL left to decode when its writers stopped, and the time that took.
        var decoding: [Contestant: [(behind: Double, drainMs: Double)]] = [:]
        // What the uncaptured rounds' customers triggers test (their WHEN), as installed.
        var conditions: [String: any Sendable] = [:]
        for round in 0..<(rounds + 1) {
            for offset in 0..<contestants.count {
                let contestant = contestants[(round + offset) % contestants.count]
                let url = contestant.onPlainDatabase ? plainURL : bed.unifiedURL
                if floors { try await Self.prepareFloor(contestant, plainURL: plainURL) }
                try await Self.prepare(contestant, url: url, tenant: tenant, bed: bed, capture: capture)
                if contestant == .uncaptured, conditions.isEmpty { conditions = try await Self.triggerConditions(bed) }
                let writes = try await CustomerWrites.make(url, shop: Self.writtenShop, tag: "r\(round)\(contestant.rawValue)")
                // Round 0 warms every contestant up (connections, caches, plans) and is not counted.
                if !json { Bench.note(round == 0 ? "warm-up: \(contestant.rawValue)…" : "round \(round)/\(rounds): \(contestant.rawValue)…") }
                let (result, ticks) = try await WriteLoad.withConnections(url, count: clients) { connections in
                    var pids: [Int32] = []
                    for connection in connections {
                        pids.append(try await connection.query("SELECT pg_backend_pid()", logger: Bench.logger)
                            .decode(Int32.self).first(where: { _ in true }) ?? 0)
                    }
                    let load: @Sendable () async -> WriteLoad.Result = {
                        await WriteLoad.run(connections, duration: round == 0 ? .seconds(1) : duration, seed: UInt64(round)) {
                            connection, client, number, random in
                            try await writes.write(connection, client: client, number: number, random: &random)
                        }
                    }
                    let before = pids.map(Self.cpuTicks).reduce(0, +)
                    guard contestant.isLogical else {
                        let result = await load()
                        return (result, pids.map(Self.cpuTicks).reduce(0, +) - before)
                    }
                    // The decoding session's CPU counts too: it is the capture's.
                    let (result, decoderTicks, behind, drain) = try await Self.withDecoding(contestant, plainURL: plainURL) {
                        await load()
                    }
                    if round > 0 { decoding[contestant, default: []].append((behind, drain)) }
                    if contestant == .logicalImages {
                        // Every write's image reached the outbox: the spike measured a whole capture.
                        let rows = try await connections[0].query("SELECT count(*)::int FROM bench_floor.changes", logger: Bench.logger)
                            .decode(Int.self).first(where: { _ in true }) ?? 0
                        guard rows == result.operations else {
                            throw ValidationError("logical_images: \(rows) images for \(result.operations) writes")
                        }
                    }
                    return (result, pids.map(Self.cpuTicks).reduce(0, +) - before + decoderTicks)
                }
                if let error = result.firstError { throw ValidationError("\(contestant.rawValue) writes failed: \(error)") }
                if round > 0 {
                    totals[contestant, default: .init()] = totals[contestant, default: .init()] + result
                    cpuTicks[contestant, default: 0] += ticks
                }
            }
        }
        if floors { try await Self.prepareFloor(.noTrigger, plainURL: plainURL) }
        try await Self.prepare(.noTrigger, url: plainURL, tenant: tenant, bed: bed, capture: capture)
        var fields: [String: any Sendable] = [
            "clients": clients, "seconds_per_round": seconds, "rounds": rounds,
            "goal_captured_vs_no_trigger": 0.8,
            "goal_uncaptured_vs_no_trigger": 0.95,
        ]
        fields.merge(conditions) { $1 }
        if let base = totals[.noTrigger]?.throughput, base > 0 {
            if let captured = totals[.captured] { fields["captured_vs_no_trigger"] = Bench.round(captured.throughput / base, 3) }
            if let uncaptured = totals[.uncaptured] { fields["uncaptured_vs_no_trigger"] = Bench.round(uncaptured.throughput / base, 3) }
            for contestant in contestants where contestant.onlyWhenNamed {
                fields["\(contestant.rawValue)_vs_no_trigger"] = Bench.round(totals[contestant, default: .init()].throughput / base, 3)
            }
        }
        for (contestant, runs) in decoding {
            fields["\(contestant.rawValue)_behind_mb"] = runs.map { Bench.round($0.behind / 1_048_576, 1) }
            fields["\(contestant.rawValue)_drain_ms"] = runs.map { Bench.round($0.drainMs, 0) }
        }
        func cpuMicroseconds(_ contestant: Contestant) -> Double? {
            let operations = totals[contestant]?.operations ?? 0
            guard operations > 0, let ticks = cpuTicks[contestant], ticks > 0 else { return nil }
            return Double(ticks) * 1_000_000 / Double(sysconf(Int32(_SC_CLK_TCK))) / Double(operations)
        }
        if let base = cpuMicroseconds(.noTrigger) {
            // Inverted: writes per CPU second relative to the anchor, comparable with the throughput ratios.
            if let captured = cpuMicroseconds(.captured) { fields["captured_cpu_vs_no_trigger"] = Bench.round(base / captured, 3) }
            if let uncaptured = cpuMicroseconds(.uncaptured) { fields["uncaptured_cpu_vs_no_trigger"] = Bench.round(base / uncaptured, 3) }
            for contestant in contestants where contestant.onlyWhenNamed {
                if let cpu = cpuMicroseconds(contestant) { fields["\(contestant.rawValue)_cpu_vs_no_trigger"] = Bench.round(base / cpu, 3) }
            }
        }
        for contestant in contestants {
            if let cpu = cpuMicroseconds(contestant) { fields["\(contestant.rawValue)_server_cpu_us_per_write"] = Bench.round(cpu, 1) }
            let result = totals[contestant, default: .init()]
            fields["\(contestant.rawValue)_writes_per_s"] = Bench.round(result.throughput, 0)
            fields["\(contestant.rawValue)_p50_ms"] = Bench.round(WriteLoad.percentileMs(result.latencies, 50))
            fields["\(contestant.rawValue)_p99_ms"] = Bench.round(WriteLoad.percentileMs(result.latencies, 99))
        }
        return fields
    }

    /// The contestants `--only` names (every goal contestant when it names none).
    var chosenContestants: [Contestant] {
        let chosen = only.map { Set($0.split(separator: ",").map(String.init)) }
        return Contestant.allCases.filter { chosen?.contains($0.rawValue) ?? !$0.onlyWhenNamed }
    }

    /// The shops captured besides the written one (`--uncaptured-peers`, from the last shop down).
    var peers: [TenantID] {
        get throws { try (0..<uncapturedPeers).map { try TenantID("\(shops - $0)") } }
    }

    /// Enables capture for the peers (`on`), or removes their capture state and changes and
    /// shrinks the trigger list again.
    func capturePeers(_ bed: MoveBed, on: Bool) async throws {
        let peers = try self.peers
        guard !peers.isEmpty else { return }
        let capture = bed.capture()
        if on {
            for peer in peers { try await capture.enable(peer) }
            return
        }
        try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            let ids = peers.map(\.rawValue)
            try await connection.query("DELETE FROM tenantry.capture_state WHERE tenant_id = ANY(\(ids))", logger: Bench.logger)
            try await connection.query("DELETE FROM tenantry.changes WHERE tenant_id = ANY(\(ids))", logger: Bench.logger)
        }
        try await capture.refreshTriggerList()
    }

    /// The `WHEN` conditions of `customers`' capture triggers as installed (`uncaptured_insert_when`,
    /// `uncaptured_update_when`; "none" when the event has no trigger).
    static func triggerConditions(_ bed: MoveBed) async throws -> [String: any Sendable] {
        try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            var fields: [String: any Sendable] = ["uncaptured_insert_when": "none", "uncaptured_update_when": "none"]
            for try await (name, definition) in try await connection.query("""
                SELECT tgname::text, coalesce(substring(pg_get_triggerdef(oid) FROM 'WHEN \\((.*)\\) EXECUTE'), 'every row')
                FROM pg_trigger WHERE tgrelid = 'customers'::regclass AND tgname IN ('tenantry_capture_insert', 'tenantry_capture_update')
                """, logger: Bench.logger).decode((String, String).self) {
                fields[name == "tenantry_capture_insert" ? "uncaptured_insert_when" : "uncaptured_update_when"] = definition
            }
            return fields
        }
    }

    /// User plus system CPU time of process `pid` so far, in clock ticks (0 when unreadable).
    static func cpuTicks(_ pid: Int32) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        // Fields after the command name: state is field 3, utime 14 and stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13 else { return 0 }
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }

    /// Sets the written tenant's capture state for `contestant` and vacuums what earlier rounds
    /// left (outside the timing); an earlier captured round's changes are removed.
    static func prepare(_ contestant: Contestant, url: PostgresURL, tenant: TenantID, bed: MoveBed, capture: Capture) async throws {
        try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            try await connection.query("DELETE FROM tenantry.capture_state WHERE tenant_id = \(tenant.rawValue)", logger: Bench.logger)
            try await connection.query("DELETE FROM tenantry.changes WHERE tenant_id = \(tenant.rawValue)", logger: Bench.logger)
            try await connection.query("VACUUM ANALYZE tenantry.changes", logger: Bench.logger)
        }
        // After a `bare` round: customers' capture triggers back (install lists the state rows).
        let triggers = try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            try await connection.query(
                "SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'customers'::regclass AND tgname LIKE 'tenantry_capture%'",
                logger: Bench.logger).decode(Int.self).first(where: { _ in true }) ?? 0
        }
        if triggers == 0 { try await capture.install() }
        // The state row is gone: the triggers stop listing the tenant (uncaptured: no function runs).
        try await capture.refreshTriggerList()
        if contestant == .bare {
            for event in ["insert", "update", "delete"] {
                try await MoveBed.execute("DROP TRIGGER IF EXISTS tenantry_capture_\(event) ON customers", on: bed.unifiedURL)
            }
        }
        try await MoveBed.execute("VACUUM ANALYZE customers", on: url)
        try await MoveBed.execute("CHECKPOINT", on: bed.admin)
        if contestant == .captured { try await capture.enable(tenant) }
    }
}
