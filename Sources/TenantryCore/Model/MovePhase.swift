/// A tenant's phase in an online move, in order:
/// `shared → provisioned → copying → syncing → reads_switched → cutover → dedicated → retired`.
/// Every phase can roll back to `shared`.
public struct MovePhase: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    /// The phase's name as stored in the catalog.
    public let rawValue: String
    private init(rawValue: String) { self.rawValue = rawValue }

    /// Data only in the unified database.
    public static let shared = MovePhase(rawValue: "shared")
    /// A tenant database exists (empty).
    public static let provisioned = MovePhase(rawValue: "provisioned")
    /// Capture is on and the snapshot copy runs.
    public static let copying = MovePhase(rawValue: "copying")
    /// The relay applies captured changes to the tenant database.
    public static let syncing = MovePhase(rawValue: "syncing")
    /// Reads are served from the tenant database (per the read policy).
    public static let readsSwitched = MovePhase(rawValue: "reads_switched")
    /// Writes are paused while the fence is held exclusively.
    public static let cutover = MovePhase(rawValue: "cutover")
    /// Writes go to the tenant database; reverse sync keeps unified current.
    public static let dedicated = MovePhase(rawValue: "dedicated")
    /// The tenant's rows are gone from the unified database.
    public static let retired = MovePhase(rawValue: "retired")

    /// All phases in order.
    public static let all: [MovePhase] = [.shared, .provisioned, .copying, .syncing, .readsSwitched, .cutover, .dedicated, .retired]

    /// Parses a stored name.
    public init?(_ name: String) {
        guard let match = Self.all.first(where: { $0.rawValue == name }) else { return nil }
        self = match
    }

    /// The position in ``all``.
    public var order: Int { Self.all.firstIndex(of: self) ?? 0 }

    public var description: String { rawValue }
    public static func < (lhs: MovePhase, rhs: MovePhase) -> Bool { lhs.order < rhs.order }

    /// Whether a move may go from this phase to `next`: forward one step (or from `syncing`
    /// straight to `cutover`), back from `reads_switched` to `syncing`, from `retired` back to
    /// `dedicated` (restore-legacy), or back to `shared`.
    public func canTransition(to next: MovePhase) -> Bool {
        if next == .shared { return true }
        if next.order == order + 1 { return true }
        if self == .syncing, next == .cutover { return true }
        if self == .readsSwitched, next == .syncing { return true }
        if self == .retired, next == .dedicated { return true }  // restore-legacy
        return false
    }

    public init(from decoder: any Decoder) throws {
        let name = try decoder.singleValueContainer().decode(String.self)
        guard let phase = MovePhase(name) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown phase \(name)"))
        }
        self = phase
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
