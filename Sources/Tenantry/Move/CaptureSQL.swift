import TenantryCore

/// The SQL that capture installs in the unified database (schema `tenantry`).
///
/// - `capture_state`: one row per tenant that is being (or was) moved: its legacy fence key
///   (`lock_key`, see ``Cutover/fenceStatement(_:)``), whether its
///   writes are captured, whether it has moved (the guard), its copy snapshot, whether its sync is
///   paused by a dead letter.
/// - `changes`: the outbox. A captured write appends its row image here in the same transaction;
///   ids come from one sequence, read per tenant through `(tenant_id, id)` (no other index).
/// - `dead_letters`: changes the relay gave up on, kept with their error until replayed.
/// - one trigger function per tenant table (the discriminator and key are compiled in), fired in
///   the unified database only for the rows of tenants that have capture state (the triggers'
///   `WHEN` lists them, see ``CaptureSQL/triggers(for:plan:listing:)``): a write of a tenant that is
///   not being moved runs no PL/pgSQL.
enum CaptureSQL {
    /// Tables and indexes; idempotent.
    static let tables = """
        CREATE SCHEMA IF NOT EXISTS tenantry;
        CREATE TABLE IF NOT EXISTS tenantry.capture_state (
            tenant_id text PRIMARY KEY,
            lock_key integer NOT NULL,
            capturing boolean NOT NULL DEFAULT false,
            moved boolean NOT NULL DEFAULT false,
            sync_paused boolean NOT NULL DEFAULT false,
            paused_reason text,
            snapshot pg_snapshot,
            capture_enabled_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS tenantry.changes (
            id bigserial NOT NULL,
            tenant_id text NOT NULL,
            table_name text NOT NULL,
            op "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
            old_key jsonb,
            row_data jsonb,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            captured_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            attempts integer NOT NULL DEFAULT 0,
            last_error text
        );
        CREATE INDEX IF NOT EXISTS changes_tenant_id ON tenantry.changes (tenant_id, id);
        -- Every reader goes through (tenant_id, id): a second index entry per captured write is
        -- pure cost (installations before 2026-11-29 had a primary key on id).
        ALTER TABLE tenantry.changes DROP CONSTRAINT IF EXISTS changes_pkey;
        CREATE TABLE IF NOT EXISTS tenantry.dead_letters (
            id bigint PRIMARY KEY,
            tenant_id text NOT NULL,
            table_name text NOT NULL,
            op "char" NOT NULL,
            old_key jsonb,
            row_data jsonb,
            xid xid8 NOT NULL,
            captured_at timestamptz NOT NULL,
            attempts integer NOT NULL,
            error text NOT NULL,
            dead_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS dead_letters_tenant_id ON tenantry.dead_letters (tenant_id, id);
        -- Reverse-sync dead letters are mirrored into the unified database (direction 'reverse'),
        -- so status, dlq, rollback and retirement see both directions in one place. Their ids come
        -- from the tenant database's sequence: unique per tenant and direction, not globally.
        ALTER TABLE tenantry.dead_letters ADD COLUMN IF NOT EXISTS direction text NOT NULL DEFAULT 'forward';
        ALTER TABLE tenantry.dead_letters DROP CONSTRAINT IF EXISTS dead_letters_pkey;
        CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_key ON tenantry.dead_letters (tenant_id, direction, id);
        -- A dedicated tenant database's id blocks (SequenceSync): the ids its sequences may hand
        -- out without colliding in unified; the relay extends a block before it runs out.
        CREATE TABLE IF NOT EXISTS tenantry.id_blocks (
            sequence_name text PRIMARY KEY,
            block_start bigint NOT NULL,
            block_end bigint NOT NULL,
            block_size bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE tenantry.capture_state ADD COLUMN IF NOT EXISTS id_headroom bigint;
        -- Why a stream is paused, as a code the relay, dlq and rollback test (paused_reason is
        -- for people): 'dead_letter' (a change of this stream), 'reverse_dead_letter' (mirrored
        -- from the tenant database), 'operator' (dual-write disable). An install older than the
        -- column had only the text; it is read once, here, to fill the code in.
        ALTER TABLE tenantry.capture_state ADD COLUMN IF NOT EXISTS pause_kind text;
        UPDATE tenantry.capture_state SET pause_kind = CASE
                WHEN paused_reason LIKE 'reverse dead letter%' THEN 'reverse_dead_letter'
                WHEN paused_reason LIKE '%dead letter%' THEN 'dead_letter'
                WHEN paused_reason = 'retired from the unified database' THEN 'retirement'
                ELSE 'operator' END
            WHERE sync_paused AND pause_kind IS NULL;
        -- The one consumer of this database's tenantry.changes for the tenant (Step 10, server
        -- moves): NULL is the usual one (unified, or the tenant database for a syncing tenant);
        -- otherwise the follower database ('server/database') a server move forwards to, or a
        -- word no relay matches ('starting', 'stopped', 'handed-over') while a move hands over.
        ALTER TABLE tenantry.capture_state ADD COLUMN IF NOT EXISTS forward_to text;
        \(retiredTable)
        \(listedGuard)
        """

