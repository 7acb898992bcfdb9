import Foundation
import TenantryCore

extension Operations {
    /// A change of the read policy: the strategy, and the fields to change (`nil` keeps the stored value).
    public struct ReadPolicyChange: Sendable, Codable, Equatable {
        /// The new strategy.
        public var strategy: ReadPolicy.Strategy
        /// For `percentage`: 0–100.
        public var percentage: Int?
        /// For `shop-list`.
        public var shopIDs: [TenantID]?
        /// For `canary`.
        public var canaryIDs: [TenantID]?
        /// Serve a failed tenant read from unified.
        public var enableFallback: Bool?
        /// Shadow-read a sample and compare.
        public var verifyConsistency: Bool?
        /// The share of reads compared (0–1).
        public var verifySampleRate: Double?

        /// A change to `strategy`, other fields kept.
        public init(strategy: ReadPolicy.Strategy) { self.strategy = strategy }

        /// Refuses fields that do not fit the strategy, missing ones it needs, and values out of range.
        public func validate() throws(TenantryError) {
            func refuse(_ message: String) -> TenantryError { TenantryError(code: .invalidArgument, message: message) }
            if let percentage, !(0...100).contains(percentage) { throw refuse("percentage must be from 0 to 100 (got \(percentage))") }
            if let verifySampleRate, !(0...1).contains(verifySampleRate) {
                throw refuse("the sample rate must be from 0 to 1 (got \(verifySampleRate))")
            }
            if percentage != nil, strategy != .percentage { throw refuse("percentage applies to the percentage strategy only") }
            if shopIDs != nil, strategy != .shopList { throw refuse("shop ids apply to the shop-list strategy only") }
            if canaryIDs != nil, strategy != .canary { throw refuse("canary ids apply to the canary strategy only") }
            if strategy == .percentage, percentage == nil { throw refuse("the percentage strategy needs a percentage (0-100)") }
            if strategy == .shopList, shopIDs?.isEmpty ?? true { throw refuse("the shop-list strategy needs shop ids") }
            if strategy == .canary, canaryIDs?.isEmpty ?? true { throw refuse("the canary strategy needs canary ids") }
        }
    }

    /// What a read-policy change did.
    public struct ReadsReport: Sendable, Codable, Equatable {
        /// The policy now.
        public var policy: ReadPolicy
        /// The policy before.
        public var previous: ReadPolicy
        /// Listed tenants that have no database yet (their reads stay on unified until they have one).
        public var withoutDatabase: [TenantID]
    }

    /// Sets the read policy (the seeds' activate-reads; `tenantry reads`): stored in the catalog,
    /// every router follows within a second. Audited as `reads.set`.
    public func setReads(_ change: ReadPolicyChange) async throws -> ReadsReport {
        try change.validate()
        let previous = try await catalog.readPolicy()
        var policy = previous
        policy.strategy = change.strategy
        if let value = change.percentage { policy.percentage = value }
        if let value = change.shopIDs { policy.shopIDs = value }
        if let value = change.canaryIDs { policy.canaryIDs = value }
        if let value = change.enableFallback { policy.enableFallback = value }
        if let value = change.verifyConsistency { policy.verifyConsistency = value }
        if let value = change.verifySampleRate { policy.verifySampleRate = value }
        try await catalog.setReadPolicy(policy)
        try await catalog.audit(actor: actor, action: "reads.set", outcome: .ok, detail: Self.auditDetail(policy, previous: previous))
        let known = Set(try await catalog.tenants().filter { $0.databaseName != nil }.map(\.id))
        let listed = (change.shopIDs ?? []) + (change.canaryIDs ?? [])
        return ReadsReport(policy: policy, previous: previous, withoutDatabase: listed.filter { !known.contains($0) })
    }

    /// Every read back to the unified database at once (the seeds' rollback-reads). Lists and
    /// percentages stay stored. Audited as `reads.rollback`.
    public func rollbackReads() async throws -> ReadsReport {
        let previous = try await catalog.readPolicy()
        var policy = previous
        policy.strategy = .unified
        try await catalog.setReadPolicy(policy)
        try await catalog.audit(
            actor: actor, action: "reads.rollback", outcome: .ok, detail: Self.auditDetail(policy, previous: previous))
        return ReadsReport(policy: policy, previous: previous, withoutDatabase: [])
    }

    /// The audit detail of a read-policy change.
    public static func auditDetail(_ policy: ReadPolicy, previous: ReadPolicy) -> [String: String] {
        [
            "strategy": policy.strategy.rawValue, "previous": previous.strategy.rawValue,
            "percentage": "\(policy.percentage)", "shops": policy.shopIDs.map(\.rawValue).joined(separator: ","),
            "canary": policy.canaryIDs.map(\.rawValue).joined(separator: ","),
            "fallback": "\(policy.enableFallback)", "verify_consistency": "\(policy.verifyConsistency)",
        ]
    }
}
