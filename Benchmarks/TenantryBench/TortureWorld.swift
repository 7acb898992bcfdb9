import EmbeddedPostgres
import Foundation
import HandyShop
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore

/// Everything a torture run works with: the HandyShop bed, the catalog, the router the load goes
/// through, the `tenantry` child runner with its environment, the writers and loads of every round.
final class TortureWorld: Sendable {
    let bed: MoveBed
    let catalog: Catalog
    let router: TenantRouter
    let child: TenantryChild
    let directory: String
    let writers: TortureWriters
    /// Our own server (restartable), `nil` with `--database-url`.
    let server: EmbeddedPostgres?
    /// The second server (registered as ``secondServer``), where tenant databases are moved to.
    let second: EmbeddedPostgres?
    /// Admin logins to both servers (the catalog's registered servers).
    let servers: ServerDirectory
    let estimates = NIOLockedValueBox<[TortureOperation: Double]>([:])
    /// Every round's HandyShop load, checked again after every later round.
    let loads = NIOLockedValueBox<[HandyShopLoad]>([])
    /// Per tenant, the archive of its last retire-legacy.
    let archives = NIOLockedValueBox<[TenantID: String]>([:])
    /// What the run is doing now, and since when (the watchdog names a step that hangs).
    let currentStep = NIOLockedValueBox<(String, ContinuousClock.Instant)>(("setup", .now))
    /// Reverse dead letters of colliding ids dropped (`dlq discard`) after their rows were removed.
    let discardedLetters = NIOLockedValueBox(0)
    /// Shops left alone after an unrecoverable round (no more operations; their copies are not
    /// compared again, their acknowledged writes still are).
    let quarantined = NIOLockedValueBox<Set<TenantID>>([])
    /// `tenantry move verify` runs of the checks (one per active server move per round).
    let verifiedMoves = NIOLockedValueBox(0)
    private let relayStop = NIOLockedValueBox(false)
    private let relayChild = NIOLockedValueBox<TenantryChild.Running?>(nil)

    init(bed: MoveBed, catalog: Catalog, router: TenantRouter, child: TenantryChild, directory: String, writers: TortureWriters,
         server: EmbeddedPostgres?, second: EmbeddedPostgres?, servers: ServerDirectory) {
        self.bed = bed
        self.catalog = catalog
        self.router = router
        self.child = child
        self.directory = directory
        self.writers = writers
        self.server = server
        self.second = second
        self.servers = servers
    }

    /// Records the step the run is at.
    func step(_ name: String) { currentStep.withLockedValue { $0 = (name, .now) } }

    /// Prints the step every minute while one step takes longer than a minute.
    func watchdog() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(60))
            let (name, since) = currentStep.withLockedValue { $0 }
            let seconds = (ContinuousClock.now - since).totalSeconds
            if seconds > 60 { Bench.note("    (still at: \(name), for \(Int(seconds)) s)") }
        }
    }

    /// The environment of every `tenantry` child: the bed's unified database and naming.
    static func environment(_ bed: MoveBed, key: EncryptionKey) -> [String: String] {
        [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "DATABASE_URL": bed.unifiedURL.urlStringWithPassword,
            "TENANT_ENCRYPTION_KEY": key.hex,
            "TENANTRY_DATABASE_TEMPLATE": MoveBed.naming.databaseTemplate,
            "TENANTRY_ROLE_TEMPLATE": MoveBed.naming.roleTemplate,
            "TENANTRY_TEMPLATE_DATABASE": MoveBed.naming.templateDatabase,
            "TENANTRY_LOG_LEVEL": "error",
        ]
    }

    /// Runs a setup command, which must succeed.
    func setup(_ arguments: [String]) async throws {
        let outcome = try await child.run(arguments)
        guard outcome.succeeded else {
            throw TortureError("setup: tenantry \(arguments.joined(separator: " ")) failed (\(outcome.status)): \(outcome.output.suffix(400))")
        }
        // The setup's runs are the first measure of each command's usual duration.
        let name = arguments.first == "move" && arguments.count > 1 ? "move-" + arguments[1] : arguments.first
        if let operation = name.flatMap(TortureOperation.init(rawValue:)) { record(operation, outcome) }
    }

    /// Brings the shops to a spread of phases, so that even a short run meets every kind of
    /// operation: by index modulo 4 syncing, dedicated, provisioned, not provisioned (provisioning
    /// places each on the less loaded server); the first dedicated shop is moving to the other
    /// server (`move start`), so the server-move verbs apply from the first round.
    func spreadPhases() async throws {
        try await setup(["schema", "derive"])
        let shops = bed.shops
        let provisioned = shops.enumerated().filter { $0.offset % 4 != 3 }.map(\.element.rawValue)
        let copied = shops.enumerated().filter { $0.offset % 4 < 2 }.map(\.element.rawValue)
        let dedicated = shops.enumerated().filter { $0.offset % 4 == 1 }.map(\.element.rawValue)
        if !provisioned.isEmpty { try await setup(["provision"] + provisioned) }
        if !copied.isEmpty { try await setup(["migrate-data", "--tenant"] + copied) }
        if !dedicated.isEmpty {
            try await setup(["sync", "run", "--until-caught-up"])
            try await setup(["cutover", "--tenant"] + dedicated + ["--max-pause", "2s"])
            if second != nil {
                let tenant = try TenantID(dedicated[0])
                try await setup(["move", "start", "--tenant", tenant.rawValue, "--to", try await situation(tenant).moveTarget])
            }
        }
    }

    /// `tenantry sync run` as a service, restarted whenever it ends (a killed child, a server
    /// restart), like a process supervisor would.
    func superviseRelay() async {
        while !relayStop.withLockedValue({ $0 }) {
            guard let running = try? child.start(["sync", "run"]) else { return }
            relayChild.withLockedValue { $0 = running }
            _ = await running.wait()
            _ = await running.finish()
            relayChild.withLockedValue { $0 = nil }
            try? await Task.sleep(for: .milliseconds(300))
        }
    }

    func stopRelay() {
        relayStop.withLockedValue { $0 = true }
        relayChild.withLockedValue { $0 }?.kill()
    }

    /// Customer ids of the other shops, per shop (the colliding writers' targets).
    static func foreignIDs(_ bed: MoveBed) async throws -> [TenantID: [Int64]] {
        let rows = try await Database.withConnection(bed.unifiedURL, logger: Bench.logger) { connection in
            var rows: [(Int64, Int64)] = []
            for try await row in try await connection.query(
                "SELECT shop_id, id FROM customers ORDER BY id", logger: Bench.logger).decode((Int64, Int64).self) {
                rows.append(row)
            }
            return rows
        }
        var result: [TenantID: [Int64]] = [:]
        for shop in bed.shops {
            result[shop] = Array(rows.filter { String($0.0) != shop.rawValue }.map(\.1).prefix(60))
        }
        return result
    }

    /// The database holding `tenant`'s data now (`nil`: the unified database): its tenant database
    /// on the server the catalog's placement names, once it is dedicated.
    func home(_ tenant: TenantID) async throws -> PostgresURL? {
        let situation = try await situation(tenant)
        return situation.placement == .dedicated && situation.provisioned ? try databaseURL(situation) : nil
    }
}
