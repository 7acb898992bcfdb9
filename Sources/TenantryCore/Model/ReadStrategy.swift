/// Where a tenant's reads go (the seed's ReadPathSwitcher): one of five strategies, plus fallback
/// and consistency checking.
public struct ReadPolicy: Sendable, Equatable, Codable {
    /// The five strategies, named as in the seed.
    public struct Strategy: Hashable, Sendable, Codable, CustomStringConvertible {
        /// The strategy's name as the CLI and the environment spell it.
        public let rawValue: String
        private init(rawValue: String) { self.rawValue = rawValue }

        /// Every read from the unified database (the default, safest).
        public static let unified = Strategy(rawValue: "unified")
        /// Every read of a tenant with a database from that database.
        public static let tenant = Strategy(rawValue: "tenant")
        /// A deterministic share of tenants (hash of the id, 0–99, below `percentage`).
        public static let percentage = Strategy(rawValue: "percentage")
        /// The tenants in `shopIDs`.
        public static let shopList = Strategy(rawValue: "shop-list")
        /// The canary tenants in `canaryIDs`.
        public static let canary = Strategy(rawValue: "canary")

        /// All strategies.
        public static let all: [Strategy] = [.unified, .tenant, .percentage, .shopList, .canary]

        /// Parses a name; `nil` when unknown.
        public init?(_ name: String) {
            guard let match = Self.all.first(where: { $0.rawValue == name }) else { return nil }
            self = match
        }

        public var description: String { rawValue }

        public init(from decoder: any Decoder) throws {
            let name = try decoder.singleValueContainer().decode(String.self)
            guard let strategy = Strategy(name) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown strategy"))
            }
            self = strategy
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }
    }

    /// The strategy.
    public var strategy: Strategy = .unified
    /// For `percentage`: 0–100.
    public var percentage: Int = 0
    /// For `shop-list`.
    public var shopIDs: [TenantID] = []
    /// For `canary`.
    public var canaryIDs: [TenantID] = []
    /// Serve a failed tenant read from the unified database.
    public var enableFallback: Bool = true
    /// Shadow-read a sample on the other side and compare.
    public var verifyConsistency: Bool = false
    /// Log each difference found by consistency verification.
    public var logInconsistencies: Bool = true
    /// The share of reads shadow-read when `verifyConsistency` is on (0–1).
    public var verifySampleRate: Double = 0.01

    /// The default policy: everything from unified, fallback on.
    public init() {}

    /// Whether a read of `tenant` goes to its own database (when it has one).
    public func readsFromTenantDatabase(_ tenant: TenantID) -> Bool {
        switch strategy {
        case .unified: false
        case .tenant: true
        case .percentage: Self.bucket(of: tenant) < percentage
        case .shopList: shopIDs.contains(tenant)
        case .canary: canaryIDs.contains(tenant)
        default: false
        }
    }

    /// A tenant's stable bucket, 0–99 (FNV-1a of the id).
    public static func bucket(of tenant: TenantID) -> Int {
        Int(StableHash.fnv1a64(tenant.rawValue) % 100)
    }

    /// Checks the fields a strategy needs.
    public func validate() throws(TenantryError) {
        guard (0...100).contains(percentage) else {
            throw TenantryError(code: .invalidArgument, message: "percentage must be from 0 to 100")
        }
        guard (0...1).contains(verifySampleRate) else {
            throw TenantryError(code: .invalidArgument, message: "the verify sample rate must be from 0 to 1")
        }
        if strategy == .shopList, shopIDs.isEmpty {
            throw TenantryError(code: .invalidArgument, message: "the shop-list strategy needs at least one shop id")
        }
        if strategy == .canary, canaryIDs.isEmpty {
            throw TenantryError(code: .invalidArgument, message: "the canary strategy needs at least one canary shop id")
        }
    }
}
