import Foundation
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("Operations.doctor against PostgreSQL", .timeLimit(.minutes(3)))
struct DoctorTests {
    /// The fixture's configuration: its unified database, naming and keyring.
    static func configuration(_ fixture: MoveFixture, keyring: Keyring? = nil) -> TenantryConfiguration {
        var configuration = TenantryConfiguration()
        configuration.databaseURL = fixture.unifiedURL
        configuration.keyring = keyring ?? fixture.base.keyring
        configuration.naming = fixture.base.naming
        return configuration
    }

    @Test("a healthy setup: every typed check passes (a warning at most), in order; caller's host checks kept")
    func healthy() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let host = DoctorCheck(group: "environment", name: "PostgreSQL programs", passed: true, detail: "from the caller")
        let report = try await Operations.with(
            configuration: Self.configuration(fixture), databaseURL: fixture.unifiedURL, actor: "test", logger: TestPostgres.logger
        ) { operations in
            // The guard shuts tenant roles out of the unified database (the isolation check).
            try await ConnectLockdown(
                catalog: operations.catalog, servers: operations.servers, unifiedDatabase: fixture.unifiedURL.database, appRoles: [],
                logger: TestPostgres.logger).apply()
            return await operations.doctor(sample: 0, environment: [host])
        }
        #expect(report.healthy && report.failed == 0, "\(report.checks.filter { !$0.passed })")
        let names = report.checks.map(\.name)
        for name in ["configuration", "TENANT_ENCRYPTION_KEY", "PostgreSQL programs", "connection", "server version", "catalog",
                     "capture", "tenants", "placements", "isolation", "credentials", "connections", "writes"] {
            #expect(names.contains(name), "check \(name) missing: \(names)")
        }
        #expect(names.firstIndex(of: "PostgreSQL programs")! < names.firstIndex(of: "connection")!, "host checks follow the configuration's")
        #expect(report.checks.allSatisfy { $0.status == .pass || ($0.status == .warn && ["other databases", "unindexed foreign keys"].contains($0.name)) }, "\(report.checks)")
        #expect(report.checks.first { $0.name == "credentials" }?.detail == "2 tenant login(s) decrypt with the current keyring")
        #expect(report.checks.first { $0.name == "writes" }?.detail == "2 tenant(s) routed to where their data lives")
        // The JSON keeps the older `passed` field next to `status`, and the counts.
        let json = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(report)) as? [String: Any] ?? [:]
        #expect(json["failed"] as? Int == 0 && json["passed"] as? Int == report.checks.count)
        let first = (json["checks"] as? [[String: Any]])?.first ?? [:]
        #expect(first["status"] as? String == "pass" && first["passed"] as? Bool == true, "\(first)")
    }

    @Test("the wrong key: the credentials check fails with each tenant named, the key is in no detail")
    func wrongKey() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        let wrong = EncryptionKey.generate()
        let report = try await Operations.with(
            configuration: Self.configuration(fixture, keyring: Keyring(current: wrong)), databaseURL: fixture.unifiedURL,
            actor: "test", logger: TestPostgres.logger
        ) { operations in await operations.doctor() }
        #expect(!report.healthy)
        let credentials = try #require(report.checks.first { $0.name == "credentials" })
        #expect(credentials.status == .fail && credentials.group == "tenant configuration")
        #expect(credentials.detail.contains("1: ") && credentials.detail.contains("2: "), "\(credentials.detail)")
        let text = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        #expect(!text.contains(wrong.hex) && !text.contains(fixture.base.keyring.current.hex))
    }

    @Test("a move plan that cannot load fails the capture check only: the tenant checks still run")
    func planFailureDoesNotHideTenants() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        var configuration = Self.configuration(fixture)
        configuration.naming.discriminator = "no_such_column"
        let report = try await Operations.with(
            configuration: configuration, databaseURL: fixture.unifiedURL, actor: "test", logger: TestPostgres.logger
        ) { operations in await operations.doctor(sample: 0) }
        #expect(report.checks.first { $0.name == "capture" }?.status == .fail, "\(report.checks)")
        let tenants = try #require(report.checks.first { $0.name == "tenants" }, "\(report.checks.map(\.name))")
        #expect(tenants.status == .pass && tenants.detail.hasPrefix("2 registered"), "\(tenants)")
        #expect(report.checks.contains { $0.name == "credentials" })
    }
}

