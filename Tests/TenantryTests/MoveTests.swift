import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("online move: capture, copy, sync, verify", .timeLimit(.minutes(6)))
struct MoveTests {
    @Test("20 shops, writers running through copy and sync: every table equal, row by row")
    func concurrentWriters() async throws {
        let fixture = try await MoveFixture.make(shops: 20)
        let stop = NIOLockedValueBox(false)
        try await fixture.withMover { copier, relay, catalog in
            let writers = (0..<4).map { index in
                Task { try await HandyShopWriter(url: fixture.unifiedURL, shops: fixture.ids, seed: UInt64(index + 1)).run(until: stop) }
            }
            let relayTask = Task { try await relay.run() }
            try await Task.sleep(for: .milliseconds(300))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for slice in fixture.ids.chunked(4) {
                    group.addTask { for id in slice { _ = try await copier.copy(id) } }
                }
                try await group.waitForAll()
            }
            try await Task.sleep(for: .seconds(1))
            stop.withLockedValue { $0 = true }
            var writes = 0
            for writer in writers { writes += try await writer.value }
            relayTask.cancel()
            _ = try? await relayTask.value
            #expect(writes > 50, "the writers wrote \(writes) transactions")
            let report = try await relay.catchUp(timeout: .seconds(60))
            #expect(report.paused.isEmpty)
            #expect(relay.statistics.applied > 0)
            for id in fixture.ids {
                #expect(try await catalog.move(id)?.phase == .syncing)
                let verdict = try await Verifier(plan: fixture.plan, chunkSize: 50, leafSize: 8, logger: MoveFixture.logger)
                    .verify(id, unifiedURL: fixture.unifiedURL, tenantURL: try await fixture.tenantURL(id))
                #expect(verdict.equal, "tenant \(id): \(verdict.tables.flatMap(\.differences).prefix(5))")
                #expect(try await fixture.independentDifferences(id) == [], "tenant \(id)")
            }
            let states = try await fixture.capture().states()
            #expect(states.allSatisfy { $0.queueDepth == 0 && $0.deadLetters == 0 && $0.capturing })
        }
    }

    @Test("a conflicting row in a tenant DB: 3 retries, a dead letter, that tenant paused, others current; replay after the fix")
    func deadLetters() async throws {
        let fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 60)
        var configuration = Relay.Configuration()
        configuration.retryDelays = [.milliseconds(100), .milliseconds(200), .milliseconds(400)]
        try await fixture.withMover(relay: configuration) { copier, relay, _ in
            for id in fixture.ids { _ = try await copier.copy(id) }
            let victim = fixture.ids[0]
            // The tenant DB already holds a customer with the email the application is about to use.
            try await Database.withConnection(try await fixture.tenantURL(victim), logger: MoveFixture.logger) { connection in
                try await connection.query(
                    "INSERT INTO customers (id, first_name, last_name, email) VALUES (900000001, 'X', 'Y', 'dup@example.com')",
                    logger: MoveFixture.logger)
            }
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                for id in fixture.ids {
                    try await connection.query("""
                        INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(Int64(id.rawValue)!), 'A', 'B', 'dup@example.com')
                        """, logger: MoveFixture.logger)
                }
            }
            let started = ContinuousClock.now
            let report = try await relay.catchUp(timeout: .seconds(30))
            let elapsed = ContinuousClock.now - started
            #expect(report.paused.keys.sorted() == [victim.rawValue])
            #expect(report.paused[victim.rawValue]?.contains("duplicate key") == true, "\(report.paused)")
            #expect(report.deadLettered == [victim], "a typed fact, not a match on the reason's text")
            #expect(elapsed >= .milliseconds(700), "three retries take at least 0.1 + 0.2 + 0.4 s (took \(elapsed))")
            #expect(relay.statistics.retried == 3)
            #expect(relay.statistics.deadLettered == 1)
            let dead = try await TestPostgres.strings(fixture.unifiedURL, "SELECT tenant_id || ':' || attempts || ':' || error FROM tenantry.dead_letters")
            #expect(dead.count == 1 && dead[0]?.hasPrefix("\(victim):4:") == true, "\(dead)")
            for id in fixture.ids.dropFirst() {
                #expect(try await fixture.independentDifferences(id) == [], "tenant \(id) is current")
            }
            // Writes to the paused tenant keep being captured, in order, behind the dead letter.
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                try await connection.query(
                    "UPDATE customers SET notes = 'after' WHERE shop_id = \(Int64(victim.rawValue)!) AND email = 'dup@example.com'",
                    logger: MoveFixture.logger)
            }
            // Fix: remove the conflicting row, replay.
            try await Database.withConnection(try await fixture.tenantURL(victim), logger: MoveFixture.logger) { connection in
                try await connection.query("DELETE FROM customers WHERE id = 900000001", logger: MoveFixture.logger)
            }
            let replayed = try await DeadLetters(unifiedURL: fixture.unifiedURL, logger: MoveFixture.logger).replay(tenants: [victim])
            #expect(replayed == 1)
            let after = try await relay.catchUp([victim], timeout: .seconds(30))
            #expect(after.paused.isEmpty && after.deadLettered.isEmpty)
            #expect(try await fixture.independentDifferences(victim) == [])
            #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT count(*)::text FROM tenantry.dead_letters") == ["0"])
        }
    }
}
