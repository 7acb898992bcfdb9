import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

extension ProvisioningFixture {
    /// Registers `names` in the catalog as servers that all point at the shared test server (the
    /// admin password sealed), and returns their records.
    func registerServers(_ names: [String]) async throws -> [ServerRecord] {
        let admin = try await TestPostgres.url()
        let records = try names.map { name in
            ServerRecord(
                name: name, host: admin.host, port: admin.port, adminUser: admin.user,
                adminPasswordSealed: try admin.password.map { try keyring.seal($0, tenant: "server:\(name)", field: "admin_password") })
        }
        try await Catalog.withCatalog(catalogURL, logger: TestPostgres.logger) { catalog in
            for record in records { try await catalog.upsertServer(record) }
        }
        return records
    }

    /// The process ids of the server log's lines that contain `text` (the log has `log_statement=all`).
    func backendsLogging(_ text: String) async throws -> Set<String> {
        let log = try String(contentsOfFile: try await TestPostgres.server().logFilePath, encoding: .utf8)
        var pids: Set<String> = []
        for line in log.split(separator: "\n") where line.contains(text) {
            guard let open = line.firstIndex(of: "["), let close = line[open...].firstIndex(of: "]") else { continue }
            pids.insert(String(line[line.index(after: open)..<close]))
        }
        return pids
    }

    /// How often the server log shows `text`.
    func logCount(_ text: String) async throws -> Int {
        let log = try String(contentsOfFile: try await TestPostgres.server().logFilePath, encoding: .utf8)
        return log.split(separator: "\n").filter { $0.contains(text) }.count
    }
}

@Suite("provisioning sessions and placement", .timeLimit(.minutes(5)))
struct ProvisioningSessionTests {
    @Test("in one session, provisions reuse one admin connection and check the template once")
    func sessionReusesConnections() async throws {
        let fixture = try await ProvisioningFixture.make()
        let prefix = fixture.catalogURL.database
        let outcomes = try await fixture.withProvisioner { provisioner in
            try await provisioner.withSession { provisioner in
                var outcomes: [TenantProvisioner.Outcome] = []
                for id in 1...4 { outcomes.append(try await provisioner.provision(try TenantID("\(id)"))) }
                return outcomes
            }
        }
        #expect(outcomes.map(\.result) == Array(repeating: "created", count: 4))
        // Every mark and every clone ran on the same backend: one admin connection for all four sagas.
        // (Role DDL is not in the log: statement logging is off around it.)
        let roleBackends = try await fixture.backendsLogging("RENAME TO \"\(prefix)_")
        let cloneBackends = try await fixture.backendsLogging("TEMPLATE \"\(prefix)_tpl\"")
        #expect(roleBackends.count == 1 && cloneBackends == roleBackends, "\(roleBackends) \(cloneBackends)")
        // The template was looked up once (TemplateDatabase.prepare binds its name), not once per tenant.
        #expect(try await fixture.logCount("parameters: $1 = '\(prefix)_tpl'") == 1)
        #expect(try await fixture.leftovers().count == 12)

        // Without a session, each provision has connections of its own.
        _ = try await fixture.withProvisioner { try await $0.provision(try TenantID("5")) }
        #expect(try await fixture.backendsLogging("RENAME TO \"\(prefix)_").count == 2)
    }

