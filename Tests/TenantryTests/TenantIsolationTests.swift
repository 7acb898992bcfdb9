import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenant roles reach their own database only", .timeLimit(.minutes(5)))
struct TenantIsolationTests {
    let logger = TestPostgres.logger

    /// Whether `url` accepts a login; the server's message when it does not.
    func connect(_ url: PostgresURL) async -> String? {
        do {
            try await Database.withConnection(url, logger: logger) { try await $0.query("SELECT 1", logger: logger) }
            return nil
        } catch {
            return Database.message(of: error)
        }
    }

    @Test("3 tenants, every pair: own database only (not another's, the template, unified, postgres, template1); DML only")
    func everyPair() async throws {
        let fixture = try await ProvisioningFixture.make()
        let ids = ["1", "2", "3"]
        _ = try await fixture.withProvisioner { provisioner in
            for id in ids { _ = try await provisioner.provision(try TenantID(id)) }
        }
        // A login role of the application, made before the lockdown: it must keep its access.
        let app = "app_\(UUID().uuidString.prefix(8).lowercased())"
        try await fixture.admin(["CREATE ROLE \(app) LOGIN PASSWORD 'app-secret'"])
        let directory = ServerDirectory(
            databaseURL: fixture.catalogURL, superuser: nil, superuserPassword: nil, servers: [], keyring: fixture.keyring)
        let lockedHere = try await Catalog.withCatalog(fixture.catalogURL, logger: logger) { catalog in
            let lockdown = ConnectLockdown(
                catalog: catalog, servers: directory, unifiedDatabase: fixture.catalogURL.database, appRoles: [], logger: logger)
            // Before: every tenant role reaches the unified database (PUBLIC may connect to it).
            let before = try await lockdown.reach()
            #expect(before.map(\.tenant) == ids, "\(before)")
            #expect(before.allSatisfy { $0.databases.contains(fixture.catalogURL.database) }, "\(before)")
            let planned = try await lockdown.plan()
            let unified = try #require(planned.first { $0.database == fixture.catalogURL.database })
            let tenantRoles = try ids.map { fixture.naming.roleName(for: try TenantID($0)) }
            #expect(unified.grantTo.contains(app) && Set(unified.tenantRolesShutOut).isSuperset(of: tenantRoles), "\(unified)")
            #expect(Set(unified.grantTo).isDisjoint(with: tenantRoles))
            // Other tests create and drop databases on the shared server meanwhile: compare this
            // test's own databases only.
            let own = Set([fixture.catalogURL.database, "postgres", "template1", fixture.naming.templateDatabase]
                + (try ids.map { fixture.naming.databaseName(for: try TenantID($0)) }))
            func mine(_ reach: [ConnectLockdown.Reach]) -> [String: [String]] {
                Dictionary(uniqueKeysWithValues: reach.map { ($0.tenant, $0.databases.filter(own.contains)) })
            }
            #expect(mine(try await lockdown.reach()) == mine(before), "plan changes nothing")
            try await lockdown.apply()
            // Doctor's check. (The shared test server has other tests' databases, open to PUBLIC:
            // reach lists those too, as it would any other database of a real cluster.)
            let closed = Set([fixture.catalogURL.database, "postgres", "template1", fixture.naming.templateDatabase]
                + (try ids.map { fixture.naming.databaseName(for: try TenantID($0)) }))
            let after = try await lockdown.reach()
            #expect(after.allSatisfy { closed.isDisjoint(with: $0.databases) }, "\(after)")
            #expect(try await lockdown.plan().allSatisfy { $0.database != fixture.catalogURL.database }, "a re-run has nothing to do there")
            return Set(planned.map(\.database))
        }

        let server = try await TestPostgres.url()
        let others = [fixture.naming.templateDatabase, fixture.catalogURL.database, "postgres", "template1"]
        for id in ids {
            let password = try await fixture.password(id)
            let own = try await fixture.tenantURL(id, password: password)
            #expect(await connect(own) == nil, "tenant \(id) cannot reach its own database")
            for other in ids where other != id {
                let message = await connect(own.with(database: fixture.naming.databaseName(for: try TenantID(other))))
                #expect(message?.contains("permission denied") == true, "tenant \(id) → tenant \(other): \(message ?? "connected")")
            }
            for database in others {
                let message = await connect(own.with(database: database))
                #expect(message != nil, "tenant \(id) connected to \(database)")
            }
            try await Database.withConnection(own, logger: logger) { connection in
                try await Database.execute(script: """
                    INSERT INTO customers (name) VALUES ('c\(id)');
                    INSERT INTO repairs (customer_id, status) SELECT id, 'open' FROM customers;
                    UPDATE repairs SET status = 'done';
                    DELETE FROM repairs;
                    SELECT count(*) FROM customers;
                    """, on: connection, logger: logger)
                for statement in [
                    "TRUNCATE repairs",
                    "CREATE TRIGGER t BEFORE UPDATE ON repairs FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
                ] {
                    let refused = await #expect(throws: (any Error).self, "\(statement)") {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    #expect(refused.map { Database.message(of: $0).contains("permission denied") } == true,
                            "\(refused.map { Database.message(of: $0) } ?? "")")
                }
            }
        }
        // The template accepts no connection at all, the admin's included; provisioning still clones it.
        #expect(await connect(server.with(database: fixture.naming.templateDatabase))?.contains("not currently accepting connections") == true)
        #expect(try await fixture.withProvisioner { try await $0.provision(try TenantID("4")) }.result == "created")
        // The application role and the admin keep their access (to postgres too, when this test's
        // lockdown closed it: tests in this process share the server, another may have done it first).
        for database in [fixture.catalogURL.database] + (lockedHere.contains("postgres") ? ["postgres"] : []) {
            #expect(await connect(server.with(database: database).with(user: app, password: "app-secret")) == nil, "\(app) → \(database)")
            #expect(await connect(server.with(database: database)) == nil)
        }
    }
}
