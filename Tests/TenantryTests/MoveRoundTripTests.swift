import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("online move: values round-trip exactly", .timeLimit(.minutes(3)))
struct MoveRoundTripTests {
    static let schema = """
        CREATE TABLE shops (id bigint PRIMARY KEY);
        CREATE TYPE mood AS ENUM ('ok', 'très bien', 'with "quotes"');
        CREATE TABLE oddities (
            shop_id bigint NOT NULL REFERENCES shops (id),
            id bigint GENERATED ALWAYS AS IDENTITY,
            blob bytea, addr inet, net cidr, span interval, day date, stamp timestamptz, local timestamp,
            f8 double precision, f4 real, num numeric, floats double precision[], tags text[], doc jsonb,
            bits bit varying, uid uuid, range int4range, label text, feeling mood, grid integer[][],
            twice numeric GENERATED ALWAYS AS (num * 2) STORED,
            PRIMARY KEY (shop_id, id)
        );
        CREATE TABLE serials (shop_id bigint NOT NULL REFERENCES shops (id), id bigserial PRIMARY KEY, note text);
        INSERT INTO shops VALUES (1), (2);
        """

    /// Hostile rows: every special value of each type, NULLs, and text that breaks naive quoting.
    static let rows = """
        INSERT INTO oddities (shop_id, blob, addr, net, span, day, stamp, local, f8, f4, num, floats, tags, doc, bits, uid, range, label, feeling, grid)
        VALUES
        ($1, '\\x00ff5c0a09'::bytea, '2001:db8::1/64', '10.0.0.0/8', '1 mon -2 days 03:04:05.678', 'infinity', '-infinity', 'infinity',
         '-0', 'NaN', 'NaN', '{-0,Infinity,-Infinity,1e-300,NULL}', ARRAY['tab\there', 'new
        line', 'back\\slash', 'quote"s', '', NULL, 'ünï😀'], '{"a": [1, null, "\\\\"], "b": {"c": "\\u00e9"}}',
         B'1010', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '[1,5)', E'\\\\N', 'très bien', '{{1,2},{3,4}}'),
        ($1, '', '0.0.0.0', '::/0', '-178000000 years', '-infinity', 'infinity', '1999-12-31 23:59:59.999999',
         '1.7976931348623157e308', '-3.4e38', '-12345678901234567890.123456789', '{}', '{}', 'null', B'', NULL, 'empty', E'\\t', 'with "quotes"', '{}'),
        ($1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
        """

    @Test("bytea, inet, intervals, infinity, -0, NaN, arrays, enums, identity and generated columns: copy and sync keep every value")
    func roundTrip() async throws {
        let logger = MoveFixture.logger
        let fixture = try await MoveFixture.make(tenants: 2) { connection in
            try await Database.execute(script: Self.schema, on: connection, logger: logger)
            for shop in [1, 2] {
                var query = PostgresQuery(unsafeSQL: Self.rows)
                query.binds.append(Int64(shop))
                try await connection.query(query, logger: logger)
                try await connection.query("INSERT INTO serials (shop_id, note) VALUES (\(Int64(shop)), 'x')", logger: logger)
            }
        }
        try await fixture.withMover { copier, relay, _ in
            for id in fixture.ids { _ = try await copier.copy(id) }
            // The copy moved the tenant sequences past every id in use on both sides.
            let tenantURL = try await fixture.tenantURL(fixture.ids[0])
            for table in ["serials", "oddities"] {
                let next = try await TestPostgres.strings(tenantURL, "SELECT nextval(pg_get_serial_sequence('\(table)', 'id'))::text")
                let unifiedMax = try await TestPostgres.strings(fixture.unifiedURL, "SELECT max(id)::text FROM \(table)")
                #expect(Int(next[0] ?? "") ?? 0 > Int(unifiedMax[0] ?? "") ?? .max, "\(table): next \(next), unified max \(unifiedMax)")
            }
            // After the snapshot: the same values again through capture and the relay, plus updates and deletes.
            try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
                var query = PostgresQuery(unsafeSQL: Self.rows)
                query.binds.append(Int64(1))
                try await connection.query(query, logger: logger)
                try await connection.query("UPDATE oddities SET f8 = '-0', span = span * -1, label = label || E'\\n' WHERE shop_id = 1", logger: logger)
                try await connection.query("DELETE FROM oddities WHERE shop_id = 2 AND blob IS NULL", logger: logger)
                try await connection.query("INSERT INTO serials (shop_id, note) VALUES (1, E'after\\\\copy')", logger: logger)
            }
            let report = try await relay.catchUp(timeout: .seconds(30))
            #expect(report.paused.isEmpty)
            for id in fixture.ids {
                #expect(try await fixture.independentDifferences(id) == [], "tenant \(id)")
                let verdict = try await Verifier(plan: fixture.plan, logger: logger)
                    .verify(id, unifiedURL: fixture.unifiedURL, tenantURL: try await fixture.tenantURL(id))
                #expect(verdict.equal, "\(verdict.tables.flatMap(\.differences))")
            }
        }
    }
}
