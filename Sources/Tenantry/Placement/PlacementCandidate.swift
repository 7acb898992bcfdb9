import Foundation
import TenantryCore

/// A server a new tenant database may go to, with its load under the placement lock (pure: the
/// rule is unit tested without PostgreSQL).
public struct PlacementCandidate: Sendable, Equatable {
    /// The server.
    public var name: String
    /// Its connection cap.
    public var maxConnections: Int
    /// Its byte budget (`nil`: none).
    public var maxBytes: Int64?
    /// Tenant databases it holds (placed ones included).
    public var tenants: Int
    /// Their bytes (measured, or the estimate for ones not measured).
    public var bytes: Int64
    /// Their open connections.
    public var connections: Int
    /// What one more tenant database is expected to take.
    public var estimate: Int64

    /// Creates a candidate.
    public init(name: String, maxConnections: Int, maxBytes: Int64?, tenants: Int, bytes: Int64, connections: Int, estimate: Int64) {
        self.name = name
        self.maxConnections = maxConnections
        self.maxBytes = maxBytes
        self.tenants = tenants
        self.bytes = bytes
        self.connections = connections
        self.estimate = estimate
    }

    /// What a new tenant database is expected to take when nothing was measured yet.
    public static let defaultEstimate: Int64 = 8 * 1024 * 1024

    /// Whether one more tenant database fits: its bytes stay within the budget and the
    /// connections are under the cap.
    public var hasRoom: Bool {
        if let maxBytes, bytes + estimate > maxBytes { return false }
        return connections < maxConnections
    }

    /// How full it is, for the error when none has room.
    public var fullness: String {
        var parts = ["\(name) holds \(ByteSize.format(bytes))" + (maxBytes.map { " of its \(ByteSize.format($0)) budget" } ?? "")]
        parts.append("\(connections) of \(maxConnections) connections")
        return parts.joined(separator: ", ")
    }

    /// The candidate with room and the lowest load: bytes ÷ budget when every candidate has a
    /// budget, else bytes; ties go to fewer connections, fewer tenants, then the name. `nil` when
    /// none has room.
    public static func least(_ candidates: [PlacementCandidate]) -> PlacementCandidate? {
        let budgets = candidates.allSatisfy { $0.maxBytes != nil }
        let load = { (candidate: PlacementCandidate) -> Double in
            budgets ? Double(candidate.bytes) / Double(candidate.maxBytes ?? 1) : Double(candidate.bytes)
        }
        return candidates.filter(\.hasRoom).min {
            (load($0), $0.connections, $0.tenants, $0.name) < (load($1), $1.connections, $1.tenants, $1.name)
        }
    }

    /// The candidates from `measure` (the servers that accept tenants) and the catalog's
    /// placements under the lock (`placed`: server and tenant id of every placed tenant but the
    /// new one): a placed tenant that was measured on that server counts as measured, any other
    /// as the average measured tenant database (``defaultEstimate`` when none was measured).
    public static func make(_ measure: FleetMeasure, placed: [(server: String, tenant: String)]) -> [PlacementCandidate] {
        let measured = Dictionary(measure.tenants.map { ("\($0.server)/\($0.id.rawValue)", $0) }, uniquingKeysWith: { a, _ in a })
        let sizes = measure.tenants.map(\.bytes)
        let estimate = sizes.isEmpty ? defaultEstimate : sizes.reduce(0, +) / Int64(sizes.count)
        return measure.servers.filter(\.acceptsTenants).map { server in
            var candidate = PlacementCandidate(
                name: server.name, maxConnections: server.maxConnections, maxBytes: server.maxBytes, tenants: 0, bytes: 0,
                connections: 0, estimate: estimate)
            for placement in placed where placement.server == server.name {
                candidate.tenants += 1
                if let tenant = measured["\(server.name)/\(placement.tenant)"] {
                    candidate.bytes += tenant.bytes
                    candidate.connections += tenant.connections
                } else {
                    candidate.bytes += estimate
                }
            }
            return candidate
        }
    }
}