    /// The list's invariant, kept by the server too: a `capture_state` row may be inserted only
    /// for a tenant that every table's capture triggers already list (or that fire for every row).
    /// Tenantry lists first (``Capture/relist(_:growOnly:installed:on:)``), so this never refuses
    /// it; it refuses whatever else would give a tenant capture state that its writes do not
    /// reach — above all a Tenantry binary older than the list triggers (before 2026-12-01 a
    /// trigger fired for every row, and turning capture on only inserted the row): that tenant's
    /// writes would go uncaptured and be lost at cutover. Only tables with the listing triggers are
    /// checked: a tenant database (one trigger for every row) and a table capture was never
    /// installed on pass. `session_replication_role = replica` skips it, as it skips every ordinary
    /// trigger (a dump's restore; `tenantry doctor` then names what a list misses).
    static let listedGuard = """
        CREATE OR REPLACE FUNCTION tenantry.capture_state_listed() RETURNS trigger LANGUAGE plpgsql AS $listed$
        DECLARE
            unlisted pg_catalog.text;
        BEGIN
            SELECT pg_catalog.string_agg(c.relname::pg_catalog.text, ', ' ORDER BY c.relname) INTO unlisted
            FROM pg_catalog.pg_trigger t
            JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
            WHERE t.tgname OPERATOR(pg_catalog.=) '\(triggerNames["UPDATE"]!)' AND NOT t.tgisinternal AND t.tgqual IS NOT NULL
              AND NOT NEW.tenant_id OPERATOR(pg_catalog.=) ANY (COALESCE(pg_catalog.substring(pg_catalog.pg_get_triggerdef(t.oid),
                  '''(\\{[^'']*\\})''::(?:pg_catalog\\.)?(?:text|smallint|integer|bigint|int2|int4|int8)\\[\\]')::pg_catalog.text[], '{}'));
            IF unlisted IS NOT NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
                    MESSAGE = pg_catalog.format('tenant %s cannot get capture state: the capture triggers of %s do not list it, so its writes would not be captured', NEW.tenant_id, unlisted),
                    HINT = 'Is this Tenantry older than the capture installed in this database? Upgrade it; ''tenantry capture install'' lists every tenant that has capture state.';
            END IF;
            RETURN NEW;
        END
        $listed$;
        CREATE OR REPLACE TRIGGER capture_state_listed BEFORE INSERT ON tenantry.capture_state
            FOR EACH ROW EXECUTE FUNCTION tenantry.capture_state_listed();
        """

    /// Tenants whose unified rows retire-legacy deleted, written in the delete's own transaction:
    /// a re-run after a crash reads it to tell a committed delete from one that never happened,
    /// and restore-legacy reads which archive (directory name) holds the latest retirement.
    static let retiredTable = """
        CREATE TABLE IF NOT EXISTS tenantry.retired_tenants (
            tenant_id text PRIMARY KEY,
            retired_at timestamptz NOT NULL DEFAULT now(),
            archive text
        );
        """

