import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("router: a COMMIT whose outcome is unknown", .timeLimit(.minutes(3)))
struct RouterCommitOutcomeTests {
    @Test("a connection that breaks during COMMIT is not retried: the body ran once, the error says the outcome is unknown")
    func brokenCommitNotRetried() async throws {
        let fixture = try await RouterFixture.make(count: 1)
        // A deferred trigger runs at COMMIT; the first time (a sequence is not transactional) it
        // terminates its own session, so the client sees the connection break during COMMIT.
        try await Database.withConnection(fixture.base.catalogURL, logger: TestPostgres.logger) { connection in
            try await Database.execute(script: """
                CREATE SEQUENCE commit_kill;
                CREATE FUNCTION kill_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF nextval('commit_kill') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
                    RETURN NULL;
                END $$;
                CREATE CONSTRAINT TRIGGER kill_at_commit AFTER INSERT ON customers
                    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kill_at_commit();
                """, on: connection, logger: TestPostgres.logger)
        }
        let runs = NIOLockedValueBox(0)
        let tenant = fixture.ids[0]
        let error = try await fixture.withRouter(pool: RouterFixture.pool(cap: 4)) { router, _ in
            do {
                try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                    runs.withLockedValue { $0 += 1 }
                    _ = try await connection.query("INSERT INTO customers VALUES ('1', 99, 'once')")
                }
                return nil as TenantryError?
            } catch let error as TenantryError {
                return error
            }
        }
        #expect(runs.withLockedValue { $0 } == 1, "the body must not run again after COMMIT was sent")
        #expect(error?.code == .connectionFailed)
        #expect(error?.message.contains("broke during COMMIT") == true, "\(String(describing: error))")
    }
}
