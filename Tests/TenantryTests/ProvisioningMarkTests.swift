import Foundation
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

extension ProvisioningFixture {
    /// Runs `statements` as the superuser on the shared server's `postgres` database.
    func admin(_ statements: [String], database: String = "postgres") async throws {
        try await Database.withConnection(try await TestPostgres.url(database: database), logger: TestPostgres.logger) { connection in
            for statement in statements { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: TestPostgres.logger) }
        }
    }

    /// The catalog row of `id`: status, database name (or `-`).
    func row(_ id: String) async throws -> [String?] {
        try await TestPostgres.strings(catalogURL, "SELECT status || ':' || coalesce(database_name, '-') FROM tenantry.tenants WHERE id = '\(id)'")
    }
}

@Suite("provisioning drops only what it made; role DDL stays out of the log", .timeLimit(.minutes(5)))
struct ProvisioningMarkTests {
    @Test("a database and role of a tenant's names made by someone else are never dropped, on this try or the next")
    func nameCollision() async throws {
        let fixture = try await ProvisioningFixture.make()
        let database = fixture.naming.databaseName(for: try TenantID("4"))
        let role = fixture.naming.roleName(for: try TenantID("4"))
        try await fixture.admin(["CREATE DATABASE \"\(database)\"", "CREATE ROLE \"\(role)\""])
        try await fixture.admin(["CREATE TABLE precious (v text)", "INSERT INTO precious VALUES ('keep me')"], database: database)
        for _ in 0..<2 {
            let error = await #expect(throws: TenantryError.self) {
                try await fixture.withProvisioner { try await $0.provision(try TenantID("4")) }
            }
            #expect(error?.code == .conflict, "\(String(describing: error))")
            #expect(error?.message.contains("was not created by Tenantry for tenant 4") == true, "\(String(describing: error))")
        }
        let precious = try await TestPostgres.strings(try await TestPostgres.url(database: database), "SELECT v FROM precious")
        #expect(precious == ["keep me"])
        #expect(try await TestPostgres.strings(fixture.catalogURL, "SELECT count(*)::text FROM pg_roles WHERE rolname = '\(role)'") == ["1"])
        // The failed row names no database: nothing a later run could take for its own leftover.
        #expect(try await fixture.row("4") == ["failed:-"])
        try await fixture.admin(["DROP DATABASE \"\(database)\"", "DROP ROLE \"\(role)\""])
    }

    @Test("a restored catalog that lost a tenant: its live database is not dropped and made again")
    func restoredCatalog() async throws {
        let fixture = try await ProvisioningFixture.make()
        _ = try await fixture.withProvisioner { try await $0.provision(try TenantID("6")) }
        let url = try await fixture.tenantURL("6", password: try await fixture.password("6"))
        _ = try await TestPostgres.strings(url, "INSERT INTO customers (name) VALUES ('live data') RETURNING name")
        // The catalog as a backup from before the tenant was provisioned has it.
        try await fixture.admin([
            "DELETE FROM tenantry.credentials WHERE tenant_id = '6'", "DELETE FROM tenantry.moves WHERE tenant_id = '6'",
            "DELETE FROM tenantry.tenants WHERE id = '6'",
        ], database: fixture.catalogURL.database)
        for _ in 0..<2 {
            let error = await #expect(throws: TenantryError.self) {
                try await fixture.withProvisioner { try await $0.provision(try TenantID("6")) }
            }
            #expect(error?.message.contains("the catalog records no unfinished provision") == true, "\(String(describing: error))")
        }
        #expect(try await TestPostgres.strings(url, "SELECT name FROM customers") == ["live data"])
    }

    @Test("a crashed run's marked leftovers on the same server are dropped and the tenant provisioned")
    func crashedRunLeftovers() async throws {
        let fixture = try await ProvisioningFixture.make()
        let database = fixture.naming.databaseName(for: try TenantID("3"))
        let role = fixture.naming.roleName(for: try TenantID("3"))
        try await fixture.admin([
            "CREATE ROLE \"\(role)\"", "CREATE DATABASE \"\(database)\"",
            "COMMENT ON ROLE \"\(role)\" IS 'tenantry:tenant=3'", "COMMENT ON DATABASE \"\(database)\" IS 'tenantry:tenant=3'",
        ])
        try await Catalog.withCatalog(fixture.catalogURL, logger: TestPostgres.logger) { catalog in
            var stuck = TenantRecord(id: try TenantID("3"), status: .provisioning)
            stuck.databaseName = database
            stuck.roleName = role
            try await catalog.upsertTenant(stuck)
        }
        let outcome = try await fixture.withProvisioner { try await $0.provision(try TenantID("3")) }
        #expect(outcome.result == "created")
        // The database is the new one: a clone of the template, at the latest version.
        #expect(outcome.schemaVersion == 2)
    }

    @Test("a run killed between CREATE DATABASE and its mark leaves only a staging database: the next run drops it and provisions")
    func killedBeforeMark() async throws {
        let fixture = try await ProvisioningFixture.make()
        let database = fixture.naming.databaseName(for: try TenantID("4"))
        let role = fixture.naming.roleName(for: try TenantID("4"))
        // What a SIGKILL right after the clone leaves: the marked role, an unmarked staging database,
        // the catalog's record of the unfinished run; the final name is free.
        try await fixture.admin([
            "CREATE ROLE \"\(role)\"", "COMMENT ON ROLE \"\(role)\" IS 'tenantry:tenant=4'",
            "CREATE DATABASE \"\(TenantProvisioner.stagingPrefix(database: database))0badc0de\"",
        ])
        try await Catalog.withCatalog(fixture.catalogURL, logger: TestPostgres.logger) { catalog in
            var stuck = TenantRecord(id: try TenantID("4"), status: .provisioning)
            stuck.databaseName = database
            stuck.roleName = role
            try await catalog.upsertTenant(stuck)
        }
        let outcome = try await fixture.withProvisioner { try await $0.provision(try TenantID("4")) }
        #expect(outcome.result == "created")
        #expect(try await TestPostgres.strings(
            fixture.catalogURL,
            "SELECT count(*)::text FROM pg_database WHERE starts_with(datname, '\(TenantProvisioner.stagingPrefix(database: database))')")
            == ["0"])
        #expect(try await TestPostgres.strings(
            fixture.catalogURL, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '\(database)'")
            == ["tenantry:tenant=4"])
    }

    @Test("deprovision refuses a database without the tenant's mark; provision of the healthy tenant marks it")
    func deprovisionNeedsMark() async throws {
        let fixture = try await ProvisioningFixture.make()
        _ = try await fixture.withProvisioner { try await $0.provision(try TenantID("5")) }
        let database = fixture.naming.databaseName(for: try TenantID("5"))
        let marks = """
            SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '\(database)'
            UNION ALL SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = '\(fixture.naming.roleName(for: try TenantID("5")))'
            """
        #expect(try await TestPostgres.strings(fixture.catalogURL, marks) == ["tenantry:tenant=5", "tenantry:tenant=5"])
        // As a database provisioned before marks existed.
        try await fixture.admin(["COMMENT ON DATABASE \"\(database)\" IS NULL"])
        let directory = "/tmp/tenantry-archive-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let error = await #expect(throws: TenantryError.self) {
            try await fixture.withProvisioner { try await $0.deprovision(try TenantID("5"), archiveDirectory: directory) }
        }
        #expect(error?.message.contains("does not carry the mark 'tenantry:tenant=5'") == true, "\(String(describing: error))")
        #expect(try await fixture.leftovers().contains("db:\(database)"))
        let archived = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        #expect(archived.isEmpty, "refused before anything is archived")

        #expect(try await fixture.withProvisioner { try await $0.provision(try TenantID("5")) }.result == "existing")
        #expect(try await TestPostgres.strings(fixture.catalogURL, marks) == ["tenantry:tenant=5", "tenantry:tenant=5"])
        _ = try await fixture.withProvisioner { try await $0.deprovision(try TenantID("5"), archiveDirectory: directory) }
        #expect(try await fixture.leftovers() == [])
    }

    @Test("no PASSWORD statement reaches the server log (log_statement=all) through provisioning or a password rotation")
    func roleDDLNotLogged() async throws {
        let fixture = try await ProvisioningFixture.make()
        let prefix = fixture.catalogURL.database
        _ = try await fixture.withProvisioner { provisioner in
            _ = try await provisioner.provision(try TenantID("1"))
            _ = try await provisioner.provision(try TenantID("2"))
        }
        try await Catalog.withCatalog(fixture.catalogURL, logger: TestPostgres.logger) { catalog in
            try await CredentialRotation(catalog: catalog, keyring: fixture.keyring, actor: "test", logger: TestPostgres.logger)
                .rotatePassword(of: try TenantID("1"), servers: ServerDirectory(
                    databaseURL: fixture.catalogURL, superuser: nil, superuserPassword: nil, servers: [], keyring: nil))
        }
        let verifiers = try await TestPostgres.strings(
            fixture.catalogURL, "SELECT rolpassword FROM pg_authid WHERE starts_with(rolname, '\(prefix)_') ORDER BY 1").compactMap { $0 }
        #expect(verifiers.count == 2 && verifiers.allSatisfy { $0.hasPrefix("SCRAM-SHA-256$4096:") })
        let log = try String(contentsOfFile: try await TestPostgres.server().logFilePath, encoding: .utf8)
        // The log is on: the saga's other statements are there.
        #expect(log.contains("RENAME TO \"\(prefix)_1_db\""))
        let roleLines = log.split(separator: "\n").filter { $0.contains("\(prefix)_u_") && $0.contains("PASSWORD") }
        #expect(roleLines.isEmpty, "\(roleLines.prefix(2))")
        for verifier in verifiers { #expect(!log.contains(verifier)) }
        // The stored password still opens the rotated role.
        try await Database.withConnection(try await fixture.tenantURL("1", password: try await fixture.password("1")),
                                          logger: TestPostgres.logger) { _ in }
    }
}
