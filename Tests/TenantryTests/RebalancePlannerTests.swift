import Foundation
import Tenantry
import TenantryCore
import Testing

/// The planner, placement's rule and sizes: pure, no database.
@Suite("rebalance planner", .timeLimit(.minutes(1)))
struct RebalancePlannerTests {
    static let gb: Int64 = 1024 * 1024 * 1024

    func tenant(_ id: String, _ server: String, gb: Double, connections: Int = 0, pinned: String? = nil) throws -> RebalancePlanner.Tenant {
        RebalancePlanner.Tenant(
            id: try TenantID(id), server: server, bytes: Int64(gb * Double(Self.gb)), connections: connections, pinned: pinned)
    }

    @Test("a server over its byte budget sheds the smallest tenant that brings it under, and the move says why")
    func overBudget() throws {
        let servers = [
            RebalancePlanner.Server(name: "a", maxConnections: 50, maxBytes: 10 * Self.gb),
            RebalancePlanner.Server(name: "b", maxConnections: 50, maxBytes: 10 * Self.gb),
        ]
        let tenants = [try tenant("1", "a", gb: 6), try tenant("2", "a", gb: 4), try tenant("3", "a", gb: 2.1), try tenant("4", "b", gb: 2)]
        let plan = RebalancePlanner().plan(servers: servers, tenants: tenants)
        let first = try #require(plan.moves.first)
        #expect(first.tenant == (try TenantID("3")) && first.from == "a" && first.to == "b")
        #expect(first.reason == "server a is over its byte budget (12.1 GB of 10 GB)")
        // Then evening: a 100% → 60%, b 41% → 81% of their budgets (tenant 1 would not fit on b).
        #expect(plan.moves.count == 2)
        #expect(plan.moves.last?.tenant == (try TenantID("2")) && plan.moves.last?.to == "b")
        #expect(plan.moves.last?.reason == "evens bytes: a 100% → 60%, b 41% → 81% of their byte budgets")
        #expect(plan.unresolved.isEmpty && plan.fillIsOfBudget)
        let a = try #require(plan.servers.first { $0.server.name == "a" })
        #expect(a.before.bytes > 10 * Self.gb && a.after.bytes <= 10 * Self.gb && a.after.tenants == 1)
    }

    @Test("no room anywhere: the plan keeps the server over budget and says so")
    func overBudgetWithoutRoom() throws {
        let servers = [
            RebalancePlanner.Server(name: "a", maxConnections: 50, maxBytes: 5 * Self.gb),
            RebalancePlanner.Server(name: "b", maxConnections: 50, maxBytes: 5 * Self.gb),
        ]
        let plan = RebalancePlanner().plan(servers: servers, tenants: [try tenant("1", "a", gb: 6), try tenant("2", "b", gb: 1)])
        #expect(plan.moves.isEmpty)
        #expect(plan.unresolved == ["server a is over its byte budget (6 GB of 5 GB): no tenant on it fits on another server"])
    }

    @Test("a server over its connection cap moves the tenant with enough connections")
    func overConnectionCap() throws {
        let servers = [RebalancePlanner.Server(name: "a", maxConnections: 10), RebalancePlanner.Server(name: "b", maxConnections: 10)]
        let tenants = [try tenant("1", "a", gb: 1, connections: 6), try tenant("2", "a", gb: 1, connections: 5), try tenant("3", "b", gb: 2)]
        let plan = RebalancePlanner().plan(servers: servers, tenants: tenants)
        #expect(plan.moves.first?.tenant == (try TenantID("2")))
        #expect(plan.moves.first?.reason == "server a is over its connection cap (11 of 10)")
        #expect(plan.servers.allSatisfy { $0.after.connections <= $0.server.maxConnections })
    }

    @Test("even spread without budgets: the biggest gain first, within the tolerance nothing moves")
    func evening() throws {
        let servers = [RebalancePlanner.Server(name: "a", maxConnections: 50), RebalancePlanner.Server(name: "b", maxConnections: 50)]
        let skewed = [try tenant("1", "a", gb: 3), try tenant("2", "a", gb: 2), try tenant("3", "a", gb: 2), try tenant("4", "b", gb: 1)]
        let plan = RebalancePlanner().plan(servers: servers, tenants: skewed)
        #expect(plan.moves.map(\.tenant.rawValue) == ["1"])
        #expect(plan.moves.first?.reason == "evens bytes: a 88% → 50%, b 13% → 50% of the bytes")
        #expect(!plan.fillIsOfBudget)

        let close = [try tenant("1", "a", gb: 2.1), try tenant("2", "b", gb: 1.9)]
        #expect(RebalancePlanner().plan(servers: servers, tenants: close).moves.isEmpty)
    }

    @Test("deterministic, each tenant moves at most once, and evening is bounded")
    func deterministicAndBounded() throws {
        let servers = ["a", "b", "c"].map { RebalancePlanner.Server(name: $0, maxConnections: 50) }
        var tenants: [RebalancePlanner.Tenant] = []
        for index in 1...12 { tenants.append(try tenant("\(index)", "a", gb: Double(index % 4 + 1))) }
        let planner = RebalancePlanner(options: RebalancePlanner.Options(maxMoves: 3))
        let plan = planner.plan(servers: servers, tenants: tenants)
        #expect(plan.moves.count == 3)
        #expect(Set(plan.moves.map(\.tenant)).count == plan.moves.count)
        #expect(planner.plan(servers: servers.reversed(), tenants: tenants.reversed()) == plan)

        let unbounded = RebalancePlanner().plan(servers: servers, tenants: tenants)
        #expect(Set(unbounded.moves.map(\.tenant)).count == unbounded.moves.count)
        let fills = unbounded.servers.compactMap(\.after.fill)
        #expect((fills.max() ?? 0) - (fills.min() ?? 0) <= 0.10, "\(fills)")
    }

