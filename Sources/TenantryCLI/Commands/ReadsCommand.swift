import ArgumentParser
import Tenantry
import TenantryCore

/// `tenantry reads <strategy>`: where tenants' reads go (the seed's ReadPathSwitcher), stored in
/// the catalog so that every router follows within a second.
struct ReadsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reads",
        abstract: "Set the read strategy: unified, tenant, percentage, shop-list or canary.",
        discussion: """
            The read policy lives in the catalog; every router follows a change within a second \
            (LISTEN/NOTIFY). Only tenants whose database holds their data (phase syncing or later) \
            read from it; dedicated tenants always do. Options not given keep their stored values. \
            'tenantry rollback-reads' sends every read back to unified at once.
            """)

    @Argument(help: "unified, tenant, percentage, shop-list or canary.") var strategy: String
    @Option(help: "percentage: the share of tenants (0-100) reading from their database, by a stable hash of the id.")
    var percentage: Int?
    @Option(help: "shop-list: the tenant ids reading from their database, comma-separated.") var shops: String?
    @Option(help: "canary: the canary tenant ids, comma-separated.") var canary: String?
    @Flag(inversion: .prefixedNo, help: "Serve a failed tenant read from the unified database.") var fallback: Bool?
    @Flag(inversion: .prefixedNo, help: "Shadow-read a sample of reads on the other side and compare the results.")
    var verifyConsistency: Bool?
    @Option(help: "The share of reads compared when verifying consistency (0-1).") var sampleRate: Double?
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            guard let chosen = ReadPolicy.Strategy(strategy) else {
                throw TenantryError(
                    code: .invalidArgument,
                    message: "unknown read strategy '\(strategy.prefix(40))': use one of "
                        + ReadPolicy.Strategy.all.map(\.rawValue).joined(separator: ", "))
            }
            try checkOptions(for: chosen)
            let shopIDs = try shops.map { try parseTenantIDs([$0]) }
            let canaryIDs = try canary.map { try parseTenantIDs([$0]) }
            var change = Operations.ReadPolicyChange(strategy: chosen)
            change.percentage = percentage
            change.shopIDs = shopIDs
            change.canaryIDs = canaryIDs
            change.enableFallback = fallback
            change.verifyConsistency = verifyConsistency
            change.verifySampleRate = sampleRate
            let requested = change
            let report = try await Services.with(context) { try await $0.operations.setReads(requested) }
            let (policy, previous, unknown) = (report.policy, report.previous, report.withoutDatabase)
            for id in unknown {
                Output.note("tenant \(id) has no database yet: its reads stay on unified until it has one")
            }
            if json { try Output.json(policy); return }
            Output.line("reads: \(Self.describe(policy)) (was \(previous.strategy)); every router follows within a second")
        }
    }

    /// Refuses options that do not fit the strategy, and values out of range.
    private func checkOptions(for chosen: ReadPolicy.Strategy) throws {
        func refuse(_ message: String) -> TenantryError { TenantryError(code: .invalidArgument, message: message) }
        if let percentage, !(0...100).contains(percentage) {
            throw refuse("--percentage must be from 0 to 100 (got \(percentage))")
        }
        if let sampleRate, !(0...1).contains(sampleRate) {
            throw refuse("--sample-rate must be from 0 to 1 (got \(sampleRate))")
        }
        if percentage != nil, chosen != .percentage { throw refuse("--percentage applies to the percentage strategy only") }
        if shops != nil, chosen != .shopList { throw refuse("--shops applies to the shop-list strategy only") }
        if canary != nil, chosen != .canary { throw refuse("--canary applies to the canary strategy only") }
        if chosen == .percentage, percentage == nil { throw refuse("the percentage strategy needs --percentage N (0-100)") }
        if chosen == .shopList, shops == nil { throw refuse("the shop-list strategy needs --shops ID,ID,…") }
        if chosen == .canary, canary == nil { throw refuse("the canary strategy needs --canary ID,ID,…") }
    }

    /// A one-line description of a policy.
    static func describe(_ policy: ReadPolicy) -> String {
        var text = policy.strategy.rawValue
        switch policy.strategy {
        case .percentage: text += " \(policy.percentage)%"
        case .shopList: text += " [\(policy.shopIDs.map(\.rawValue).joined(separator: ","))]"
        case .canary: text += " [\(policy.canaryIDs.map(\.rawValue).joined(separator: ","))]"
        default: break
        }
        text += ", fallback \(policy.enableFallback ? "on" : "off")"
        text += policy.verifyConsistency
            ? ", consistency checks on (\(policy.verifySampleRate * 100)% of reads)" : ", consistency checks off"
        return text
    }
}

/// `tenantry rollback-reads`: every read back to the unified database at once.
struct RollbackReadsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback-reads",
        abstract: "Send every read back to the unified database at once (strategy unified; audited).",
        discussion: """
            Lists and percentages stay stored, so 'tenantry reads' can resume later. Tenants already \
            dedicated (cut over) keep reading their own database until their move is rolled back.
            """)

    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let report = try await Services.with(context) { try await $0.operations.rollbackReads() }
            let (policy, previous) = (report.policy, report.previous)
            if json { try Output.json(policy); return }
            Output.line("reads: unified (was \(ReadsCommand.describe(previous))); every router follows within a second")
        }
    }
}
