import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The copy step's edges: the connections it opens at once, the target prepared while capture
/// turns on, the snapshot recorded on the copy's own session, sequences in one pass.
@Suite("copier: connections, capture overlap, sequences", .timeLimit(.minutes(4)))
struct CopierTests {
    @Test("a copy over a full tenant database starts clean; the snapshot is recorded for the relay; sequences pass every id")
    func recopyAndSequences() async throws {
        let fixture = try await MoveFixture.make(shops: 3)
        let id = fixture.ids[1]
        try await fixture.withMover { copier, _, catalog in
            _ = try await copier.copy(id)
            // Back to shared with the rows still in the tenant database (as the copy benchmark resets):
            // the next copy must empty the tables first, in its own transaction.
            try await catalog.setPhase(id, to: .shared)
            try await Self.execute(fixture.unifiedURL, "UPDATE customers SET first_name = first_name || ' (later)' WHERE shop_id = \(id.rawValue)")
            let report = try await copier.copy(id)
            #expect(!report.skipped && report.rows > 0)
            #expect(try await fixture.independentDifferences(id) == [])
            #expect(try await catalog.move(id)?.phase == .syncing)
            let recorded = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT snapshot::text FROM tenantry.capture_state WHERE tenant_id = '\(id.rawValue)'")
            let inCatalog = try await catalog.move(id)?.snapshot
            #expect(recorded.count == 1 && recorded[0] != nil && recorded[0] == inCatalog)
        }
        try await Self.expectSequencesPastEveryID(fixture, id)
        // Every connection the copy opened is closed.
        let open = try await TestPostgres.strings(
            fixture.unifiedURL,
            "SELECT count(*)::text FROM pg_stat_activity WHERE datname = '\(fixture.base.naming.databaseName(for: id))'")
        #expect(open == ["0"])
    }

    @Test("a tenant without rows copies 0 rows and its sequences still start past the unified ones")
    func emptyTenant() async throws {
        let fixture = try await MoveFixture.make(shops: 2, provision: 3)
        let empty = fixture.ids[2]
        try await fixture.withMover { copier, _, catalog in
            let report = try await copier.copy(empty)
            #expect(!report.skipped && report.rows == 0)
            #expect(try await catalog.move(empty)?.phase == .syncing)
        }
        try await Self.expectSequencesPastEveryID(fixture, empty)
    }

    @Test("capture that cannot turn on fails the copy before its snapshot: nothing in the tenant database, the error recorded; a retry copies all")
    func captureFailure() async throws {
        let fixture = try await MoveFixture.make(shops: 2)
        let id = fixture.ids[0]
        let tenantURL = try await fixture.tenantURL(id)
        try await Catalog.withCatalog(fixture.base.catalogURL, logger: MoveFixture.logger) { catalog in
            let impatient = Copier(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan,
                capture: Capture(unifiedURL: fixture.unifiedURL, enableTimeout: .milliseconds(300), logger: MoveFixture.logger),
                actor: "test", logger: MoveFixture.logger)
            // A transaction older than the capture switch that stays open.
            try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { blocker in
                try await blocker.query("BEGIN", logger: MoveFixture.logger)
                try await blocker.query("SELECT pg_catalog.txid_current()", logger: MoveFixture.logger)
                await #expect(throws: TenantryError.self) { _ = try await impatient.copy(id) }
                try await blocker.query("ROLLBACK", logger: MoveFixture.logger)
            }
            let move = try await catalog.move(id)
            #expect(move?.phase == .copying && move?.lastError != nil)
            for table in fixture.plan.tables {
                #expect(try await TestPostgres.strings(tenantURL, "SELECT count(*)::text FROM \"\(table.name)\"") == ["0"])
            }
        }
        try await fixture.withMover { copier, _, _ in
            let report = try await copier.copy(id)
            #expect(!report.skipped && report.rows > 0)
            #expect(try await fixture.independentDifferences(id) == [])
        }
    }

    static let hostileSchema = """
        CREATE TABLE shops (id bigint PRIMARY KEY);
        CREATE TYPE mood AS ENUM ('ok', E'tab\\there', E'back\\\\slash', E'new\\nline\\r');
        CREATE DOMAIN note AS text;
        CREATE TABLE hostile (
            shop_id bigint NOT NULL REFERENCES shops (id),
            id bigserial,
            t text, arr text[], j jsonb, js json, b bytea, v varchar(40), n note, c "char", feeling mood, feelings mood[],
            num numeric, stamp timestamptz, f8 double precision,
            PRIMARY KEY (shop_id, id)
        );
        INSERT INTO shops VALUES (1), (2);
        """

