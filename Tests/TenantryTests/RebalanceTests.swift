import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Two real servers: `a` (the shared test server) and `b` (a second EmbeddedPostgres), tenants
/// 1 and 2 on `a` (1 with about 6 MB of rows), tenant 3 on `b`, all dedicated.
struct RebalanceFixture {
    let base: ProvisioningFixture
    let second: RestartableServer
    let servers: [ServerRecord]

    /// Runs `body` with a new fixture, then removes the second server.
    static func with(_ body: (RebalanceFixture) async throws -> Void) async throws {
        let fixture = try await make()
        do {
            try await body(fixture)
            try await fixture.second.remove()
        } catch {
            try? await fixture.second.remove()
            throw error
        }
    }

    static func make() async throws -> RebalanceFixture {
        let base = try await ProvisioningFixture.make()
        let second = try await RestartableServer.start()
        do {
            let a = try await TestPostgres.url(), b = try second.url()
            let servers = try [("a", a), ("b", b)].map { name, url in
                ServerRecord(
                    name: name, host: url.host, port: url.port, adminUser: url.user,
                    adminPasswordSealed: try url.password.map { try base.keyring.seal($0, tenant: "server:\(name)", field: "admin_password") })
            }
            let fixture = RebalanceFixture(base: base, second: second, servers: servers)
            try await fixture.setBudgets([:])
            try await base.withProvisioner(servers: servers) { provisioner in
                for (id, server) in [("1", "a"), ("2", "a"), ("3", "b")] {
                    _ = try await provisioner.provision(try TenantID(id), server: server)
                }
            }
            try await fixture.fill("1", megabytes: 6)
            for id in ["1", "2", "3"] {
                _ = try await TestPostgres.strings(
                    base.catalogURL, "INSERT INTO tenantry.moves (tenant_id, phase) VALUES ('\(id)', 'dedicated') " + "ON CONFLICT (tenant_id) DO UPDATE SET phase = 'dedicated'")
            }
            return fixture
        } catch {
            try? await second.remove()
            throw error
        }
    }

    /// Writes about `megabytes` MB of rows into tenant `id`'s database.
    func fill(_ id: String, megabytes: Int) async throws {
        let record = try await withOperations { try await $0.catalog.requireTenant(try TenantID(id)) }
        let url = try directory().adminURL(of: record)
        _ = try await TestPostgres.strings(
            url, "INSERT INTO customers (name) SELECT repeat(md5(g::text), 30) FROM generate_series(1, \(megabytes * 1000)) g")
    }

    /// Registers both servers with these byte budgets (others: none).
    func setBudgets(_ budgets: [String: Int64]) async throws {
        try await Catalog.withCatalog(base.catalogURL, logger: TestPostgres.logger) { catalog in
            for var record in servers {
                record.maxBytes = budgets[record.name]
                try await catalog.upsertServer(record)
            }
        }
    }

    func directory() -> ServerDirectory {
        ServerDirectory(databaseURL: base.catalogURL, superuser: nil, superuserPassword: nil, servers: servers, keyring: base.keyring)
    }

    func withOperations<T: Sendable>(_ body: @Sendable (Operations) async throws -> T) async throws -> T {
        var configuration = TenantryConfiguration()
        configuration.keyring = base.keyring
        configuration.naming = base.naming
        return try await Operations.with(configuration: configuration, databaseURL: base.catalogURL, actor: "test", logger: TestPostgres.logger, body)
    }

    func placements() async throws -> [String] {
        try await TestPostgres.strings(base.catalogURL, "SELECT id || '@' || coalesce(server_name, 'default') FROM tenantry.tenants ORDER BY id")
            .compactMap { $0 }
    }
}

@Suite("rebalance: measures, plans, placement and drains on two real servers", .timeLimit(.minutes(5)))
struct RebalanceTests {
    static let mb: Int64 = 1024 * 1024

