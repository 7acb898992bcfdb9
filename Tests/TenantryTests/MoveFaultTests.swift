import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("online move: faults", .timeLimit(.minutes(4)))
struct MoveFaultTests {
    @Test("tenant DB server stopped 10 s under writes: no application write fails, the backlog drains, every table equal")
    func tenantServerStopped() async throws {
        let second = try await RestartableServer.start()
        do {
            try await serverStopped(second)
            try await second.remove()
        } catch {
            try? await second.remove()
            throw error
        }
    }

    private func serverStopped(_ second: RestartableServer) async throws {
        let secondURL = try second.url()
        var fixture = try await MoveFixture.make(shops: 4, rowsPerShop: 80, servers: { keyring in
            [ServerRecord(
                name: "second", host: "127.0.0.1", port: secondURL.port, adminUser: secondURL.user,
                adminPasswordSealed: try keyring.seal(secondURL.password ?? "", tenant: "server:second", field: "admin_password"))]
        }, server: "second")
        fixture.tenantServer = secondURL
        let moving = fixture
        let stop = NIOLockedValueBox(false)
        var configuration = Relay.Configuration()
        configuration.batchTimeout = .seconds(15)
        try await moving.withMover(relay: configuration) { copier, relay, catalog in
            for id in moving.ids {
                _ = try await copier.copy(id)
                #expect(try await catalog.tenant(id)?.serverName == "second")
            }
            let writers = (0..<3).map { index in
                Task { try await HandyShopWriter(url: moving.unifiedURL, shops: moving.ids, seed: UInt64(40 + index)).run(until: stop) }
            }
            let relayTask = Task { try await relay.run() }
            let (writes, backlog): (Int, Int)
            do {
                try await Task.sleep(for: .seconds(1))
                try await withTimeLimit(.seconds(30), "server stop") { try await second.stop() }
                try await Task.sleep(for: .seconds(10))
                let depth = try await moving.capture().states().reduce(0) { $0 + $1.queueDepth }
                try await withTimeLimit(.seconds(30), "server start") { try await second.start() }
                try await Task.sleep(for: .seconds(1))
                stop.withLockedValue { $0 = true }
                // Throws if any application write failed.
                writes = try await withTimeLimit(.seconds(30), "writers to stop") {
                    var writes = 0
                    for writer in writers { writes += try await writer.value }
                    return writes
                }
                backlog = depth
            } catch {
                stop.withLockedValue { $0 = true }
                relayTask.cancel()
                throw error
            }
            relayTask.cancel()
            _ = try await withTimeLimit(.seconds(30), "relay to stop") { _ = try? await relayTask.value }
            #expect(backlog > 0, "writes piled up while the tenant server was down")
            #expect(writes > 30)
            let report = try await withTimeLimit(.seconds(90), "catch up") { try await relay.catchUp(timeout: .seconds(75)) }
            #expect(report.paused.isEmpty)
            #expect(relay.statistics.connectionFailures > 0)
            #expect(relay.statistics.deadLettered == 0)
            for id in moving.ids {
                #expect(try await moving.independentDifferences(id) == [], "tenant \(id)")
            }
        }
    }
}
