import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("online move: turning capture on", .timeLimit(.minutes(2)))
struct CaptureEnableTests {
    @Test("capture waits for older transactions, naming them on timeout, but not for another copy's read-only snapshot or its COPY TO session")
    func enableWaits() async throws {
        let logger = MoveFixture.logger
        let fixture = try await MoveFixture.make(tenants: 3) { connection in
            try await Database.execute(script: """
                CREATE TABLE shops (id bigint PRIMARY KEY);
                CREATE TABLE notes (shop_id bigint NOT NULL REFERENCES shops (id), id bigint PRIMARY KEY, body text);
                INSERT INTO shops VALUES (1), (2), (3);
                """, on: connection, logger: logger)
        }
        var capture = fixture.capture()
        capture.enableTimeout = .milliseconds(800)
        let url = fixture.unifiedURL
        try await Database.withConnection(url, logger: logger) { snapshot in
            // A copy's snapshot session: marked, read only, open across the switch.
            try await snapshot.query("SELECT pg_advisory_lock_shared(\(AdvisoryLock.copySnapshotNamespace), 0)", logger: logger)
            try await snapshot.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            try await snapshot.query("SELECT count(*) FROM notes", logger: logger)
            try await capture.enable(try TenantID("1"))
            try await snapshot.query("COMMIT", logger: logger)
        }
        // A copy's COPY TO session, in the snapshot its copy exported: marked the same way.
        try await Database.withConnection(url, logger: logger) { snapshot in
            try await snapshot.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
            let exported = try await snapshot.query("SELECT pg_export_snapshot()", logger: logger).decode(String.self)
                .first(where: { _ in true }) ?? ""
            try await CopyOutSession.with(url) { session in
                try await session.beginCopySnapshot(exported)
                _ = try await session.copyOut("COPY notes TO STDOUT") { _, _ in }
                try await snapshot.query("COMMIT", logger: logger)
                try await capture.enable(try TenantID("2"))
            }
        }
        try await Database.withConnection(url, logger: logger) { application in
            try await application.query("BEGIN ISOLATION LEVEL REPEATABLE READ", logger: logger)
            try await application.query("SELECT count(*) FROM notes", logger: logger)
            await #expect {
                try await capture.enable(try TenantID("3"))
            } throws: { error in
                let message = Database.message(of: error)
                return message.contains("still have a transaction") && message.contains("pid ")
            }
            try await application.query("COMMIT", logger: logger)
        }
        try await capture.enable(try TenantID("3"))
    }

    @Test("the SECURITY DEFINER capture trigger ignores a caller's search_path: an operator planted by the application role is never run")
    func triggerIgnoresSearchPath() async throws {
        let logger = MoveFixture.logger
        let fixture = try await MoveFixture.make(tenants: 1) { connection in
            try await Database.execute(script: """
                CREATE TABLE shops (id bigint PRIMARY KEY);
                CREATE TABLE notes (shop_id bigint NOT NULL REFERENCES shops (id), id bigint PRIMARY KEY, body text);
                INSERT INTO shops VALUES (1);
                """, on: connection, logger: logger)
        }
        try await fixture.capture().enable(try TenantID("1"))
        let role = "app_\(UInt32.random(in: 0...UInt32.max))"
        try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
            // What an application role could plant if it may create a schema: operators and a
            // function that would run with the trigger owner's rights if the trigger resolved them
            // through the caller's search_path.
            try await Database.execute(script: """
                CREATE ROLE \(role);
                GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO \(role);
                CREATE SCHEMA planted AUTHORIZATION \(role);
                SET ROLE \(role);
                CREATE FUNCTION planted.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
                    $$ BEGIN RAISE EXCEPTION 'planted operator ran as %', current_user; END $$;
                CREATE OPERATOR planted.= (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.eq);
                CREATE FUNCTION planted.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS
                    $$ BEGIN RAISE EXCEPTION 'planted to_jsonb ran as %', current_user; END $$;
                SET search_path = planted, pg_catalog, public;
                INSERT INTO public.notes VALUES (1, 10, 'a');
                UPDATE public.notes SET body = 'b' WHERE id = 10;
                DELETE FROM public.notes WHERE id = 10;
                RESET ROLE;
                RESET search_path;
                """, on: connection, logger: logger)
        }
        let ops = try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT op::text FROM tenantry.changes WHERE tenant_id = '1' ORDER BY id")
        #expect(ops == ["I", "U", "D"])
        let config = try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT coalesce(array_to_string(proconfig, ','), '') FROM pg_proc WHERE proname LIKE 'capture_notes_%'")
        #expect(config == [""])
    }

    @Test("a reinstall turns the paused reasons of an older install into pause kinds, and dual-write disable records its own")
    func pauseKinds() async throws {
        let logger = MoveFixture.logger
        let fixture = try await MoveFixture.make(tenants: 3) { connection in
            try await Database.execute(script: """
                CREATE TABLE shops (id bigint PRIMARY KEY);
                CREATE TABLE notes (shop_id bigint NOT NULL REFERENCES shops (id), id bigint PRIMARY KEY, body text);
                INSERT INTO shops VALUES (1), (2), (3);
                """, on: connection, logger: logger)
        }
        let capture = fixture.capture()
        for id in ["1", "2", "3"] { try await capture.enable(try TenantID(id)) }
        // As an install older than the column left them: only the words.
        try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
            try await connection.query("""
                UPDATE tenantry.capture_state SET sync_paused = true, pause_kind = NULL, paused_reason = CASE tenant_id
                    WHEN '1' THEN 'dead letter 7: duplicate key' WHEN '2' THEN 'reverse dead letter 9: boom' END
                WHERE tenant_id IN ('1', '2')
                """, logger: logger)
        }
        try await capture.install()
        try await capture.setSyncPaused(try TenantID("3"), true, reason: "dual-write disable")
        let kinds = try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT tenant_id || '=' || coalesce(pause_kind, '-') FROM tenantry.capture_state ORDER BY tenant_id")
        #expect(kinds == ["1=dead_letter", "2=reverse_dead_letter", "3=operator"])
        try await capture.setSyncPaused(try TenantID("3"), false)
        #expect(try await TestPostgres.strings(
            fixture.unifiedURL, "SELECT coalesce(pause_kind, '-') FROM tenantry.capture_state WHERE tenant_id = '3'") == ["-"])
    }
}