    @Test("measured sizes are pg_database_size's, connections and transactions per second are pg_stat_database's")
    func measures() async throws {
        try await RebalanceFixture.with { fixture in
            let tenant2 = try fixture.directory().adminURL(server: "a", database: fixture.base.naming.databaseName(for: try TenantID("2")))
            let tenant3 = try fixture.directory().adminURL(server: "b", database: fixture.base.naming.databaseName(for: try TenantID("3")))
            // Tenant 3 holds a connection open; tenant 2 runs transactions while the two samples are taken.
            let measure = try await Database.withConnection(tenant3, logger: TestPostgres.logger) { _ in
                try await Database.withConnection(tenant2, logger: TestPostgres.logger) { connection in
                    try await withThrowingTaskGroup(of: FleetMeasure?.self) { group in
                        group.addTask {
                            // Longer than the samples: PostgreSQL flushes a backend's counters about once a second.
                        for _ in 0..<300 {
                            try await connection.query("SELECT 1", logger: TestPostgres.logger)
                            try await Task.sleep(for: .milliseconds(10))
                        }
                            return nil
                        }
                        group.addTask { try await fixture.withOperations { try await $0.measureFleet(sample: .seconds(2)) } }
                        var measure: FleetMeasure?
                        for try await result in group { measure = measure ?? result }
                        return try #require(measure)
                    }
                }
            }
            #expect(measure.servers.map(\.name) == ["default", "a", "b"])
            #expect(measure.servers.first?.acceptsTenants == false, "the default server takes no tenants once servers are registered")
            let byID = Dictionary(uniqueKeysWithValues: measure.tenants.map { ($0.id.rawValue, $0) })
            #expect(byID.keys.sorted() == ["1", "2", "3"])
            let one = try #require(byID["1"]), two = try #require(byID["2"]), three = try #require(byID["3"])
            #expect(one.server == "a" && two.server == "a" && three.server == "b")
            let size = try await TestPostgres.strings(
                fixture.base.catalogURL, "SELECT pg_database_size('\(one.database)')::text").first.flatMap { $0.flatMap { Int64($0) } }
            // Read again a moment later: autovacuum may have added a page or two (CI saw 16 kB).
            #expect(abs(one.bytes - (size ?? 0)) <= 256 * 1024, "measured \(one.bytes), pg_database_size \(String(describing: size))")
            #expect(one.bytes - two.bytes > 4 * Self.mb, "the 6 MB of rows: \(one.bytes) vs \(two.bytes)")
            #expect(three.connections >= 1)
            #expect(two.queriesPerSecond > 1, "\(two.queriesPerSecond)")
            #expect(measure.servers.first { $0.name == "a" }?.bytes == one.bytes + two.bytes)
            #expect(measure.tenants.allSatisfy { $0.pinned == nil })
        }
    }

    @Test("one server over its byte budget: the plan moves a tenant to the other and says why; nothing changes")
    func planOverBudget() async throws {
        try await RebalanceFixture.with { fixture in
            let measured = try await fixture.withOperations { try await $0.measureFleet(sample: .zero) }
            let onA = try #require(measured.servers.first { $0.name == "a" }?.bytes)
            let budget = onA - 2 * Self.mb
            try await fixture.setBudgets(["a": budget, "b": 1024 * Self.mb])
            let report = try await fixture.withOperations { try await $0.rebalancePlan(sample: .zero) }
            let first = try #require(report.plan.moves.first, "\(report.plan)")
            #expect(first.from == "a" && first.to == "b")
            #expect(first.tenant.rawValue == "2", "the smallest tenant that brings a under its budget")
            #expect(first.reason == "server a is over its byte budget (\(ByteSize.format(onA)) of \(ByteSize.format(budget)))")
            #expect(report.plan.unresolved.isEmpty)
            #expect(report.plan.servers.first { $0.server.name == "a" }.map { $0.after.bytes <= budget } == true)
            #expect(try await fixture.placements() == ["1@a", "2@a", "3@b"])
        }
    }

