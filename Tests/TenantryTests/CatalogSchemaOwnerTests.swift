import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("catalog: a pre-existing tenantry schema must be owned by the login (or a superuser)", .timeLimit(.minutes(2)))
struct CatalogSchemaOwnerTests {
    let logger = TestPostgres.logger

    func withOwner(superuser: Bool, _ body: (PostgresURL, String) async throws -> Void) async throws {
        let url = try await TestPostgres.makeDatabase("owner")
        let role = "\(url.database)_owner"
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE ROLE \(role) NOLOGIN\(superuser ? " SUPERUSER" : "")"), logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA tenantry AUTHORIZATION \(role)"), logger: logger)
        }
        try await body(url, role)
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query("DROP SCHEMA tenantry CASCADE", logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: "DROP ROLE \(role)"), logger: logger)
        }
    }

    @Test("owned by another (non-superuser) role: init refuses with one clear error and creates nothing; after ALTER SCHEMA … OWNER it succeeds")
    func foreignOwnerRefused() async throws {
        try await withOwner(superuser: false) { url, role in
            try await Catalog.withCatalog(url, logger: logger) { catalog in
                await #expect {
                    _ = try await catalog.migrate()
                } throws: { error in
                    let message = Database.message(of: error)
                    return (error as? TenantryError)?.code == .catalogMigration
                        && message.contains("schema tenantry already exists and is owned by role \(role)") && !message.contains("\n")
                }
            }
            #expect(try await TestPostgres.strings(url, """
                SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tenantry'
                """) == [], "nothing was created in the foreign schema")
            try await Database.withConnection(url, logger: logger) { connection in
                try await connection.query("ALTER SCHEMA tenantry OWNER TO CURRENT_USER", logger: logger)
            }
            try await Catalog.withCatalog(url, logger: logger) { catalog in
                let report = try await catalog.migrate()
                #expect(report.version == 4)
            }
        }
    }

    @Test("owned by a superuser: accepted (a superuser can do anything anyway)")
    func superuserOwnerAccepted() async throws {
        try await withOwner(superuser: true) { url, _ in
            try await Catalog.withCatalog(url, logger: logger) { catalog in
                let report = try await catalog.migrate()
                #expect(report.version == 4)
            }
        }
    }
}
