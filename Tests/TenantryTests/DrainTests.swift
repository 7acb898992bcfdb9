import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("servers drain: real server moves between two real servers", .timeLimit(.minutes(5)))
struct DrainTests {
    @Test("drain of three dedicated tenants: each moves to the other server, placement flips, every table equal, the source emptied")
    func drainMovesEveryTenant() async throws {
        let second = try await RestartableServer.start()
        do {
            try await drain(second)
            try await second.remove()
        } catch {
            try? await second.remove()
            throw error
        }
    }

    private func drain(_ second: RestartableServer) async throws {
        let first = try await TestPostgres.url(), secondURL = try second.url()
        var fixture = try await MoveFixture.make(shops: 3, rowsPerShop: 40, servers: { keyring in
            try [("a", first), ("b", secondURL)].map { name, url in
                ServerRecord(
                    name: name, host: url.host, port: url.port, adminUser: url.user,
                    adminPasswordSealed: try url.password.map { try keyring.seal($0, tenant: "server:\(name)", field: "admin_password") })
            }
        }, server: "a")
        let moving = fixture
        // The target databases are provisioned from the fleet's migrations.
        let migrations = FileManager.default.temporaryDirectory.appendingPathComponent("drain-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: migrations, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: migrations) }
        try fixture.migration.sql.write(toFile: migrations + "/V1__tenant_schema.sql", atomically: true, encoding: .utf8)
        var configuration = DoctorTests.configuration(moving)
        configuration.migrationsDirectory = migrations
        let (report, applied) = try await Operations.with(
            configuration: configuration, databaseURL: moving.unifiedURL, actor: "test", logger: TestPostgres.logger
        ) { operations in
            let move = try await operations.move()
            _ = try await move.migrateData(.all)
            let cut = try await move.cutover(.all, maxPause: .seconds(5), retries: 3)  // a loaded CI machine
            #expect(cut.failed.isEmpty, "\(cut.failed)")
            let report = try await operations.drainPlan("a", sample: .zero)
            let events = EventLog()
            let applied = try await operations.applyRebalance(report, concurrency: 2, maxPause: .seconds(5)) { events.append($0.message) }
            #expect(events.lines.contains { $0.contains("copying") } && events.lines.filter { $0.hasPrefix("moved a → b") }.count == 3,
                    "\(events.lines)")
            return (report, applied)
        }
        #expect(report.plan.moves.map(\.to) == ["b", "b", "b"] && report.plan.moves.allSatisfy { $0.reason == "server a is draining" })
        #expect(applied.failed.isEmpty, "\(applied.failed)")
        #expect(Set(applied.moved.map(\.tenant)) == Set(moving.ids))
        #expect(applied.longestPauseMilliseconds != nil)

        let placements = try await TestPostgres.strings(
            moving.unifiedURL, "SELECT id || '@' || coalesce(server_name, 'default') FROM tenantry.tenants ORDER BY id")
        #expect(placements == ["1@b", "2@b", "3@b"])
        fixture.tenantServer = secondURL
        for id in fixture.ids {
            #expect(try await fixture.independentDifferences(id).isEmpty, "tenant \(id)")
        }
        // The source databases are gone from server a.
        let left = try await TestPostgres.strings(
            first, "SELECT datname::text FROM pg_database WHERE datname = ANY(ARRAY[\(moving.ids.map { "'\(moving.base.naming.databaseName(for: $0))'" }.joined(separator: ","))])")
        #expect(left.isEmpty, "\(left)")
    }
}

/// Progress messages collected from the operation's tasks.
final class EventLog: Sendable {
    private let box = NIOLockedValueBox<[String]>([])
    func append(_ line: String) { box.withLockedValue { $0.append(line) } }
    var lines: [String] { box.withLockedValue { $0 } }
}
