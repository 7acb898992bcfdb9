import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("server moves: bad input and bad targets are one clear error, nothing changed", .timeLimit(.minutes(4)))
struct ServerMoveRefusalTests {
    @Test("unknown, same, down and full servers, a schema mismatch, a tenant still on the shared path, a second move")
    func refusals() async throws {
        let servers = try await ServerMoveFixture.make(shops: 2, rowsPerShop: 20, cutOver: 1)
        defer { Task { await servers.remove() } }
        let (dedicated, shared) = (servers.fixture.ids[0], servers.fixture.ids[1])
        try await servers.withOperations { operations in
            let move = try await operations.move()
            _ = try await move.migrateData(.tenants([shared]))
            try await move.withServerMoves { moves in
                func refused(
                    _ tenant: TenantID, to server: String, _ code: TenantryError.Code, _ words: String, targetUp: Bool = true
                ) async throws {
                    do {
                        _ = try await moves.start(tenant, to: server)
                        Issue.record("moving \(tenant) to \(server) was not refused")
                    } catch let error as TenantryError {
                        #expect(error.code == code, "\(error)")
                        #expect(error.message.contains(words), "\(error.message)")
                        #expect(!error.message.contains("password"), "\(error.message)")
                    }
                    #expect(try await operations.catalog.activeServerMove(tenant) == nil)
                    if targetUp { #expect(!(try await servers.exists(tenant, onSecond: true)), "nothing made on the target") }
                    #expect(try await operations.catalog.requireTenant(tenant).serverName == nil)
                }
                try await refused(dedicated, to: "nowhere", .invalidArgument, "not registered")
                try await refused(dedicated, to: "default", .invalidArgument, "already on server default")
                try await refused(shared, to: "second", .conflict, "phase syncing")

                try await servers.second.stop()
                try await refused(dedicated, to: "second", .connectionFailed, "cannot be reached", targetUp: false)
                try await servers.second.start()
                #expect(!(try await servers.exists(dedicated, onSecond: true)))

                var record = try #require(try await operations.catalog.servers().first { $0.name == "second" })
                record.maxBytes = 1_000
                try await operations.catalog.upsertServer(record)
                let full = try await operations.refreshed()
                try await full.move().withServerMoves { fullMoves in
                    do {
                        _ = try await fullMoves.start(dedicated, to: "second")
                        Issue.record("a full server was not refused")
                    } catch let error as TenantryError {
                        #expect(error.code == .conflict && error.message.contains("second is full"), "\(error)")
                    }
                }
                record.maxBytes = nil
                try await operations.catalog.upsertServer(record)

                try "CREATE TABLE later (id int PRIMARY KEY);".write(
                    toFile: "\(servers.migrations)/V2__later.sql", atomically: true, encoding: .utf8)
                try await refused(dedicated, to: "second", .conflict, "schema V1 and the fleet's migrations at V2")
                try FileManager.default.removeItem(atPath: "\(servers.migrations)/V2__later.sql")

                // One active move per tenant.
                _ = try await moves.start(dedicated, to: "second")
                await #expect(throws: TenantryError.self) {
                    _ = try await operations.catalog.beginServerMove(
                        dedicated, sourceServer: "default", sourceDatabase: "x", targetServer: "second", targetDatabase: "x", reason: nil)
                }
                _ = try await moves.cancel(dedicated)
            }
        }
    }
}