    @Test("placement: a new tenant goes to the server with room, not to the one with fewer bytes; none with room is one clear error")
    func placementWithRoom() async throws {
        try await RebalanceFixture.with { fixture in
            try await fixture.fill("3", megabytes: 20)  // b now holds more bytes than a
            let measured = try await fixture.withOperations { try await $0.measureFleet(sample: .zero) }
            let onA = try #require(measured.servers.first { $0.name == "a" }?.bytes)
            let onB = try #require(measured.servers.first { $0.name == "b" }?.bytes)
            #expect(onB > onA)
            try await fixture.setBudgets(["a": onA + Self.mb])  // a has no room for another database
            let outcome = try await fixture.base.withProvisioner(servers: fixture.servers) { try await $0.provision(try TenantID("4")) }
            #expect(outcome.result == "created")
            #expect(try await fixture.placements() == ["1@a", "2@a", "3@b", "4@b"])

            try await fixture.setBudgets(["a": onA + Self.mb, "b": onB + Self.mb])
            let error = await #expect(throws: TenantryError.self) {
                try await fixture.base.withProvisioner(servers: fixture.servers) { try await $0.provision(try TenantID("5")) }
            }
            #expect(error?.message.hasPrefix("no registered server has room for tenant 5: a holds ") == true, "\(String(describing: error?.message))")
            let placements = try await fixture.placements()
            #expect(!placements.contains("5@a") && !placements.contains("5@b"), "\(placements)")
        }
    }

    @Test("drain with no room elsewhere: one clear error naming the tenant, nothing moved; with room, the plan moves all of them")
    func drainWithoutRoom() async throws {
        try await RebalanceFixture.with { fixture in
            let measured = try await fixture.withOperations { try await $0.measureFleet(sample: .zero) }
            let onB = try #require(measured.servers.first { $0.name == "b" }?.bytes)
            try await fixture.setBudgets(["b": onB + 2 * Self.mb])
            let error = await #expect(throws: TenantryError.self) {
                try await fixture.withOperations { operations in
                    try await operations.applyRebalance(try await operations.drainPlan("a", sample: .zero))
                }
            }
            #expect(error?.code == .conflict)
            #expect(error?.message.hasPrefix("cannot drain server a, nothing was moved: no server has room for tenant 1 (") == true,
                    "\(String(describing: error?.message))")
            #expect(try await fixture.placements() == ["1@a", "2@a", "3@b"])

            try await fixture.setBudgets([:])
            let plan = try await fixture.withOperations { try await $0.drainPlan("a", sample: .zero) }
            #expect(plan.plan.moves.map { "\($0.tenant)→\($0.to)" } == ["1→b", "2→b"])
            #expect(plan.plan.moves.allSatisfy { $0.reason == "server a is draining" })
            let unknown = await #expect(throws: TenantryError.self) { try await fixture.withOperations { try await $0.drainPlan("zz") } }
            #expect(unknown?.message == "server 'zz' is not registered (tenantry servers list)")
        }
    }

    @Test("a server that cannot be reached: measuring names it (no secret); placement goes to the other one")
    func unreachableServer() async throws {
        try await RebalanceFixture.with { fixture in
            try await fixture.second.stop()
            let error = await #expect(throws: TenantryError.self) { try await fixture.withOperations { try await $0.measureFleet(sample: .zero) } }
            let port = fixture.servers[1].port
            #expect(error?.message.hasPrefix("cannot measure server 'b' (\(fixture.servers[1].host):\(port)): ") == true, "\(String(describing: error?.message))")
            let password = try fixture.second.url().password ?? "-"
            #expect(error.map { !$0.message.contains(password) } == true)
            _ = try await fixture.base.withProvisioner(servers: fixture.servers) { try await $0.provision(try TenantID("4")) }
            #expect(try await fixture.placements().last == "4@a")
        }
    }
}
