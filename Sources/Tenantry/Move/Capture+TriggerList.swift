import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// The tenant list of the unified database's capture triggers.
///
/// The invariant (zero data loss): at every instant, every tenant that has a `capture_state` row
/// is listed in every tenant table's capture triggers (or they fire for every row). So the list
/// grows — triggers re-created and committed — before a row is inserted, and shrinks only after
/// rows are gone (nothing in Tenantry deletes one; ``refreshTriggerList()`` follows the rows
/// as they are). Every change of the list and every insert of a row happens under the
/// capture-install advisory lock, so two of them never interleave. A crash between growing the
/// list and inserting the row leaves a superset: harmless (such a tenant's writes run the
/// function, which finds no state and returns).
extension Capture {
    /// One tenant table whose capture triggers miss tenants that have capture state.
    public struct TriggerProblem: Sendable, Codable, Equatable {
        /// The table.
        public var table: String
        /// Tenants with capture state whose writes to the table would not be captured or guarded.
        public var missing: [String]
        /// What is wrong, in a few words.
        public var detail: String
    }

    /// One table's capture triggers as installed.
    struct InstalledTriggers {
        /// The pre-2026-11-30 trigger (every event, every row) is present.
        var legacy = false
        /// Per event (`INSERT`, `UPDATE`, `DELETE`): the tenants listed, or nil when every row fires it.
        /// An event without a trigger lists nobody (an empty list has no INSERT or DELETE trigger).
        var events: [String: [String]?] = [:]

        /// Whether rows of `tenant` fire the function for every event.
        func fires(_ tenant: String) -> Bool {
            if legacy { return true }
            return CaptureSQL.triggerNames.keys.allSatisfy { event in
                guard let listed = events[event] else { return false }
                return listed.map { $0.contains(tenant) } ?? true
            }
        }

        /// Whether the triggers are exactly the ones `listing` makes (an empty list: the UPDATE
        /// trigger only, for the discriminator-change refusal).
        func matches(_ listing: CaptureSQL.Listing) -> Bool {
            if !legacy, listing == .tenants([]) { return events.count == 1 && events["UPDATE"] == .some(.some([])) }
            guard !legacy, events.count == CaptureSQL.triggerNames.count else { return false }
            return events.values.allSatisfy { listed in
                switch listing {
                case .everyRow: return listed == nil
                case .tenants(let ids): return listed.map { Set($0) == Set(ids) } ?? false
                }
            }
        }
    }

    /// The capture triggers of every table of `schema`, by table name.
    static func installedTriggers(on connection: PostgresConnection, schema: String, logger: Logger) async throws -> [String: InstalledTriggers] {
        let names = [CaptureSQL.legacyTriggerName] + CaptureSQL.triggerNames.values.sorted()
        let rows = try await connection.query("""
            SELECT c.relname::text, t.tgname::text, t.tgqual IS NULL,
                   coalesce(substring(pg_catalog.pg_get_triggerdef(t.oid) FROM '''(\\{[^'']*\\})''::(text|smallint|integer|bigint)\\[\\]')::text[], '{}')
            FROM pg_catalog.pg_trigger t
            JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = \(schema) AND t.tgname = ANY(\(names)) AND NOT t.tgisinternal
            """, logger: logger)
        var result: [String: InstalledTriggers] = [:]
        let events = Dictionary(uniqueKeysWithValues: CaptureSQL.triggerNames.map { ($0.value, $0.key) })
        for try await (table, name, everyRow, ids) in rows.decode((String, String, Bool, [String]).self) {
            if name == CaptureSQL.legacyTriggerName {
                result[table, default: .init()].legacy = true
            } else if let event = events[name] {
                result[table, default: .init()].events[event] = everyRow ? .some(nil) : .some(ids)
            }
        }
        return result
    }

    /// The tenants with a `capture_state` row.
    static func stateTenants(on connection: PostgresConnection, logger: Logger) async throws -> [String] {
        var tenants: [String] = []
        for try await tenant in try await connection.query("SELECT tenant_id FROM tenantry.capture_state", logger: logger)
            .decode(String.self) {
            tenants.append(tenant)
        }
        return tenants
    }