    @Test("a template dropped behind a session's back: that provision is undone, the next one checks the template again")
    func sessionRechecksTemplateAfterFailure() async throws {
        let fixture = try await ProvisioningFixture.make()
        let prefix = fixture.catalogURL.database
        try await fixture.withProvisioner { provisioner in
            try await provisioner.withSession { provisioner in
                #expect(try await provisioner.provision(try TenantID("1")).result == "created")
                try await Database.withConnection(try await TestPostgres.url(), logger: TestPostgres.logger) { connection in
                    try await connection.query(
                        PostgresQuery(unsafeSQL: "DROP DATABASE \"\(prefix)_tpl\" WITH (FORCE)"), logger: TestPostgres.logger)
                }
                let error = await #expect(throws: TenantryError.self) { try await provisioner.provision(try TenantID("2")) }
                #expect(error?.message.contains("provisioning tenant 2 failed (undone)") == true, "\(String(describing: error))")
                #expect(try await provisioner.provision(try TenantID("3")).result == "created")
                #expect(try await provisioner.provision(try TenantID("2")).result == "created")
            }
        }
        #expect(try await fixture.leftovers() == [
            "credential:1", "credential:2", "credential:3", "db:\(prefix)_1_db", "db:\(prefix)_2_db", "db:\(prefix)_3_db",
            "role:\(prefix)_u_1", "role:\(prefix)_u_2", "role:\(prefix)_u_3",
        ])
    }

    @Test("concurrent provisions place one after another: the fewest active or provisioning tenants wins; failed ones do not count")
    func concurrentPlacement() async throws {
        let fixture = try await ProvisioningFixture.make()
        let servers = try await fixture.registerServers(["a", "b"])
        // A failed tenant recorded on a: not counted, so a (first name) still gets the first tenant.
        try await Catalog.withCatalog(fixture.catalogURL, logger: TestPostgres.logger) { catalog in
            var failed = TenantRecord(id: try TenantID("x"), status: .failed)
            failed.serverName = "a"
            failed.databaseName = "\(fixture.catalogURL.database)_x_db"
            try await catalog.upsertTenant(failed)
        }
        let placed = try await fixture.withProvisioner(servers: servers) { provisioner in
            try await provisioner.withSession { provisioner in
                try await withThrowingTaskGroup(of: TenantProvisioner.Outcome.self) { group in
                    for id in 1...5 { group.addTask { try await provisioner.provision(try TenantID("\(id)")) } }
                    return try await group.reduce(into: [String: Int]()) { $0[$1.server, default: 0] += 1 }
                }
            }
        }
        #expect(placed == ["a": 3, "b": 2], "\(placed)")
        let recorded = try await TestPostgres.strings(fixture.catalogURL, """
            SELECT server_name || ':' || count(*) FROM tenantry.tenants WHERE status = 'active' GROUP BY server_name ORDER BY 1
            """)
        #expect(recorded == ["a:3", "b:2"])
    }

    @Test("a crashed provision's database on another server is dropped; a dedicated tenant is never dropped and re-made")
    func leftoversOnAnotherServer() async throws {
        let fixture = try await ProvisioningFixture.make()
        let prefix = fixture.catalogURL.database
        let servers = try await fixture.registerServers(["a", "b"])
        // As a process killed mid-saga leaves it: the row says provisioning on a, under older names,
        // and both carry the tenant's mark (Tenantry made them).
        try await Database.withConnection(try await TestPostgres.url(), logger: TestPostgres.logger) { connection in
            for statement in ["CREATE ROLE \"\(prefix)_old_u\"", "CREATE DATABASE \"\(prefix)_old_db\"",
                              "COMMENT ON ROLE \"\(prefix)_old_u\" IS 'tenantry:tenant=9'",
                              "COMMENT ON DATABASE \"\(prefix)_old_db\" IS 'tenantry:tenant=9'"] {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: TestPostgres.logger)
            }
        }
        try await Catalog.withCatalog(fixture.catalogURL, logger: TestPostgres.logger) { catalog in
            var stuck = TenantRecord(id: try TenantID("9"), status: .provisioning)
            stuck.serverName = "a"
            stuck.databaseName = "\(prefix)_old_db"
            stuck.roleName = "\(prefix)_old_u"
            try await catalog.upsertTenant(stuck)
            var moved = TenantRecord(id: try TenantID("8"), status: .failed, placement: .dedicated)
            moved.databaseName = "\(prefix)_8_db"
            try await catalog.upsertTenant(moved)
        }
        let outcome = try await fixture.withProvisioner(servers: servers) { try await $0.provision(try TenantID("9"), server: "b") }
        #expect(outcome.result == "created" && outcome.server == "b")
        #expect(try await fixture.leftovers() == ["credential:9", "db:\(prefix)_9_db", "role:\(prefix)_u_9"])

        let refused = await #expect(throws: TenantryError.self) {
            try await fixture.withProvisioner(servers: servers) { try await $0.provision(try TenantID("8")) }
        }
        #expect(refused?.code == .conflict && refused?.message.contains("placement dedicated") == true, "\(String(describing: refused))")
        #expect(try await TestPostgres.strings(fixture.catalogURL, "SELECT status FROM tenantry.tenants WHERE id = '8'") == ["failed"])
    }
}
