import Foundation
import Logging
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// One classifier of errors for the router, the pool and the relay: codes and SQLSTATEs, never
/// message text.
@Suite("error classifier: connection failures and moved tenants")
struct ErrorClassifierTests {
    @Test("connection failures: refused connect, SQLSTATE 57P/08, closed connection; statement errors are not")
    func connectionFailures() async throws {
        let logger = TestPostgres.logger
        let refused = await #expect(throws: TenantryError.self) {
            _ = try await Database.connect(try PostgresURL("postgres://app@127.0.0.1:1/db"), logger: logger)
        }
        #expect(refused?.code == .connectionFailed)
        #expect(refused?.message.hasPrefix("cannot connect to postgres://app@127.0.0.1:1/db") == true)
        #expect(Database.isConnectionFailure(try #require(refused)))
        #expect(Database.isConnectionFailure(try #require(refused?.underlying)))

        let url = try await TestPostgres.url()
        let connection = try await Database.connect(url, logger: logger)
        let syntax = await #expect(throws: PSQLError.self) { try await connection.query("SELEC 1", logger: logger) }
        #expect(Database.sqlState(of: try #require(syntax)) == "42601")
        #expect(!Database.isConnectionFailure(try #require(syntax)))
        // Server errors of class 57P (here admin_shutdown, as a terminated session reports it) and 08,
        // each on a connection of its own (PostgresNIO closes a connection after some of them).
        for state in ["57P01", "08006"] {
            let own = try await Database.connect(url, logger: logger)
            let raised = await #expect(throws: PSQLError.self) {
                try await withDeadline(.seconds(10), "raising \(state)") {
                    _ = try await own.query(
                        PostgresQuery(unsafeSQL: "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '\(state)'; END $$"), logger: logger)
                }
            }
            #expect(Database.isConnectionFailure(try #require(raised)), "\(state)")
            _ = try? await withDeadline(.seconds(5), "closing") { try await own.close() }
        }
        try? await connection.close()
        // (PostgresNIO may never answer a query sent on a closed connection: queryIfOpen refuses it.)
        let closed = await #expect(throws: TenantryError.self) { try await connection.queryIfOpen("SELECT 1", logger: logger) }
        #expect(closed?.code == .connectionFailed)
        #expect(Database.isConnectionFailure(try #require(closed)))
    }

    @Test("TenantryError codes: connectionFailed is one, a wrapped failure is one, a timeout or conflict is not")
    func codes() {
        #expect(Database.isConnectionFailure(TenantryError(code: .connectionFailed, message: "x")))
        #expect(!Database.isConnectionFailure(TenantryError(code: .timeout, message: "cannot connect, says the text")))
        #expect(!Database.isConnectionFailure(TenantryError(code: .database, message: "cannot connect to somewhere")))
        #expect(Database.isConnectionFailure(TenantryError(
            code: .timeout, message: "pool: gave up", underlying: TenantryError(code: .connectionFailed, message: "x"))))
        #expect(Database.isTenantMoved(TenantryError(code: .tenantMoved, message: "x")))
        #expect(!Database.isTenantMoved(TenantryError(code: .conflict, message: "tenant 1 has moved")))
    }

    @Test("a moved tenant is told by SQLSTATE 25006 and the guard's hint, not by the message")
    func tenantMoved() async throws {
        let logger = TestPostgres.logger
        let connection = try await Database.connect(try await TestPostgres.url(), logger: logger)
        let marked = await #expect(throws: PSQLError.self) {
            try await connection.query(PostgresQuery(unsafeSQL: """
                DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction', MESSAGE = 'anything at all',
                    HINT = '\(Database.tenantMovedHint)'; END $$
                """), logger: logger)
        }
        #expect(Database.isTenantMoved(try #require(marked)))
        #expect(Database.isTenantMoved(TenantryError(code: .database, message: "x", underlying: try #require(marked))))
        let unmarked = await #expect(throws: PSQLError.self) {
            try await connection.query(PostgresQuery(unsafeSQL: """
                DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction',
                    MESSAGE = 'tenant 1 has moved to its own database'; END $$
                """), logger: logger)
        }
        #expect(!Database.isTenantMoved(try #require(unmarked)))
        try? await connection.close()
    }
}

@Suite("router: a write refused because the tenant moved surfaces tenantMoved", .timeLimit(.minutes(3)))
struct RouterTenantMovedTests {
    @Test("the guard refuses a write for a moved tenant while the catalog still routes it to unified: tenantMoved")
    func movedWithoutCatalogFlip() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 10)
        try await fixture.withMover { copier, _, catalog in
            let tenant = fixture.ids[0]
            _ = try await copier.copy(tenant)
            // The switch committed in unified, the catalog flip not yet (as after a crash in between).
            _ = try await TestPostgres.strings(fixture.unifiedURL, """
                UPDATE tenantry.capture_state SET moved = true WHERE tenant_id = '\(tenant.rawValue)' RETURNING 'ok'
                """)
            var pool = TenantPool.Configuration()
            pool.leaseTimeout = .seconds(1)
            let router = TenantRouter(
                configuration: TenantRouter.Configuration(unifiedURL: fixture.unifiedURL, pool: pool), catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: fixture.base.keyring), servers: fixture.directory(),
                logger: MoveFixture.logger)
            let refused = await #expect(throws: TenantryError.self) {
                try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                    try await connection.query("UPDATE customers SET notes = 'routed' WHERE shop_id = 1")
                }
            }
            #expect(refused?.code == .tenantMoved, "\(String(describing: refused))")
            #expect(refused?.message.contains("tenant 1 has moved to its own database") == true)
            #expect(refused?.tenant == tenant.rawValue)
            // The other tenant writes as before.
            _ = try await router.withTransaction(tenant: fixture.ids[1], intent: .write) { connection in
                try await connection.query("UPDATE customers SET notes = 'routed' WHERE shop_id = 2")
            }
        }
    }
}