    /// ``hostileSchema`` with every hostile string for shops 1 and 2, and an all-NULL row each.
    static func loadHostile(_ connection: PostgresConnection) async throws {
        let logger = MoveFixture.logger
        try await Database.execute(script: hostileSchema, on: connection, logger: logger)
        for shop in [Int64(1), 2] {
            for (index, value) in HandyShopGenerator.hostileStrings.enumerated() {
                let (k, seconds) = (Int32(index), Double(index))
                try await connection.query("""
                    INSERT INTO hostile (shop_id, t, arr, j, js, b, v, n, c, feeling, feelings, num, stamp, f8)
                    VALUES (\(shop), \(value), ARRAY[\(value), NULL, ''], jsonb_build_object(\(value), \(value)),
                            to_json(\(value)::text), convert_to(\(value), 'UTF8'), left(\(value), 40), \(value),
                            (CASE \(k) % 4 WHEN 0 THEN E'\\t' WHEN 1 THEN E'\\\\' WHEN 2 THEN NULL ELSE 'x' END)::"char",
                            (enum_range(NULL::mood))[\(k) % 4 + 1], enum_range(NULL::mood),
                            -\(k) / 7.0, '2026-12-01 01:00:00+00'::timestamptz + \(seconds) * interval '1 s', '-0')
                    """, logger: logger)
            }
            try await connection.query("INSERT INTO hostile (shop_id) VALUES (\(shop))", logger: logger)
        }
    }

    @Test("every hostile value copies exactly, read with COPY TO (tenant 1) and with the lines the source server writes (tenant 2): text, arrays, json, bytea, enums with tabs, domains, \"char\", NULLs")
    func hostileValues() async throws {
        let logger = MoveFixture.logger
        let fixture = try await MoveFixture.make(tenants: 2) { connection in try await Self.loadHostile(connection) }
        let notices = NIOLockedValueBox<[String]>([])
        try await fixture.withMover { copier, _, catalog in
            // Tenant 1 through a COPY TO session (a fall back to SELECT would log a notice),
            // tenant 2 with SELECT.
            let copyOut = Copier(
                catalog: catalog, servers: fixture.directory(servers: fixture.servers), unifiedURL: fixture.unifiedURL,
                plan: fixture.plan, capture: fixture.capture(), actor: "test",
                logger: Logger(label: "copier") { _ in RecordingLogHandler(records: notices) })
            var lines = copier
            lines.readsWithCopyOut = false
            for (id, copier) in zip(fixture.ids, [copyOut, lines]) {
                let report = try await copier.copy(id)
                #expect(report.tables["hostile"] == HandyShopGenerator.hostileStrings.count + 1)
                #expect(try await fixture.independentDifferences(id) == [], "tenant \(id)")
                let verdict = try await Verifier(plan: fixture.plan, logger: logger)
                    .verify(id, unifiedURL: fixture.unifiedURL, tenantURL: try await fixture.tenantURL(id))
                #expect(verdict.equal, "\(verdict.tables.flatMap(\.differences))")
            }
        }
        #expect(notices.withLockedValue { $0 } == [], "the copy fell back to SELECT")
    }

    /// Every serial or identity column of the tenant database hands out an id past its own rows
    /// and past the unified database's sequence for the same column.
    static func expectSequencesPastEveryID(_ fixture: MoveFixture, _ id: TenantID) async throws {
        let tenantURL = try await fixture.tenantURL(id)
        let columns = try await TestPostgres.strings(tenantURL, """
            SELECT table_name || '.' || column_name FROM information_schema.columns
            WHERE table_schema = 'public' AND (column_default LIKE 'nextval(%' OR is_identity = 'YES') ORDER BY 1
            """).compactMap { $0 }
        #expect(!columns.isEmpty)
        for qualified in columns {
            let parts = qualified.split(separator: ".").map(String.init)
            let (table, column) = (parts[0], parts[1])
            let sequence = "pg_catalog.pg_get_serial_sequence('public.\"\(table)\"', '\(column)')"
            let next = Int64(try await TestPostgres.strings(tenantURL, "SELECT nextval(\(sequence))::text")[0] ?? "") ?? 0
            let localMax = Int64(try await TestPostgres.strings(
                tenantURL, "SELECT coalesce(max(\"\(column)\"), 0)::text FROM \"\(table)\"")[0] ?? "") ?? .max
            let unifiedLast = Int64(try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT coalesce(pg_catalog.pg_sequence_last_value(\(sequence)::regclass), 0)::text")[0] ?? "") ?? .max
            #expect(next > localMax, "\(qualified): next \(next), max \(localMax)")
            #expect(next > unifiedLast, "\(qualified): next \(next), unified last \(unifiedLast)")
        }
    }

    static func execute(_ url: PostgresURL, _ sql: String) async throws {
        try await Database.withConnection(url, logger: MoveFixture.logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: MoveFixture.logger)
        }
    }
}

/// Keeps the messages logged at `.notice` or above.
struct RecordingLogHandler: LogHandler {
    let records: NIOLockedValueBox<[String]>
    var logLevel: Logger.Level = .notice
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        records.withLockedValue { $0.append("\(event.message)") }
    }
}