    /// Runs `body` holding the capture-install advisory lock (session level) on `connection`.
    func withListLock<Result: Sendable>(
        _ connection: PostgresConnection, _ body: () async throws -> Result
    ) async throws -> Result {
        try await connection.query(
            "SELECT pg_advisory_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.captureInstall))", logger: logger)
        do {
            let result = try await body()
            try await connection.query(
                "SELECT pg_advisory_unlock(\(AdvisoryLock.namespace), \(AdvisoryLock.captureInstall))", logger: logger)
            return result
        } catch {
            _ = try? await connection.query(
                "SELECT pg_advisory_unlock(\(AdvisoryLock.namespace), \(AdvisoryLock.captureInstall))", logger: logger)
            throw error
        }
    }

    /// Re-creates the capture triggers of every tenant table whose triggers do not match the
    /// listing of `tenants` (with `growOnly`, only of tables where a tenant of `tenants` does not
    /// fire them yet, or that still have an older install's single trigger). Table by table, each in
    /// its own short transaction (one `DO` statement) under ``relistLockTimeout``
    /// (a writer waits at most about that long behind it), retried until ``enableTimeout``.
    /// The caller holds the list lock. Tables without any capture trigger (capture never installed
    /// there) are left alone, as before. `installed` is the triggers as the caller just read them
    /// under the same lock (read here otherwise). Returns the tables changed.
    @discardableResult
    func relist(
        _ tenants: [String], growOnly: Bool, installed known: [String: InstalledTriggers]? = nil, on connection: PostgresConnection
    ) async throws -> [String] {
        let listing = CaptureSQL.Listing.of(tenants)
        let installed: [String: InstalledTriggers]
        if let known { installed = known } else { installed = try await Self.installedTriggers(on: connection, schema: schema, logger: logger) }
        // Every table already fires for them (e.g. listed ahead of a batch): nothing to change,
        // and no need to read the schema.
        if growOnly, installed.values.allSatisfy({ !$0.legacy && tenants.allSatisfy($0.fires) }) { return [] }
        let plan = try await MovePlan.load(connection, schema: schema, discriminator: discriminator, logger: logger)
        var changed: [String] = []
        let deadline = ContinuousClock.now + enableTimeout
        for table in plan.tables {
            guard let current = installed[table.name] else { continue }
            // An older install's single trigger is replaced whenever the list is touched.
            if !current.legacy, growOnly ? tenants.allSatisfy(current.fires) : current.matches(listing) { continue }
            var script = current.legacy ? "DROP TRIGGER IF EXISTS \(CaptureSQL.legacyTriggerName) ON \(plan.unifiedName(table));\n" : ""
            script += try CaptureSQL.triggers(for: table, plan: plan, listing: listing)
            // One statement, its own transaction: the table's lock is held only while the server
            // runs it, never across a round trip to this process (on a busy machine each round trip
            // waits for CPU, and the table's writers would wait behind all of them).
            let body = "BEGIN\nPERFORM pg_catalog.set_config('lock_timeout', '\(Cutover.milliseconds(relistLockTimeout))ms', true);\n"
                + (try SQLScript.statements(script).map { "EXECUTE \(CaptureSQL.literal($0));" }.joined(separator: "\n")) + "\nEND"
            let tag = CaptureSQL.dollarTag(notIn: body)
            while true {
                do {
                    try await connection.query(PostgresQuery(unsafeSQL: "DO \(tag)\n\(body)\n\(tag)"), logger: logger)
                    break
                } catch where Database.sqlState(of: error) == "55P03" {
                    guard ContinuousClock.now < deadline else {
                        let holders = try await lockHolders(plan.unifiedName(table), on: connection)
                        throw TenantryError(
                            code: .timeout,
                            message: "capture: table \(table.name) stayed locked for \(enableTimeout) while its capture triggers were "
                                + "being re-listed (before any capture state changed)\(holders.isEmpty ? "" : ", by \(holders.prefix(5).joined(separator: "; "))")"
                                + ". End them (or wait) and retry; nothing is lost meanwhile",
                            table: table.name)
                    }
                    try await Task.sleep(for: .milliseconds(Int64.random(in: 10...40)))
                }
            }
            changed.append(table.name)
        }
        return changed
    }