    @Test("a fleet of 2,000 tenants on 5 servers: the plan is bounded, moves each tenant once, and brings the spread in")
    func largeFleet() throws {
        let servers = (1...5).map { RebalancePlanner.Server(name: "s\($0)", maxConnections: 10_000, maxBytes: 2_000 * Self.gb) }
        var tenants: [RebalancePlanner.Tenant] = []
        for index in 1...2000 {
            // Skewed: s1 holds most of the fleet.
            let server = index % 4 == 0 ? "s\(index % 5 + 1)" : "s1"
            tenants.append(try tenant("\(index)", server, gb: Double(index % 7 + 1) / 10))
        }
        let plan = RebalancePlanner(options: RebalancePlanner.Options(maxMoves: 50)).plan(servers: servers, tenants: tenants)
        #expect(plan.moves.count == 50)
        #expect(Set(plan.moves.map(\.tenant)).count == 50)
        let spread = { (loads: [Double]) in (loads.max() ?? 0) - (loads.min() ?? 0) }
        #expect(spread(plan.servers.compactMap(\.after.fill)) < spread(plan.servers.compactMap(\.before.fill)))
    }

    @Test("a drain moves every tenant, largest first, within the other servers' budgets; pinned or homeless ones are named")
    func drain() throws {
        let servers = [
            RebalancePlanner.Server(name: "a", maxConnections: 50, maxBytes: 10 * Self.gb, draining: true),
            RebalancePlanner.Server(name: "b", maxConnections: 50, maxBytes: 10 * Self.gb),
            RebalancePlanner.Server(name: "c", maxConnections: 50, maxBytes: 10 * Self.gb),
            RebalancePlanner.Server(name: "default", maxConnections: 50, acceptsTenants: false),
        ]
        let tenants = [try tenant("1", "a", gb: 1), try tenant("2", "a", gb: 5), try tenant("3", "a", gb: 3), try tenant("4", "b", gb: 2)]
        let plan = RebalancePlanner(options: .drainOnly).plan(servers: servers, tenants: tenants)
        #expect(plan.moves.map(\.tenant.rawValue) == ["2", "3", "1"])
        #expect(plan.moves.map(\.to) == ["c", "b", "b"])  // tenant 1: a tie at 60%, the lower name
        #expect(plan.moves.allSatisfy { $0.reason == "server a is draining" })
        #expect(plan.unresolved.isEmpty)
        #expect(plan.servers.first { $0.server.name == "a" }?.after.tenants == 0)

        let crowded = tenants + [try tenant("5", "a", gb: 9.5), try tenant("6", "a", gb: 1, pinned: "a server move to b is moving")]
        let stuck = RebalancePlanner(options: .drainOnly).plan(servers: servers, tenants: crowded)
        #expect(stuck.unresolved.contains { $0 == "no server has room for tenant 1 (1 GB, 0 connection(s)) leaving draining server a" },
                "\(stuck.unresolved)")
        #expect(stuck.unresolved.contains("tenant 6 cannot leave draining server a: a server move to b is moving"))
        #expect(!stuck.moves.contains { $0.to == "default" })
    }

    @Test("placement: the least loaded server with room; none with room is nil")
    func placement() {
        func candidate(_ name: String, bytes: Int64, budget: Int64?, connections: Int = 0, cap: Int = 50) -> PlacementCandidate {
            PlacementCandidate(
                name: name, maxConnections: cap, maxBytes: budget, tenants: 1, bytes: bytes, connections: connections, estimate: Self.gb)
        }
        // b is emptier but full for one more database; c has room but is fuller than a relative to its budget.
        let chosen = PlacementCandidate.least([
            candidate("a", bytes: 4 * Self.gb, budget: 10 * Self.gb), candidate("b", bytes: 1 * Self.gb, budget: 1 * Self.gb),
            candidate("c", bytes: 3 * Self.gb, budget: 5 * Self.gb),
        ])
        #expect(chosen?.name == "a")
        #expect(PlacementCandidate.least([candidate("a", bytes: 0, budget: nil, connections: 50)]) == nil)
        #expect(PlacementCandidate.least([candidate("b", bytes: 2, budget: nil), candidate("a", bytes: 2, budget: nil)])?.name == "a")
    }

    @Test("sizes parse in one place (10GB, 500MB, 1.5 TB) and print like pg_size_pretty; bad input is one clear error")
    func sizes() throws {
        #expect(try ByteSize.parse("10GB") == 10 * Self.gb)
        #expect(try ByteSize.parse("500MB") == 500 * 1024 * 1024)
        #expect(try ByteSize.parse("1.5 TB") == 1536 * Self.gb)
        #expect(try ByteSize.parse("4096") == 4096)
        #expect(try ByteSize.parse("2kB") == 2048)
        for bad in ["ten", "-5GB", "0", "5XB", "", "GB", "1e30TB"] {
            #expect(throws: TenantryError.self, "\(bad)") { try ByteSize.parse(bad, what: "--max-bytes") }
        }
        #expect(ByteSize.format(12 * Self.gb + Self.gb / 10) == "12.1 GB")
        #expect(ByteSize.format(10 * Self.gb) == "10 GB")
        #expect(ByteSize.format(512) == "512 B")
        #expect(ByteSize.format(7_864_320) == "7.5 MB")
    }
}
