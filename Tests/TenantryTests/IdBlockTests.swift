import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("trust: id blocks of dedicated tenants", .timeLimit(.minutes(3)))
struct IdBlockTests {
    static func load(_ connection: PostgresConnection) async throws {
        for statement in [
            "CREATE TABLE shops (id bigint PRIMARY KEY)",
            "CREATE TABLE tickets (id smallserial PRIMARY KEY, shop_id bigint NOT NULL REFERENCES shops (id), body text)",
            "INSERT INTO shops VALUES (1), (2)",
            "INSERT INTO tickets (shop_id, body) SELECT 1 + g % 2, 'seed ' || g FROM generate_series(1, 20) g",
        ] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: MoveFixture.logger) }
    }

    static func insert(_ url: PostgresURL, _ sql: String) async throws {
        try await Database.withConnection(url, logger: MoveFixture.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: MoveFixture.logger)
        }
    }

    @Test("a smallint id block is reported, extended before it runs out, and no id collides with another tenant's in unified")
    func extendedBeforeExhaustion() async throws {
        let fixture = try await MoveFixture.make(tenants: 2, load: Self.load)
        var configuration = Relay.Configuration()
        configuration.idBlockCheckInterval = .milliseconds(50)
        try await fixture.withMover(relay: configuration) { copier, relay, catalog in
            _ = try await copier.copy(fixture.ids[0])
            _ = try await fixture.cutover(catalog: catalog, relay: relay).cutover(fixture.ids[0], maxPause: .seconds(30))
            let headroom = try await fixture.capture().states([fixture.ids[0]]).first?.idHeadroom
            #expect(headroom == 501, "a smallint block of 1,000 ids, the tenant keeps the upper half (501 ids): \(headroom.map(String.init) ?? "none")")
            let tenantURL = try await fixture.tenantURL(fixture.ids[0])
            // 1,200 tickets in batches, more than the first block holds; the relay extends in between.
            for batch in 0..<12 {
                try await Self.insert(tenantURL, "INSERT INTO tickets (body) SELECT 'tenant ' || g FROM generate_series(1, 100) g")
                try await Self.insert(fixture.unifiedURL, "INSERT INTO tickets (shop_id, body) VALUES (2, 'unified \(batch)')")
                _ = try await relay.catchUp(timeout: .seconds(30))
            }
            #expect(try await fixture.capture().states([fixture.ids[0]]).first?.deadLetters == 0)
            #expect(try await fixture.independentDifferences(fixture.ids[0]) == [])
            #expect(try await TestPostgres.strings(fixture.unifiedURL, "SELECT count(*)::text FROM tickets WHERE shop_id = 2 AND body LIKE 'unified%'") == ["12"])
            #expect((try await fixture.capture().states([fixture.ids[0]]).first?.idHeadroom ?? 0) > 0)
        }
    }

    @Test("without an extension, an exhausted block fails the insert loudly instead of reusing another tenant's id")
    func exhaustedFailsLoudly() async throws {
        let fixture = try await MoveFixture.make(tenants: 2, load: Self.load)
        var configuration = Relay.Configuration()
        configuration.idBlockCheckInterval = .seconds(3600)
        try await fixture.withMover(relay: configuration) { copier, relay, catalog in
            _ = try await copier.copy(fixture.ids[0])
            _ = try await fixture.cutover(catalog: catalog, relay: relay).cutover(fixture.ids[0], maxPause: .seconds(30))
            _ = relay.takeBlockCheck(fixture.ids[0])
            let tenantURL = try await fixture.tenantURL(fixture.ids[0])
            await #expect {
                try await Self.insert(tenantURL, "INSERT INTO tickets (body) SELECT 'tenant ' || g FROM generate_series(1, 600) g")
            } throws: { error in
                Database.sqlState(of: error) == "2200H"
            }
        }
    }
}