    /// The sessions and prepared transactions holding a lock on `table` that a trigger change waits for.
    func lockHolders(_ table: String, on connection: PostgresConnection) async throws -> [String] {
        var holders: [String] = []
        let rows = try await connection.query("""
            SELECT coalesce(a.pid, 0), coalesce(a.usename::text, ''), coalesce(a.application_name, ''), coalesce(a.state, ''),
                   coalesce(to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS'), ''), coalesce(p.gid, ''), coalesce(p.owner::text, '')
            FROM pg_catalog.pg_locks l
            LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
            -- A prepared transaction's locks have no pid; its transaction id lock names it.
            LEFT JOIN pg_catalog.pg_locks x ON l.pid IS NULL AND x.locktype = 'transactionid' AND x.pid IS NULL
                AND x.virtualtransaction = l.virtualtransaction
            LEFT JOIN pg_catalog.pg_prepared_xacts p ON p.transaction = x.transactionid
            WHERE l.locktype = 'relation' AND l.granted AND l.relation = to_regclass(\(table))
              AND l.mode IN ('RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock',
                             'ExclusiveLock', 'AccessExclusiveLock')
              AND l.pid IS DISTINCT FROM pg_backend_pid()
            """, logger: logger)
        for try await (pid, user, application, state, started, gid, owner) in rows.decode((Int, String, String, String, String, String, String).self) {
            if !gid.isEmpty {
                holders.append("prepared transaction '\(gid)' (owner \(owner)): COMMIT PREPARED or ROLLBACK PREPARED it")
            } else if pid != 0 {
                holders.append("pid \(pid) (user \(user)\(application.isEmpty ? "" : ", application '\(application)'"), \(state), transaction open since \(started))")
            }
        }
        return holders
    }

    /// Makes the capture triggers of every tenant table list exactly the tenants that have capture
    /// state now (growing or shrinking it), e.g. after capture state rows were deleted by hand or a
    /// dump restored. ``install()`` does it too. Returns the tables changed.
    @discardableResult
    public func refreshTriggerList() async throws -> [String] {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await withListLock(connection) {
                try await relist(try await Self.stateTenants(on: connection, logger: logger), growOnly: false, on: connection)
            }
        }
    }

    /// Tenant tables whose capture triggers miss a tenant that has capture state (its writes would
    /// be neither captured nor guarded: an error `tenantry doctor` names), or have none at all
    /// while some tenant has capture state.
    /// Empty when all is well or capture is not installed.
    public func triggerProblems() async throws -> [TriggerProblem] {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            let installed = try await connection.query("SELECT to_regclass('tenantry.capture_state') IS NOT NULL", logger: logger)
                .decode(Bool.self).first(where: { _ in true }) ?? false
            guard installed else { return [] }
            let tenants = try await Self.stateTenants(on: connection, logger: logger)
            let triggers = try await Self.installedTriggers(on: connection, schema: schema, logger: logger)
            let plan = try await MovePlan.load(connection, schema: schema, discriminator: discriminator, logger: logger)
            var problems: [TriggerProblem] = []
            for table in plan.tables {
                guard let current = triggers[table.name] else {
                    // A table added after the install: at risk only once a tenant has capture state.
                    if !tenants.isEmpty {
                        problems.append(TriggerProblem(
                            table: table.name, missing: tenants.sorted(), detail: "no capture trigger (run 'tenantry capture install')"))
                    }
                    continue
                }
                if current.legacy && !current.events.isEmpty {
                    problems.append(TriggerProblem(
                        table: table.name, missing: [], detail: "old and new capture triggers both present: writes captured twice"))
                }
                let missing = tenants.filter { !current.fires($0) }.sorted { ($0.count, $0) < ($1.count, $1) }
                if !missing.isEmpty {
                    problems.append(TriggerProblem(
                        table: table.name, missing: missing,
                        detail: "capture trigger list misses tenant(s) with capture state \(missing.prefix(10).joined(separator: ", "))"
                            + "\(missing.count > 10 ? " and \(missing.count - 10) more" : "") (run 'tenantry capture install')"))
                }
            }
            return problems
        }
    }
}
