import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("capture: the write fence holds a captured write across a switch, by the key the server computes and by the legacy key",
       .timeLimit(.minutes(4)))
struct CaptureFenceTests {
    struct Aborted: Error {}

    /// Starts an autocommit (READ COMMITTED) INSERT of a customer of `shop` in unified and returns
    /// once it waits on the tenant's fence, `(fenceNamespace, hashtext(id))` as the capture function
    /// computes it. The task returns the write's SQLSTATE, or nil when it committed.
    static func blockedWrite(_ fixture: MoveFixture, _ shop: TenantID, email: String) async throws -> Task<String?, any Error> {
        let url = fixture.unifiedURL
        let task = Task { () -> String? in
            try await Database.withConnection(url, logger: MoveFixture.logger) { connection in
                do {
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(shop.rawValue), 'Fenced', 'Writer', '\(email)')
                        """), logger: MoveFixture.logger)
                    return nil
                } catch {
                    return Database.sqlState(of: error) ?? Database.message(of: error)
                }
            }
        }
        try await eventually("the write waits on the tenant's fence key", within: .seconds(30)) {
            try await TestPostgres.strings(url, """
                SELECT count(*)::text FROM pg_locks l WHERE l.locktype = 'advisory' AND NOT l.granted AND l.objsubid = 2
                    AND l.classid::bigint = (\(AdvisoryLock.fenceNamespace)::bigint & 4294967295)
                    AND l.objid::bigint = (hashtext('\(shop.rawValue)')::bigint & 4294967295)
                """) == ["1"]
        }
        return task
    }

    /// The customer rows with `email` (id, names, email), as text: unified's and the tenant database's.
    static func rows(_ fixture: MoveFixture, _ shop: TenantID, _ email: String) async throws -> (unified: [String?], tenant: [String?]) {
        let sql = "SELECT concat_ws('|', id, first_name, last_name, email) FROM customers WHERE email = '\(email)' ORDER BY id"
        return (try await TestPostgres.strings(fixture.unifiedURL, sql), try await TestPostgres.strings(try await fixture.tenantURL(shop), sql))
    }

    /// Copies shop 1 of two, then runs a cutover during which, under the fence with everything
    /// decided, an autocommit write of the shop with `email` starts and waits on the fence; with
    /// `abort` the cutover then fails instead of committing. `check` gets the shop, the write's
    /// outcome (its SQLSTATE, nil when it committed) and the relay.
    static func cutoverMeetingWrite(
        email: String, abort: Bool, _ check: @escaping @Sendable (MoveFixture, TenantID, String?, Relay) async throws -> Void
    ) async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let shop = fixture.ids[0]
        try await fixture.withMover { copier, relay, catalog in
            _ = try await copier.copy(shop)
            var cutover = fixture.cutover(catalog: catalog, relay: relay)
            let writer = NIOLockedValueBox<Task<String?, any Error>?>(nil)
            cutover.faults.beforeDecisiveCommit = {
                let task = try await Self.blockedWrite(fixture, shop, email: email)
                writer.withLockedValue { $0 = task }
                if abort { throw Aborted() }
            }
            if abort {
                await #expect(throws: Aborted.self) { _ = try await cutover.cutover(shop, maxPause: .seconds(30)) }
            } else {
                _ = try await cutover.cutover(shop, maxPause: .seconds(30))
            }
            try await check(fixture, shop, try await writer.withLockedValue { $0 }?.value, relay)
        }
    }

    @Test("a write waiting on the fence while a cutover commits is refused as moved: nothing of it on either side, nothing in the outbox")
    func writeDuringCutover() async throws {
        try await Self.cutoverMeetingWrite(email: "fenced-moved@example.com", abort: false) { fixture, shop, outcome, _ in
            #expect(outcome == "25006", "the write after the switch: \(outcome ?? "committed")")
            let (unified, tenant) = try await Self.rows(fixture, shop, "fenced-moved@example.com")
            #expect(unified.isEmpty && tenant.isEmpty, "unified \(unified), tenant \(tenant)")
            #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT count(*)::text FROM tenantry.changes") == ["0"])
        }
    }

    @Test("a write waiting on the fence while a cutover aborts is captured once and lands once in the tenant database, the same row")
    func writeDuringAbortedCutover() async throws {
        try await Self.cutoverMeetingWrite(email: "fenced-kept@example.com", abort: true) { fixture, shop, outcome, relay in
            #expect(outcome == nil, "the write after the aborted switch: \(outcome ?? "committed")")
            #expect(try await TestPostgres.strings(fixture.unifiedURL, """
                SELECT count(*)::text FROM tenantry.changes WHERE tenant_id = '\(shop.rawValue)' AND row_data->>'email' = 'fenced-kept@example.com'
                """) == ["1"])
            _ = try await relay.catchUp(timeout: .seconds(30))
            let (unified, tenant) = try await Self.rows(fixture, shop, "fenced-kept@example.com")
            #expect(unified.count == 1 && unified == tenant, "unified \(unified), tenant \(tenant)")
            let verdict = try await Verifier(plan: fixture.plan, logger: MoveFixture.logger)
                .verify(shop, unifiedURL: fixture.unifiedURL, tenantURL: try await fixture.tenantURL(shop))
            #expect(verdict.equal, "\(verdict.tables.flatMap(\.differences).prefix(5))")
        }
    }

    @Test("a cutover waits for a writer holding either key: the server-computed one, and the legacy capture_state.lock_key of functions installed before 2026-12-01")
    func bothKeysFence() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let shop = fixture.ids[0]
        try await fixture.withMover { copier, relay, catalog in
            _ = try await copier.copy(shop)
            // The legacy key is the one an older function reads from capture_state.
            let legacy = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT lock_key::text FROM tenantry.capture_state WHERE tenant_id = '\(shop.rawValue)'")
            #expect(legacy == ["\(AdvisoryLock.tenant(shop))"])
            let cutover = fixture.cutover(catalog: catalog, relay: relay)
            for (namespace, key) in [(AdvisoryLock.fenceNamespace, "hashtext('\(shop.rawValue)')"), (AdvisoryLock.namespace, "\(AdvisoryLock.tenant(shop))")] {
                let (release, releasing) = AsyncStream.makeStream(of: Void.self)
                let writer = try await MoveOperationsCutoverTests.holdFence(fixture, shop, for: .zero, until: release, namespace: namespace, key: key)
                do {
                    _ = try await cutover.cutover(shop, maxPause: .milliseconds(300))
                    Issue.record("the cutover did not wait for the writer holding (\(namespace), \(key))")
                } catch {
                    #expect((error as? TenantryError)?.code == .timeout, "(\(namespace), \(key)): \(String(reflecting: error))")
                }
                releasing.yield()
                try await writer.value
                #expect(try await catalog.requireTenant(shop).placement == .shared)
            }
            // No writer holds the fence: the cutover goes through.
            _ = try await cutover.cutover(shop, maxPause: .seconds(30))
            #expect(try await catalog.requireTenant(shop).placement == .dedicated)
        }
    }

    @Test("beyond the list limit the triggers pass 'every_row': a captured tenant's write is appended once, an uncaptured one's nothing")
    func everyRowTriggers() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 10)
        let (captured, uncaptured) = (fixture.ids[0], fixture.ids[1])
        let capture = fixture.capture()
        try await capture.install()
        try await TestPostgres.executeSkippingTriggers(fixture.unifiedURL, """
            INSERT INTO tenantry.capture_state (tenant_id, lock_key) SELECT 'x' || g, 1 FROM generate_series(1, \(CaptureSQL.listLimit)) g
            """)
        try await capture.enable(captured)
        #expect(try await TestPostgres.strings(fixture.unifiedURL, """
            SELECT (count(*) > 0 AND count(*) FILTER (WHERE tgnargs <> 1 OR tgqual IS NOT NULL) = 0)::text FROM pg_trigger
            WHERE tgname LIKE 'tenantry_capture_%'
            """) == ["true"], "every capture trigger fires for every row and passes 'every_row'")
        for (shop, email) in [(captured, "every-row-captured@example.com"), (uncaptured, "every-row-uncaptured@example.com")] {
            _ = try await TestPostgres.strings(fixture.unifiedURL, """
                INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(shop.rawValue), 'Every', 'Row', '\(email)') RETURNING ''
                """)
        }
        #expect(try await TestPostgres.strings(fixture.unifiedURL, """
            SELECT tenant_id || ':' || op::text || ':' || (row_data->>'email') FROM tenantry.changes ORDER BY id
            """) == ["\(captured.rawValue):I:every-row-captured@example.com"])
        #expect(try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE email LIKE 'every-row-%'") == ["2"])
    }
}
