import Foundation
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("server moves: a mover stopped at any decisive point is finished by running the same command again", .timeLimit(.minutes(4)))
struct ServerMoveInterruptedTests {
    struct Stop: Error {}

    @Test("start after the stream stopped, switch after its COMMIT, complete after each hand-over step: re-runs finish, nothing lost")
    func reRunsFinish() async throws {
        let servers = try await ServerMoveFixture.make(shops: 1, rowsPerShop: 30)
        defer { Task { await servers.remove() } }
        let tenant = servers.fixture.ids[0]
        try await servers.withOperations { operations in
            let move = try await operations.move()
            let source = try await servers.databaseURL(tenant, onSecond: false)
            let target = try await servers.databaseURL(tenant, onSecond: true)
            var next = 0
            func write(_ url: PostgresURL, _ count: Int = 5) async throws {
                for _ in 0..<count {
                    next += 1
                    _ = try await TestPostgres.strings(
                        url, "INSERT INTO customers (first_name, last_name, email) VALUES ('I', 'R', 'rerun.\(next)@example.com')")
                }
            }
            let stop: @Sendable () async throws -> Void = { throw Stop() }
            try await move.withServerMoves { plain in
                var moves = plain
                moves.faults.afterStreamStopped = stop
                await #expect(throws: TenantryError.self) { _ = try await moves.start(tenant, to: "second") }
                #expect(try await operations.catalog.activeServerMove(tenant)?.phase == .starting)
                try await write(source)
                _ = try await plain.start(tenant, to: "second")
                #expect(try await operations.catalog.activeServerMove(tenant)?.phase == .moving)
                try await write(source)
                try await plain.catchUp(tenant)
                #expect(try await plain.verify(tenant).equal)
                await #expect(throws: TenantryError.self) { _ = try await move.rollback([tenant]) }

                moves = plain
                moves.faults.afterDecisiveCommit = stop
                await #expect(throws: Stop.self) { _ = try await moves.switchTraffic(tenant, maxPause: .seconds(5)) }
                #expect(try await operations.catalog.requireTenant(tenant).serverName == nil, "the catalog flips after the COMMIT")
                let report = try await plain.switchTraffic(tenant, maxPause: .seconds(5))
                #expect(report.to == "second")
                try await write(target)
                _ = try await plain.reverse(tenant, maxPause: .seconds(5))
                try await write(source)
                _ = try await plain.switchTraffic(tenant, maxPause: .seconds(5))
                try await write(target)

                moves = plain
                moves.faults.afterLinkStopped = stop
                await #expect(throws: Stop.self) { _ = try await moves.complete(tenant) }
                try await write(target)
                moves.faults.afterLinkStopped = nil
                moves.faults.afterFollowerStopped = stop
                await #expect(throws: Stop.self) { _ = try await moves.complete(tenant) }
                try await write(target)
                let ended = try await plain.complete(tenant)
                #expect(ended.phase == .complete)
            }
            try await write(target)
            _ = try await move.catchUp(.all, timeout: .seconds(60))
            #expect(!(try await servers.exists(tenant, onSecond: false)))
            #expect(try await TestPostgres.strings(target, "SELECT count(*)::text FROM customers WHERE email LIKE 'rerun.%'") == ["\(next)"])
            #expect(try await servers.rows(tenant, in: target) == (try await servers.unifiedRows(tenant)))
            // Rollback to unified works from the new server.
            _ = try await move.rollback([tenant])
            #expect(try await operations.catalog.requireTenant(tenant).placement == .shared)
            #expect(try await TestPostgres.strings(
                servers.fixture.unifiedURL, "SELECT count(*)::text FROM customers WHERE email LIKE 'rerun.%'") == ["\(next)"])
        }
    }
}
