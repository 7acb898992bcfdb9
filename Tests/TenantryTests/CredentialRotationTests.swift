import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("password rotation: pending first, never a lockout", .timeLimit(.minutes(3)))
struct CredentialRotationTests {
    let logger = TestPostgres.logger
    let tenant = "1"

    func rotate(_ fixture: ProvisioningFixture) async throws {
        try await Catalog.withCatalog(fixture.catalogURL, logger: logger) { catalog in
            try await CredentialRotation(catalog: catalog, keyring: fixture.keyring, actor: "test", logger: logger)
                .rotatePassword(of: try TenantID("1"), servers: ServerDirectory(
                    databaseURL: fixture.catalogURL, superuser: nil, superuserPassword: nil, servers: [], keyring: nil))
        }
    }

    func canLogIn(_ fixture: ProvisioningFixture, _ password: String) async -> Bool {
        do {
            try await Database.withConnection(try await fixture.tenantURL(tenant, password: password), logger: logger) { connection in
                try await connection.query("SELECT 1", logger: logger)
            }
            return true
        } catch {
            return false
        }
    }

    func pending(_ fixture: ProvisioningFixture) async throws -> String? {
        try await TestPostgres.strings(fixture.catalogURL, "SELECT pending_password_sealed FROM tenantry.credentials WHERE tenant_id = '1'").first ?? nil
    }

    @Test("the catalog write after ALTER ROLE fails: the stored password still logs in; the retry completes the pending password")
    func catalogWriteFails() async throws {
        let fixture = try await ProvisioningFixture.make()
        _ = try await fixture.withProvisioner { try await $0.provision(try TenantID("1")) }
        let old = try await fixture.password(tenant)
        // A real failure of the catalog write that makes a password the active one.
        try await Database.withConnection(fixture.catalogURL, logger: logger) { connection in
            try await Database.execute(script: """
                CREATE FUNCTION public.refuse_password() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'catalog write refused (test)'; END $$;
                CREATE TRIGGER refuse_password BEFORE UPDATE ON tenantry.credentials FOR EACH ROW
                    WHEN (NEW.password_sealed IS DISTINCT FROM OLD.password_sealed) EXECUTE FUNCTION public.refuse_password();
                """, on: connection, logger: logger)
        }
        await #expect(throws: (any Error).self) { try await rotate(fixture) }
        #expect(try await fixture.password(tenant) == old)
        #expect(await canLogIn(fixture, old), "the password the catalog hands out still logs in: no lockout")
        let sealed = try #require(try await pending(fixture), "the new password is kept as pending")
        let next = try fixture.keyring.open(sealed, tenant: tenant, field: "password")

        try await Database.withConnection(fixture.catalogURL, logger: logger) { connection in
            try await connection.query("DROP TRIGGER refuse_password ON tenantry.credentials", logger: logger)
        }
        try await rotate(fixture)
        #expect(try await fixture.password(tenant) == next, "the retry completed the pending password, not a new one")
        #expect(try await pending(fixture) == nil)
        #expect(await canLogIn(fixture, next))
        #expect(await !canLogIn(fixture, old))
    }

    @Test("a crash between ALTER ROLE and the promotion: the retry finds the pending password and completes")
    func crashBetweenSteps() async throws {
        let fixture = try await ProvisioningFixture.make()
        _ = try await fixture.withProvisioner { try await $0.provision(try TenantID("1")) }
        let old = try await fixture.password(tenant)
        // The state such a crash leaves: the new password pending in the catalog, and set on the role.
        let next = SCRAMVerifier.generatePassword()
        let sealed = try fixture.keyring.seal(next, tenant: tenant, field: "password")
        let role = fixture.naming.roleName(for: try TenantID(tenant))
        try await Database.withConnection(fixture.catalogURL, logger: logger) { connection in
            try await connection.query(
                "UPDATE tenantry.credentials SET pending_password_sealed = \(sealed), pending_since = now() WHERE tenant_id = '1'",
                logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL:
                "ALTER ROLE \(try SQLIdentifier.quoted(role)) PASSWORD \(SchemaDDL.literal(try SCRAMVerifier.make(password: next)))"),
                logger: logger)
        }
        #expect(await !canLogIn(fixture, old), "locked out until the rotation completes")
        try await rotate(fixture)
        #expect(try await fixture.password(tenant) == next)
        #expect(try await pending(fixture) == nil)
        #expect(await canLogIn(fixture, next))
    }
}
