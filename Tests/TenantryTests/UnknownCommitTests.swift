import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("trust: a COMMIT with an unknown outcome never strands writes", .timeLimit(.minutes(4)))
struct UnknownCommitTests {
    @Test("cutover: a lost COMMIT reply is read back as committed; a killed COMMIT leaves the tenant syncing; a failed catalog flip is finished by a re-run")
    func cutoverOutcomes() async throws {
        let fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 30)
        try await fixture.withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            struct LostReply: Error {}
            // 1. The COMMIT succeeded but its reply was lost.
            var lost = fixture.cutover(catalog: catalog, relay: relay)
            lost.faults.afterDecisiveCommit = { throw LostReply() }
            _ = try await lost.cutover(fixture.ids[0], maxPause: .seconds(30))
            #expect(try await catalog.move(fixture.ids[0])?.phase == .dedicated)
            #expect(try await catalog.tenant(fixture.ids[0])?.placement == .dedicated)

            // 2. The session died before its COMMIT: nothing switched, the tenant still syncs.
            var killed = fixture.cutover(catalog: catalog, relay: relay)
            let unifiedURL = fixture.unifiedURL
            killed.faults.beforeDecisiveCommit = {
                let stranded = """
                    FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE '%SET moved = true%'
                    """
                _ = try await TestPostgres.strings(unifiedURL, "SELECT pg_terminate_backend(pid)::text \(stranded)")
                // The session is gone before the cutover goes on to its COMMIT.
                try await eventually("the terminated session is gone") {
                    try await TestPostgres.strings(unifiedURL, "SELECT count(*)::text \(stranded)") == ["0"]
                }
            }
            await #expect(throws: (any Error).self) { _ = try await killed.cutover(fixture.ids[1], maxPause: .seconds(30)) }
            #expect(try await catalog.move(fixture.ids[1])?.phase == .syncing)
            #expect(try await catalog.tenant(fixture.ids[1])?.placement == .shared)
            #expect(try await fixture.capture().states([fixture.ids[1]]).first?.moved == false)
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: """
                    INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (\(fixture.ids[1].rawValue), 'After', 'Kill', 'after-kill@example.com')
                    """), logger: MoveFixture.logger)
            }
            _ = try await relay.catchUp(timeout: .seconds(30))
            #expect(try await fixture.independentDifferences(fixture.ids[1]) == [])

            // 3. The switch committed, the catalog flip failed: writes are refused (never lost) until a re-run finishes it.
            var unflipped = fixture.cutover(catalog: catalog, relay: relay)
            struct CatalogDown: Error {}
            unflipped.faults.beforeCatalogFlip = { throw CatalogDown() }
            await #expect {
                _ = try await unflipped.cutover(fixture.ids[2], maxPause: .seconds(30))
            } throws: { error in
                "\(error)".contains("run 'tenantry cutover --tenant \(fixture.ids[2])' again")
            }
            await #expect {
                try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        INSERT INTO customers (shop_id, first_name, last_name) VALUES (\(fixture.ids[2].rawValue), 'Refused', 'Meanwhile')
                        """), logger: MoveFixture.logger)
                }
            } throws: { error in Database.message(of: error).contains("has moved") }
            _ = try await fixture.cutover(catalog: catalog, relay: relay).cutover(fixture.ids[2], maxPause: .seconds(30))
            #expect(try await catalog.move(fixture.ids[2])?.phase == .dedicated)

            // Rollback: a lost COMMIT reply, then a failed flip finished by a re-run.
            var rollbackLost = fixture.cutover(catalog: catalog, relay: relay)
            rollbackLost.faults.afterDecisiveCommit = { throw LostReply() }
            _ = try await rollbackLost.rollback(fixture.ids[0], maxPause: .seconds(30))
            #expect(try await catalog.move(fixture.ids[0])?.phase == .shared)
            var rollbackUnflipped = fixture.cutover(catalog: catalog, relay: relay)
            rollbackUnflipped.faults.beforeCatalogFlip = { throw CatalogDown() }
            await #expect(throws: (any Error).self) { _ = try await rollbackUnflipped.rollback(fixture.ids[2], maxPause: .seconds(30)) }
            #expect(try await catalog.move(fixture.ids[2])?.phase == .dedicated)
            _ = try await fixture.cutover(catalog: catalog, relay: relay).rollback(fixture.ids[2], maxPause: .seconds(30))
            #expect(try await catalog.move(fixture.ids[2])?.phase == .shared)
            for id in [fixture.ids[0], fixture.ids[2]] {
                try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        INSERT INTO customers (shop_id, first_name, last_name) VALUES (\(id.rawValue), 'Back', 'Home')
                        """), logger: MoveFixture.logger)
                }
            }
        }
    }
}

extension MoveFixture {
    /// A cutover handle over `relay`.
    func cutover(catalog: Catalog, relay: Relay) -> Cutover {
        Cutover(catalog: catalog, servers: directory(servers: servers), unifiedURL: unifiedURL, plan: plan, relay: relay,
                actor: "test", logger: Self.logger)
    }

    /// The dead letter queue, reaching tenant databases for reverse-sync letters.
    func deadLetters() -> DeadLetters {
        DeadLetters(unifiedURL: unifiedURL, tenantURL: { try await self.tenantURL($0) }, logger: Self.logger)
    }
}
