import Testing
import TenantryCore

@Suite("Tenant ids, identifiers, phases and read policy")
struct TenantIDTests {
    @Test("valid ids", arguments: ["1", "42", "a", "shop_7", "0_", String(repeating: "9", count: 40)])
    func valid(_ id: String) throws {
        #expect(try TenantID(id).rawValue == id)
    }

    @Test("invalid ids are one clear error that quotes them safely",
          arguments: ["", "1;drop database x", "../a", "ÄÖ", "Shop1", "_a", "a-b", "a b", "a\nb", String(repeating: "1", count: 41)])
    func invalid(_ id: String) {
        let error = #expect(throws: TenantryError.self) { try TenantID(id) }
        #expect(error?.code == .invalidTenantID)
        #expect(error?.message.contains("is invalid") == true)
        #expect(error?.message.contains("\n") == false)
    }

    @Test("numeric ids sort numerically")
    func sorting() throws {
        let ids = try ["10", "2", "1", "b", "a"].map { try TenantID($0) }.sorted()
        #expect(ids.map(\.rawValue) == ["1", "2", "10", "a", "b"])
    }

    @Test("identifiers are quoted; made names are validated")
    func identifiers() throws {
        #expect(try SQLIdentifier.quoted("Order \"x\"") == "\"Order \"\"x\"\"\"")
        #expect(throws: TenantryError.self) { try SQLIdentifier.quoted("") }
        try SQLIdentifier.validateName("shop_42_db", what: "database")
        #expect(throws: TenantryError.self) { try SQLIdentifier.validateName("shop-42", what: "database") }
        #expect(throws: TenantryError.self) { try SQLIdentifier.validateName("4shop", what: "database") }
    }

    @Test("phases move forward one step or back to shared; retired goes back to dedicated only by restore")
    func phases() {
        #expect(MovePhase.shared.canTransition(to: .provisioned))
        #expect(MovePhase.syncing.canTransition(to: .cutover))
        #expect(MovePhase.dedicated.canTransition(to: .shared))
        #expect(!MovePhase.shared.canTransition(to: .dedicated))
        #expect(MovePhase.retired.canTransition(to: .dedicated))  // restore-legacy
        #expect(!MovePhase.retired.canTransition(to: .syncing))
        #expect(!MovePhase.dedicated.canTransition(to: .syncing))
        #expect(MovePhase("reads_switched") == .readsSwitched)
        #expect(MovePhase("nope") == nil)
    }

    @Test("percentage routing is deterministic and within ±2 points over 10,000 ids")
    func percentageSplit() throws {
        for percentage in [10, 25, 50, 90] {
            var policy = ReadPolicy()
            policy.strategy = .percentage
            policy.percentage = percentage
            let ids = try (0..<10_000).map { try TenantID(String($0)) }
            let routed = ids.filter(policy.readsFromTenantDatabase).count
            #expect(abs(Double(routed) / 100 - Double(percentage)) <= 2, "\(percentage)%: \(routed)")
            #expect(ids.filter(policy.readsFromTenantDatabase).count == routed)
        }
    }

    @Test("percentage buckets are the same on every machine and run; raising the percentage only adds tenants")
    func percentageStable() throws {
        // FNV-1a of the id, not Swift's per-process seeded Hasher: every router instance agrees.
        let pinned = ["1": 68, "2": 1, "42": 91, "shop_7": 27, "9999": 13]
        for (id, bucket) in pinned { #expect(ReadPolicy.bucket(of: try TenantID(id)) == bucket, "\(id)") }
        let ids = try (0..<10_000).map { try TenantID(String($0)) }
        var policy = ReadPolicy()
        policy.strategy = .percentage
        var previous: Set<TenantID> = []
        for percentage in stride(from: 0, through: 100, by: 5) {
            policy.percentage = percentage
            let routed = Set(ids.filter(policy.readsFromTenantDatabase))
            #expect(routed.isSuperset(of: previous), "\(percentage)%: a tenant went back to unified")
            previous = routed
        }
        #expect(previous.count == ids.count, "100% routes every tenant")
    }

    @Test("strategies route as named")
    func strategies() throws {
        let a = try TenantID("1"), b = try TenantID("2")
        var policy = ReadPolicy()
        #expect(!policy.readsFromTenantDatabase(a))
        policy.strategy = .tenant
        #expect(policy.readsFromTenantDatabase(a) && policy.readsFromTenantDatabase(b))
        policy.strategy = .shopList
        policy.shopIDs = [a]
        #expect(policy.readsFromTenantDatabase(a) && !policy.readsFromTenantDatabase(b))
        policy.strategy = .canary
        policy.canaryIDs = [b]
        #expect(!policy.readsFromTenantDatabase(a) && policy.readsFromTenantDatabase(b))
        policy.canaryIDs = []
        #expect(throws: TenantryError.self) { try policy.validate() }
    }
}
