import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore

/// The floor of capture: contestants that each do a part of what a captured write must do, on the
/// anchor's own database (`bench_plain`, shop 1's `customers`), named with `--only` beside
/// `no_trigger` and `captured`. They answer "what would the cheapest capture of each kind cost?"
/// with the same writes, clients and rounds as the real contestants:
///
/// - `floor_empty`: an AFTER trigger whose PL/pgSQL function does nothing;
/// - `floor_fence`: the function takes the tenant's shared fence lock, as Tenantry's does;
/// - `floor_append`: it appends one constant row to an outbox without index or sequence;
/// - `floor_image`: it appends the row's image (`row_to_json(NEW)`, the cheapest image) there;
/// - `floor_image_sequenced`: the same, the outbox's rows numbered by a `bigserial`;
/// - `floor_image_indexed`: numbered and indexed by `(tenant_id, id)`, as a relay must read them;
/// - `logical_decode`: no trigger; a replication slot (`pgoutput`) decoded by one session while
///   the writers write, its output discarded — the least any capture by logical decoding does;
/// - `logical_outbox`: the same, each decoded message stored in an outbox table (raw bytes, no
///   parsing: still less than a capture that builds row images);
/// - `logical_images`: the whole capture by logical decoding, images included (see
///   `CaptureBench+Logical.swift`).
///
/// The logical contestants need `wal_level = logical`: when `--only` names one, the bench's
/// server runs with it for every contestant of the run, the anchor included. Their server CPU
/// counts the decoding session's time too, and they report the WAL not yet decoded when the
/// writers stopped (`<name>_behind_mb`) and how long the rest took (`<name>_drain_ms`).
extension CaptureBench {
    /// The trigger function body (PL/pgSQL, between BEGIN and END) of each `floor_*` contestant.
    static let floorBodies: [Contestant: String] = [
        .floorEmpty: "RETURN NULL;",
        .floorFence: "fence := pg_catalog.pg_advisory_xact_lock_shared(\(AdvisoryLock.fenceNamespace), pg_catalog.hashtext(NEW.shop_id::pg_catalog.text)); RETURN NULL;",
        .floorAppend: "INSERT INTO bench_floor.unnumbered VALUES ('1', 'customers', 'U', NULL); RETURN NULL;",
        .floorImage: "INSERT INTO bench_floor.unnumbered VALUES (NEW.shop_id::pg_catalog.text, 'customers', 'U', pg_catalog.row_to_json(NEW)); RETURN NULL;",
        .floorImageSequenced: "INSERT INTO bench_floor.numbered (tenant_id, table_name, op, row_data) VALUES (NEW.shop_id::pg_catalog.text, 'customers', 'U', pg_catalog.row_to_json(NEW)); RETURN NULL;",
        .floorImageIndexed: "INSERT INTO bench_floor.indexed (tenant_id, table_name, op, row_data) VALUES (NEW.shop_id::pg_catalog.text, 'customers', 'U', pg_catalog.row_to_json(NEW)); RETURN NULL;",
    ]

    /// A copy of Tenantry's captured fast path (`CaptureSQL.trigger`, read committed, the tenant
    /// captured) with `pieces` left out, for the `full*` contestants: each one's cost is the
    /// difference to `full`.
    static func fullFunction(without pieces: Set<String>) -> String {
        let columns = ["id", "shop_id", "first_name", "last_name", "email", "phone", "address", "tags", "notes", "referred_by",
                       "newsletter_opt_in", "birthday", "created_at", "deleted_at"]
        func explicit(_ builder: String) -> String {
            "pg_catalog.\(builder)(" + columns.map { "'\($0)', NEW.\($0)\($0 == "address" ? "::pg_catalog.text" : "")" }.joined(separator: ", ") + ")"
        }
        let image = pieces.contains("text_columns") ? "pg_catalog.to_jsonb(NEW)"
            : pieces.contains("explicit_json") ? explicit("json_build_object")
            : pieces.contains("explicit") ? explicit("jsonb_build_object")
            : pieces.contains("row_to_json") ? "pg_catalog.row_to_json(NEW)"
            : "pg_catalog.to_jsonb(NEW) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('address', NEW.address::pg_catalog.text)"
        let outbox = pieces.contains("explicit_json") || pieces.contains("row_to_json") ? "bench_floor.changes_json" : "bench_floor.changes"
        let keyCompare = pieces.contains("key_compare") ? "" : """
            key_before := pg_catalog.jsonb_build_object('id', OLD.id);
                    IF key_before OPERATOR(pg_catalog.=) pg_catalog.jsonb_build_object('id', NEW.id) THEN key_before := NULL; END IF;
            """
        func source(_ values: String) -> String {
            pieces.contains("state") ? "VALUES (\(values))"
                : "SELECT \(values) FROM bench_floor.state s WHERE s.tenant_id OPERATOR(pg_catalog.=) tenant AND s.capturing AND NOT s.moved"
        }
        return """
            DECLARE tenant pg_catalog.text; applying pg_catalog.text; fence pg_catalog.text; key_before pg_catalog.jsonb;
            BEGIN
                tenant := NEW.shop_id::pg_catalog.text;
                applying := COALESCE(pg_catalog.current_setting('tenantry.applying', true), '');
                IF applying OPERATOR(pg_catalog.=) 'on' THEN RETURN NULL; END IF;
                \(pieces.contains("fence") ? "" : "fence := pg_catalog.pg_advisory_xact_lock_shared(\(AdvisoryLock.fenceNamespace), pg_catalog.hashtext(tenant));")
                IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' THEN
                    IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
                        \(keyCompare)
                        INSERT INTO \(outbox) (tenant_id, table_name, op, old_key, row_data)
                            \(source("tenant, 'customers', 'U', key_before, \(image)"));
                    ELSE
                        INSERT INTO \(outbox) (tenant_id, table_name, op, row_data)
                            \(source("tenant, 'customers', 'I', \(image)"));
                    END IF;
                    IF FOUND THEN RETURN NULL; END IF;
                END IF;
                RETURN NULL;
            END
            """
    }

