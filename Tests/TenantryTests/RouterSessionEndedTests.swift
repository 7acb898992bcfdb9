import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// A write whose sessions the server ends before its COMMIT (a restore ends every session of the
/// old database just before the catalog names the new one) runs once more on new connections
/// instead of failing: the restore-under-load test saw a write fail with 57P01 when the pool
/// handed out idle connections the server had already ended.
@Suite("router: a write whose sessions the server ended runs again", .timeLimit(.minutes(3)))
struct RouterSessionEndedTests {
    @Test("sessions ended under the body twice (the lease's retry included): the write runs a third time and lands once")
    func endedTwiceThenLands() async throws {
        let setup = try await BackupFixture.make(shops: 1)
        let tenant = setup.fixture.ids[0]
        let runs = NIOLockedValueBox(0)
        try await setup.withOperations { operations in
            let router = operations.router(keyring: setup.fixture.base.keyring, monitor: nil)
            try await router.running {
                try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                    let run = runs.withLockedValue { $0 += 1; return $0 }
                    try await connection.query("INSERT INTO restore_probe VALUES (7, \("run \(run)"))")
                    // The server ends this session before the COMMIT, as a restore's sweep does.
                    if run <= 2 { try await connection.query("SELECT pg_terminate_backend(pg_backend_pid())") }
                }
            }
        }
        #expect(runs.withLockedValue { $0 } == 3)
        let rows = try await TestPostgres.strings(try await setup.url(try await setup.database(tenant)), "SELECT note FROM restore_probe")
        #expect(rows == ["run 3"])
    }

    @Test("a session ended during COMMIT is still never run again")
    func commitStillNotRetried() async throws {
        let setup = try await BackupFixture.make(shops: 1)
        let tenant = setup.fixture.ids[0]
        let url = try await setup.url(try await setup.database(tenant))
        // A deferred trigger ends the session at COMMIT, every time.
        _ = try await TestPostgres.strings(url, """
            CREATE FUNCTION end_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$
            """)
        _ = try await TestPostgres.strings(url, """
            CREATE CONSTRAINT TRIGGER end_at_commit AFTER INSERT ON restore_probe
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION end_at_commit()
            """)
        let runs = NIOLockedValueBox(0)
        let error = try await setup.withOperations { operations in
            let router = operations.router(keyring: setup.fixture.base.keyring, monitor: nil)
            return try await router.running {
                do {
                    try await router.withTransaction(tenant: tenant, intent: .write) { connection in
                        runs.withLockedValue { $0 += 1 }
                        try await connection.query("INSERT INTO restore_probe VALUES (8, 'once')")
                    }
                    return nil as TenantryError?
                } catch let error as TenantryError {
                    return error
                }
            }
        }
        #expect(runs.withLockedValue { $0 } == 1)
        #expect(error?.message.contains("broke during COMMIT") == true, "\(String(describing: error))")
    }
}