    /// The trigger function's name for `table` (unique, at most 63 bytes).
    static func functionName(_ table: String) -> String {
        let stem = String(table.lowercased().unicodeScalars.map { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)) ? Character($0) : "_" }.prefix(30))
        let hash = String(StableHash.fnv1a64(table) & 0xffff_ffff, radix: 16)
        return "capture_\(stem)_\(hash)"
    }

    /// The trigger function and trigger for one table. With `tenant`, the reverse capture of a
    /// tenant database: every row is that tenant's (its tables have no discriminator).
    ///
    /// The function is SECURITY DEFINER (the application role writes the outbox only through it)
    /// but has no `SET search_path`: that clause saves and restores a setting on every call, a
    /// measured 3–4% of a plain write's cost. Instead every function, operator, cast and table it
    /// names is schema-qualified, so a caller's `search_path` cannot redirect any of them.
    /// With `functionOnly`, only the function is replaced (no table lock: safe on a database under
    /// load, where re-creating triggers table by table could deadlock with the application's writes).
    /// In the unified database `listing` says which rows fire it (see ``triggers(for:plan:listing:)``):
    /// it must name every tenant that has a `capture_state` row.
    static func trigger(
        for table: MovePlan.Table, plan: MovePlan, tenant constant: TenantID? = nil, functionOnly: Bool = false,
        listing: Listing = .everyRow
    ) throws -> String {
        let function = "tenantry.\(functionName(table.name))"
        let discriminator = try SQLIdentifier.quoted(plan.discriminator)
        let tableLiteral = "'" + table.name.replacingOccurrences(of: "'", with: "''") + "'"
        func key(_ row: String) throws -> String {
            let pairs = try table.primaryKey.map { column in
                "'\(column.replacingOccurrences(of: "'", with: "''"))', \(row).\(try SQLIdentifier.quoted(column))"
            }
            return "pg_catalog.jsonb_build_object(\(pairs.joined(separator: ", ")))"
        }
        // See MovePlan.Table.textEncodedColumns.
        let textColumns = table.writableColumns.filter(table.textEncodedColumns.contains)
        let image = textColumns.isEmpty ? "pg_catalog.to_jsonb(NEW)" : "pg_catalog.to_jsonb(NEW) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object("
            + (try textColumns.map { "\(literal($0)), NEW.\(try SQLIdentifier.quoted($0))::pg_catalog.text" }.joined(separator: ", ")) + ")"
        // `IS DISTINCT FROM` cannot name its operator's schema; spelled out with pg_catalog's `<>`.
        let changed = "(OLD.\(discriminator) IS NULL) OPERATOR(pg_catalog.<>) (NEW.\(discriminator) IS NULL) "
            + "OR OLD.\(discriminator) OPERATOR(pg_catalog.<>) NEW.\(discriminator)"
        let tenantFromRow = """
                IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
                    tenant := OLD.\(discriminator)::pg_catalog.text;
                ELSE
                    tenant := NEW.\(discriminator)::pg_catalog.text;
                    IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND (\(changed)) THEN
                        RAISE EXCEPTION USING ERRCODE = 'check_violation',
                            MESSAGE = pg_catalog.format('%s.%s cannot change (from %s to %s): a row belongs to one tenant',
                                TG_TABLE_NAME, \(literal(plan.discriminator)), OLD.\(discriminator), NEW.\(discriminator));
                    END IF;
                END IF;
            """
        // The three events' appends, each written by `append(op, columns, values)`.
        func branches(_ append: (String, String, String) -> String) throws -> String {
            """
                    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
                \(append("D", "old_key", try key("OLD")))
                    ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
                        key_before := \(try key("OLD"));
                        -- The old key only when the key changed (the relay deletes that row first).
                        IF key_before OPERATOR(pg_catalog.=) \(try key("NEW")) THEN
                            key_before := NULL;
                        END IF;
                \(append("U", "old_key, row_data", "key_before, \(image)"))
                    ELSE
                \(append("I", "row_data", image))
                    END IF;
                """
        }
        // The usual case in one statement: the change appended when the tenant is captured and has
        // not moved (FOUND tells); the state read in the same statement, after the fence.
        func appendWhenCaptured(_ op: String, _ columns: String, _ values: String) -> String {
            """
                        INSERT INTO tenantry.changes (tenant_id, table_name, op, \(columns))
                            SELECT tenant, \(tableLiteral), '\(op)', \(values) FROM tenantry.capture_state s
                            WHERE s.tenant_id OPERATOR(pg_catalog.=) tenant AND s.capturing AND NOT s.moved;
            """
        }
        // Every other case: the state as of now, and the change appended when captured, in one
        // statement (its `moved` decides whether the write is refused).
        func decide(_ forShare: Bool) throws -> String {
            let state = "SELECT capturing, moved FROM tenantry.capture_state WHERE tenant_id OPERATOR(pg_catalog.=) tenant\(forShare ? " FOR SHARE" : "")"
            return try branches { op, columns, values in
                """
                        WITH s AS (\(state)),
                            appended AS (INSERT INTO tenantry.changes (tenant_id, table_name, op, \(columns))
                                SELECT tenant, \(tableLiteral), '\(op)', \(values) FROM s WHERE s.capturing)
                        SELECT s.moved INTO state FROM s;
                """
            }
        }
        let body = """
            DECLARE
                tenant pg_catalog.text;
                state record;
                key_before pg_catalog.jsonb;
                applying pg_catalog.text;
                fence pg_catalog.text;
            BEGIN
            \(constant.map { "    tenant := \(literal($0.rawValue));" } ?? tenantFromRow)
                -- Tenantry's own apply sessions (relay, copier, retirement) skip capture and the guard
                -- ('on'); a server move's relay passes the guard but is captured ('relay': the
                -- follower database records what it applies, for the next link of the chain).
                -- Only they may: the session's login must own this function or be a superuser.
                applying := COALESCE(pg_catalog.current_setting('tenantry.applying', true), '');
                IF applying OPERATOR(pg_catalog.=) 'on' OR applying OPERATOR(pg_catalog.=) 'relay' THEN
                    IF NOT (SESSION_USER OPERATOR(pg_catalog.=) CURRENT_USER OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r
                            WHERE r.rolname OPERATOR(pg_catalog.=) SESSION_USER)) THEN
                        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                            MESSAGE = pg_catalog.format('tenantry.applying is reserved for Tenantry''s apply sessions (role %s may not skip capture)', SESSION_USER);
                    END IF;
                    IF applying OPERATOR(pg_catalog.=) 'on' THEN
                        RETURN NULL;
                    END IF;
                END IF;
                -- The tenant's write fence, shared (a cutover or rollback holds it exclusively while it
                -- switches the tenant). Its key is computed here, by this server, from the id: an
                -- assignment of one expression, which PL/pgSQL evaluates without a statement (no
                -- executor, no snapshot); cutover and rollback lock the same expression of the id.
                -- Another tenant with the same key only waits more, never loses a write.
                fence := pg_catalog.pg_advisory_xact_lock_shared(\(AdvisoryLock.fenceNamespace), pg_catalog.hashtext(tenant));
                -- Decide with the state as of now, not as of an older snapshot: in READ COMMITTED each
                -- statement below takes a new snapshot (after the fence), so a writer that waited on the
                -- fence sees the cutover's `moved`. A REPEATABLE READ or SERIALIZABLE transaction keeps the
                -- snapshot it began with, which may predate a cutover or rollback: FOR SHARE then fails
                -- with 40001 (could not serialize) when the row changed since, so such a write is
                -- retried by the application instead of landing on the wrong side. The change is
                -- appended in the same statement that reads the state; a moved tenant's write is then
                -- rejected (its transaction, appended change included, rolls back).
                IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' THEN
                    -- Without trigger arguments the row's tenant has capture state (a listing trigger,
                    -- or a tenant database): try the usual case first. A trigger that fires for every
                    -- row passes 'every_row': most of its rows have no state, found by the read below.
                    IF TG_NARGS OPERATOR(pg_catalog.=) 0 THEN
            \(try branches(appendWhenCaptured))
                        IF FOUND THEN
                            RETURN NULL;
                        END IF;
                    END IF;
                    -- Not appended: no state (nothing to do), not captured, or moved (a moved tenant's
                    -- write is refused; a server move's relay is captured there). Read the state;
                    -- when captured, decide and append as below (the fence is held: no cutover or
                    -- rollback changed `moved` since).
                    SELECT s.capturing, s.moved INTO state FROM tenantry.capture_state s
                        WHERE s.tenant_id OPERATOR(pg_catalog.=) tenant;
                    IF NOT FOUND THEN
                        RETURN NULL;
                    END IF;
                    IF state.capturing THEN
            \(try decide(false))
                    END IF;
                ELSE
            \(try decide(true))
                END IF;
                IF state.moved AND applying OPERATOR(pg_catalog.<>) 'relay' THEN
                    RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction',
                        MESSAGE = pg_catalog.format('tenant %s has moved to its own database: write through the router', tenant),
                        HINT = \(literal(Database.tenantMovedHint));
                END IF;
                RETURN NULL;
            END
            """
        // A table or column name may contain any text, including a dollar-quote tag: pick one the
        // body does not contain, so no name can end the function body early.
        let tag = dollarTag(notIn: body)
        let create = """
            CREATE OR REPLACE FUNCTION \(function)() RETURNS trigger LANGUAGE plpgsql
                SECURITY DEFINER AS \(tag)
            \(body)
            \(tag);
            """
        guard !functionOnly else { return create }
        guard constant == nil else {
            // A tenant database: every row is the tenant's, one trigger for every event.
            return create + """

                DROP TRIGGER IF EXISTS \(legacyTriggerName) ON \(plan.unifiedName(table));
                CREATE TRIGGER \(legacyTriggerName) AFTER INSERT OR UPDATE OR DELETE ON \(plan.unifiedName(table))
                    FOR EACH ROW EXECUTE FUNCTION \(function)();
                """
        }
        return create + "\nDROP TRIGGER IF EXISTS \(legacyTriggerName) ON \(plan.unifiedName(table));\n"
            + (try triggers(for: table, plan: plan, listing: listing))
    }

    /// Before 2026-11-30 the unified database had one capture trigger per table for every event and
    /// every row (tenant databases still have it).
    static let legacyTriggerName = "tenantry_capture"

    /// The unified database's capture triggers, one per event: each one's `WHEN` condition may only
    /// name the row images its event has (`NEW` for an INSERT, `OLD` for a DELETE).
    static let triggerNames = ["INSERT": "tenantry_capture_insert", "UPDATE": "tenantry_capture_update", "DELETE": "tenantry_capture_delete"]

    /// The most tenant ids a `WHEN` condition lists. PostgreSQL reads a trigger's condition afresh
    /// for every statement (measured on 15: ≈ 0.08 µs per listed id and write, so 10,000 ids cost
    /// ≈ 0.8 ms per write, a linear search the planner never turns into a hash): beyond this many
    /// tenants with capture state every row fires the function again, which looks the tenant up.
    static let listLimit = 100

    /// Which rows of the unified database fire the capture function.
    enum Listing: Equatable, Sendable {
        /// Every row (the function looks the tenant up in `capture_state`).
        case everyRow
        /// Only rows of these tenants (their ids as text), and updates that change the discriminator
        /// (an empty list: only those updates; the table then has no INSERT or DELETE trigger).
        case tenants([String])

        /// The listing for the tenants with capture state `ids`: the ids when there are at most
        /// ``CaptureSQL/listLimit``, every row otherwise.
        static func of(_ ids: some Sequence<String>) -> Listing {
            let sorted = Array(Set(ids)).sorted { ($0.count, $0) < ($1.count, $1) }
            return sorted.count <= listLimit ? .tenants(sorted) : .everyRow
        }

        /// Whether a row of `tenant` fires the function.
        func fires(_ tenant: String) -> Bool {
            switch self {
            case .everyRow: return true
            case .tenants(let ids): return ids.contains(tenant)
            }
        }
    }

    /// The capture triggers of one unified table (`CREATE OR REPLACE`: a re-listing is atomic and
    /// takes the table's SHARE ROW EXCLUSIVE lock, not ACCESS EXCLUSIVE).
    ///
    /// With a tenant list, a row fires the function only when its tenant has capture state — or, for
    /// an UPDATE, when the discriminator changes, which the function rejects for every tenant.
    /// Tenants not being moved then run no PL/pgSQL and queue no AFTER-trigger event. What they
    /// still pay is PostgreSQL compiling each trigger's `WHEN` once per statement (≈ 1.5 µs), so:
    /// - the list is compared in the discriminator's own type when every id is that type's
    ///   canonical text (``whenList(_:type:)``): no text conversion per row, and a shorter stored
    ///   condition (PostgreSQL re-reads an array constant byte by byte: the smallest integer type
    ///   that holds the ids is used);
    /// - a NOT NULL discriminator's change test has no NULL tests;
    /// - an empty list has no INSERT and DELETE trigger at all (the UPDATE trigger stays, for the
    ///   refusal): a table nobody is moved out of costs its INSERTs and DELETEs nothing. Growing the
    ///   list creates them (before a state row exists); shrinking it to nobody drops them
    ///   (`DROP TRIGGER`: a brief ACCESS EXCLUSIVE lock, only in ``Capture/refreshTriggerList()``
    ///   and ``Capture/install()``).
    ///
    /// Triggers that fire for every row pass the function `'every_row'`: it then reads the tenant's
    /// state before it tries to append (most such rows belong to tenants without state).
    static func triggers(for table: MovePlan.Table, plan: MovePlan, listing: Listing) throws -> String {
        let name = plan.unifiedName(table)
        let function = "tenantry.\(functionName(table.name))"
        let discriminator = try SQLIdentifier.quoted(plan.discriminator)
        var conditions: [String: String] = [:]
        var dropped: [String] = []
        if case .tenants(let ids) = listing {
            // A NOT NULL discriminator (every tenant-scoped table's) needs no NULL tests: half the condition.
            let changed = (table.unifiedDiscriminatorNotNull ? ""
                : "(OLD.\(discriminator) IS NULL) OPERATOR(pg_catalog.<>) (NEW.\(discriminator) IS NULL) OR ")
                + "OLD.\(discriminator) OPERATOR(pg_catalog.<>) NEW.\(discriminator)"
            if ids.isEmpty {
                dropped = ["INSERT", "DELETE"]
                conditions["UPDATE"] = changed
            } else {
                let (array, typed) = whenList(ids, type: table.unifiedDiscriminatorType ?? plan.discriminatorType)
                func listed(_ row: String) -> String {
                    (typed ? "\(row).\(discriminator)" : "(\(row).\(discriminator))::pg_catalog.text") + " OPERATOR(pg_catalog.=) ANY (\(array))"
                }
                conditions["INSERT"] = listed("NEW")
                conditions["DELETE"] = listed("OLD")
                conditions["UPDATE"] = listed("NEW") + " OR " + changed
            }
        }
        return try ["INSERT", "UPDATE", "DELETE"].map { event in
            let trigger = try SQLIdentifier.quoted(triggerNames[event]!)
            guard !dropped.contains(event) else { return "DROP TRIGGER IF EXISTS \(trigger) ON \(name);" }
            return """
                CREATE OR REPLACE TRIGGER \(trigger) AFTER \(event) ON \(name) FOR EACH ROW
                    \(conditions[event].map { "WHEN (\($0)) " } ?? "")EXECUTE FUNCTION \(function)(\(listing == .everyRow ? "'every_row'" : ""));
                """
        }.joined(separator: "\n")
    }

    /// The array literal a `WHEN` condition compares the discriminator with, and whether it is typed.
    ///
    /// Typed (`'{901,902}'::pg_catalog.int2[]`, compared with the column itself through the integer
    /// cross-type `=`; `int4`/`int8` when an id needs it) when the column is an integer type and
    /// every id is a canonical integer (`901`, not `0901` or `+901`), or when it is `text`; otherwise the ids as text, compared with the column cast to text (what the
    /// function does). Both fire for exactly the rows whose discriminator, as text, is listed: a
    /// canonical id is the text of the one value it converts to. The ids are written as one quoted
    /// array literal, never spliced as SQL (a listed id is a state row's text, which Tenantry
    /// validates but a hand-made row need not be).
    static func whenList(_ ids: [String], type: String) -> (array: String, typed: Bool) {
        func quotedArray(_ elementType: String) -> String {
            literal("{" + ids.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
                .joined(separator: ",") + "}") + "::pg_catalog.\(elementType)[]"
        }
        switch type {
        case "bigint", "integer", "smallint":
            let values = ids.compactMap { id in Int64(id).flatMap { String($0) == id ? $0 : nil } }
            guard values.count == ids.count else { return (quotedArray("text"), false) }
            let element = values.allSatisfy { Int16(exactly: $0) != nil } ? "int2" : values.allSatisfy { Int32(exactly: $0) != nil } ? "int4" : "int8"
            return (quotedArray(element), true)
        case "text":
            return (quotedArray("text"), true)
        default:
            return (quotedArray("text"), false)
        }
    }

    /// A dollar-quote tag (`$tenantry$`, `$tenantry1$`, …) that does not occur in `body`.
    static func dollarTag(notIn body: String) -> String {
        var candidate = "$tenantry$"
        var counter = 0
        while body.contains(candidate) {
            counter += 1
            candidate = "$tenantry\(counter)$"
        }
        return candidate
    }

    static func literal(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