    /// What each `full*` contestant leaves out of ``fullFunction(without:)`` (`when`: the trigger's
    /// `WHEN` list; `definer`: SECURITY DEFINER).
    static let fullVariants: [Contestant: Set<String>] = [
        .full: [], .fullNoWhen: ["when"], .fullNoDefiner: ["definer"], .fullNoState: ["state"],
        .fullNoTextColumns: ["text_columns"], .fullNoKeyCompare: ["key_compare"], .fullNoFence: ["fence"],
        .fullExplicit: ["explicit"], .fullExplicitJSON: ["explicit_json"], .fullRowToJSON: ["row_to_json"],
    ]

    /// The slot and publication of the logical contestants.
    static let slot = "tenantry_bench_floor"

    /// The outboxes of the floor contestants, in the anchor's database (empty at each round's start).
    static let floorTables = """
        CREATE SCHEMA IF NOT EXISTS bench_floor;
        CREATE TABLE IF NOT EXISTS bench_floor.unnumbered (tenant_id text NOT NULL, table_name text NOT NULL, op "char" NOT NULL, row_data json);
        CREATE TABLE IF NOT EXISTS bench_floor.numbered (id bigserial, tenant_id text NOT NULL, table_name text NOT NULL, op "char" NOT NULL, row_data json);
        CREATE TABLE IF NOT EXISTS bench_floor.indexed (id bigserial, tenant_id text NOT NULL, table_name text NOT NULL, op "char" NOT NULL, row_data json);
        CREATE INDEX IF NOT EXISTS indexed_tenant_id ON bench_floor.indexed (tenant_id, id);
        CREATE TABLE IF NOT EXISTS bench_floor.decoded (lsn pg_lsn NOT NULL, data bytea NOT NULL);
        CREATE TABLE IF NOT EXISTS bench_floor.state (tenant_id text PRIMARY KEY, capturing boolean NOT NULL, moved boolean NOT NULL);
        INSERT INTO bench_floor.state VALUES ('1', true, false) ON CONFLICT DO NOTHING;
        CREATE TABLE IF NOT EXISTS bench_floor.changes (
            id bigserial NOT NULL, tenant_id text NOT NULL, table_name text NOT NULL, op "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
            old_key jsonb, row_data jsonb, xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            captured_at timestamptz NOT NULL DEFAULT clock_timestamp(), attempts integer NOT NULL DEFAULT 0, last_error text);
        CREATE INDEX IF NOT EXISTS changes_tenant_id ON bench_floor.changes (tenant_id, id);
        CREATE TABLE IF NOT EXISTS bench_floor.changes_json (
            id bigserial NOT NULL, tenant_id text NOT NULL, table_name text NOT NULL, op "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
            old_key jsonb, row_data json, xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            captured_at timestamptz NOT NULL DEFAULT clock_timestamp(), attempts integer NOT NULL DEFAULT 0, last_error text);
        CREATE INDEX IF NOT EXISTS changes_json_tenant_id ON bench_floor.changes_json (tenant_id, id);
        """

    /// Readies the anchor's database for `contestant`: its floor trigger, or none; its outboxes
    /// emptied; the slot dropped (a logical contestant creates it when its writers start).
    static func prepareFloor(_ contestant: Contestant, plainURL: PostgresURL) async throws {
        var sql = floorTables + """

            DROP TRIGGER IF EXISTS bench_floor ON customers;
            TRUNCATE bench_floor.unnumbered, bench_floor.numbered, bench_floor.indexed, bench_floor.decoded, bench_floor.changes, bench_floor.changes_json;
            SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '\(slot)';
            """
        if let body = floorBodies[contestant] {
            sql += """

                CREATE OR REPLACE FUNCTION bench_floor.capture() RETURNS trigger LANGUAGE plpgsql AS $floor$
                DECLARE fence pg_catalog.text;
                BEGIN \(body) END $floor$;
                CREATE TRIGGER bench_floor AFTER INSERT OR UPDATE OR DELETE ON customers FOR EACH ROW EXECUTE FUNCTION bench_floor.capture();
                """
        }
        if let without = fullVariants[contestant] {
            sql += """

                CREATE OR REPLACE FUNCTION bench_floor.capture() RETURNS trigger LANGUAGE plpgsql \(without.contains("definer") ? "" : "SECURITY DEFINER") AS $floor$
                \(fullFunction(without: without))
                $floor$;
                CREATE TRIGGER bench_floor AFTER INSERT OR UPDATE ON customers FOR EACH ROW
                    \(without.contains("when") ? "" : "WHEN (NEW.shop_id = ANY ('{1}'::smallint[]))") EXECUTE FUNCTION bench_floor.capture();
                """
        }
        if contestant.isLogical {
            sql += "\nDROP PUBLICATION IF EXISTS \(slot); CREATE PUBLICATION \(slot) FOR TABLE customers;"
        }
        try await Database.withConnection(plainURL, logger: Bench.logger) { connection in
            try await Database.execute(script: sql, on: connection, logger: Bench.logger)
        }
    }

    /// Runs `load` while one session decodes the slot (created first, so it holds every write of
    /// the load); returns the load's result, the decoding backend's CPU time (clock ticks, the rest
    /// of the load's WAL decoded), and the WAL left to decode when the load ended with the time the
    /// session took to decode it.
    static func withDecoding<Result: Sendable>(
        _ contestant: Contestant, plainURL: PostgresURL, load: @Sendable () async throws -> Result
    ) async throws -> (Result, decoderTicks: Int, behindBytes: Double, drainMilliseconds: Double) {
        try await MoveBed.execute("SELECT pg_create_logical_replication_slot('\(slot)', 'pgoutput')", on: plainURL)
        let changes = "pg_logical_slot_get_binary_changes('\(slot)', NULL, 10000, 'proto_version', '1', 'publication_names', '\(slot)')"
        let stop = NIOLockedValueBox(false)
        return try await Database.withConnection(plainURL, logger: Bench.logger) { decoder in
            let pid = try await decoder.query("SELECT pg_backend_pid()", logger: Bench.logger).decode(Int32.self).first(where: { _ in true }) ?? 0
            // One step: the messages read (logical_images keeps its parser's relations across steps).
            var parser = PgOutputParser()
            @Sendable func step(_ parser: inout PgOutputParser) async throws -> Int {
                switch contestant {
                case .logicalImages: return try await decodeImages(decoder, parser: &parser)
                case .logicalOutbox:
                    return try await decoder.query(PostgresQuery(unsafeSQL: """
                        WITH stored AS (INSERT INTO bench_floor.decoded SELECT lsn, data FROM \(changes) RETURNING 1) SELECT count(*)::int FROM stored
                        """), logger: Bench.logger).decode(Int.self).first(where: { _ in true }) ?? 0
                default:
                    return try await decoder.query(PostgresQuery(unsafeSQL: "SELECT count(*)::int FROM \(changes)"), logger: Bench.logger)
                        .decode(Int.self).first(where: { _ in true }) ?? 0
                }
            }
            let decoding = Task { [parser] in
                var parser = parser
                while !stop.withLockedValue({ $0 }) {
                    if try await step(&parser) < 100 { try await Task.sleep(for: .milliseconds(20)) }
                }
                return parser
            }
            let result: Result
            do {
                result = try await load()
            } catch {
                stop.withLockedValue { $0 = true }
                _ = try? await decoding.value
                throw error
            }
            stop.withLockedValue { $0 = true }
            parser = try await decoding.value
            let behind = try await decoder.query("""
                SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 FROM pg_replication_slots WHERE slot_name = \(slot)
                """, logger: Bench.logger).decode(Double.self).first(where: { _ in true }) ?? 0
            let drain = try await Bench.time {
                while try await step(&parser) > 0 {}
            }
            return (result, cpuTicks(pid), behind, drain * 1000)
        }
    }
}

extension CaptureBench.Contestant {
    /// Measured on the anchor's database (`bench_plain`), not the unified one.
    var onPlainDatabase: Bool { self == .noTrigger || rawValue.hasPrefix("floor_") || rawValue.hasPrefix("full") || isLogical }

    /// Decodes a replication slot while its writers write.
    var isLogical: Bool { self == .logicalDecode || self == .logicalOutbox || self == .logicalImages }

    /// Run only when `--only` names it (a control or a floor, not one of the goal's contestants).
    var onlyWhenNamed: Bool { self == .bare || onPlainDatabase && self != .noTrigger }
}
