import Logging
import PostgresNIO
import TenantryCore

/// The security guards of the unified database (DESIGN.md, "Security"): on every tenant-scoped
/// table the discriminator is immutable (a trigger; every attempt audited), row-level security
/// keyed by `tenantry.tenant` confines the application role to one tenant's rows, and capture is
/// installed, whose trigger rejects direct writes of tenants that have moved.
///
/// Every call opens its own connection to `unifiedURL` (a login that owns the tenant tables; a
/// superuser to store audit rows through dblink).
public struct TenantGuard: Sendable {
    /// Where refused attempts are recorded.
    public struct AuditMode: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
        /// `dblink` when it works, otherwise `server-log` (with the reason in the report).
        public static let automatic = AuditMode(rawValue: "auto")
        /// Rows in `tenantry.guard_audit`, written by a loopback session (dblink) that commits even
        /// though the refused transaction rolls back. Install fails when that is impossible.
        public static let dblink = AuditMode(rawValue: "dblink")
        /// `RAISE LOG` lines in the server log only.
        public static let serverLog = AuditMode(rawValue: "server-log")

        /// The mode's name.
        public var rawValue: String
        /// A mode by name (`auto`, `dblink`, `server-log`).
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The mode's name.
        public var description: String { rawValue }
    }

    /// The unified database, as a login that owns its tenant tables.
    public var unifiedURL: PostgresURL
    /// The tenant key column.
    public var discriminator: String
    /// The schema of the tenant tables.
    public var schema: String
    /// How long installing waits for a table lock before giving up (a long transaction holding
    /// one would otherwise queue every other query of the table behind the install).
    public var lockTimeout: Duration
    /// The logger.
    public var logger: Logger

    /// Creates a guard handle.
    public init(unifiedURL: PostgresURL, discriminator: String = "shop_id", schema: String = "public",
                lockTimeout: Duration = .seconds(10), logger: Logger) {
        self.unifiedURL = unifiedURL
        self.discriminator = discriminator
        self.schema = schema
        self.lockTimeout = lockTimeout
        self.logger = logger
    }

    /// What ``install(appRoles:audit:installCapture:)`` did.
    public struct InstallReport: Sendable, Codable, Equatable {
        /// Tenant tables whose discriminator is now guarded.
        public var tables: [String]
        /// Tables whose trigger or policy was (re)created by this run (empty on a re-run that found
        /// everything current: no table was locked).
        public var changed: [String]
        /// Where refused attempts go: `dblink` or `server-log`.
        public var auditMode: AuditMode
        /// Why the audit goes to the server log, when it does.
        public var auditNote: String?
        /// Roles confined by row-level security (empty: row-level security not configured).
        public var appRoles: [String]
        /// Whether capture (and with it the moved-tenant guard) is installed.
        public var captureInstalled: Bool
    }

    /// Installs the guards, or brings them up to date. Idempotent: a re-run that finds everything
    /// current changes nothing. Serialised by an advisory lock.
    ///
    /// - Parameters:
    ///   - appRoles: the roles row-level security confines (`nil`: those of the last install).
    ///     Each must exist and must not own a tenant table, be a superuser or bypass RLS: for
    ///     those PostgreSQL does not apply policies, and the guard would be a false promise.
    ///   - audit: where refused attempts are recorded.
    ///   - installCapture: also install (refresh) capture, whose trigger rejects moved tenants'
    ///     direct writes.
    @discardableResult
    public func install(appRoles: [String]? = nil, audit: AuditMode = .automatic, installCapture: Bool = true) async throws -> InstallReport {
        // The audit table must be committed before the loopback session can write to it.
        let configured = try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                try await lock(connection)
                try await Database.execute(script: GuardSQL.tables + GuardSQL.loopbackFunction, on: connection, logger: logger)
                return try await Self.configuredRoles(connection, logger: logger)
            }
        }
        let roles = Array(Set(appRoles ?? configured)).sorted()
        let (mode, note) = try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await chooseAuditMode(audit, on: connection)
        }
        var report = try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                try await lock(connection)
                try await connection.query(
                    PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(Cutover.milliseconds(lockTimeout))ms'"), logger: logger)
                let plan = try await MovePlan.load(connection, schema: schema, discriminator: discriminator, logger: logger)
                try await validate(roles: roles, plan: plan, on: connection)
                let record = mode == .dblink ? try GuardSQL.recordWithDBLink(dblinkSchema: try await dblinkSchema(connection) ?? "tenantry")
                    : GuardSQL.recordToServerLog
                try await Database.execute(script: record + GuardSQL.triggerFunction, on: connection, logger: logger)
                var changed: Set<String> = []
                let current = try await currentObjects(connection)
                for table in plan.tables {
                    do {
                        let trigger = try GuardSQL.trigger(for: table, plan: plan)
                        if current.triggers[table.name] != Self.tag(trigger) {
                            try await Database.execute(script: trigger + comment(on: "TRIGGER \(GuardSQL.triggerName)", table, plan, trigger),
                                                       on: connection, logger: logger)
                            changed.insert(table.name)
                        }
                        if roles.isEmpty {
                            if current.policies[table.name] != nil {
                                try await Database.execute(script: GuardSQL.removePolicy(from: table, plan: plan), on: connection, logger: logger)
                                changed.insert(table.name)
                            }
                        } else {
                            let policy = try GuardSQL.policy(for: table, plan: plan, roles: roles)
                            if current.policies[table.name] != Self.tag(policy) || !(current.rowSecurity[table.name] ?? false) {
                                try await Database.execute(script: policy + comment(on: "POLICY \(GuardSQL.policyName)", table, plan, policy),
                                                           on: connection, logger: logger)
                                changed.insert(table.name)
                            }
                        }
                    } catch where Database.sqlState(of: error) == "55P03" {
                        throw TenantryError(
                            code: .timeout, message: "guard install: table \(table.name) stayed locked by other sessions for \(lockTimeout); "
                                + "nothing changed, retry at a quieter time", table: table.name)
                    } catch {
                        throw Database.wrap(error, "installing the guard on \(table.name)", table: table.name)
                    }
                }
                try await connection.query("""
                    INSERT INTO tenantry.guard_config (singleton, audit_mode, audit_note, app_roles, installed_at)
                    VALUES (true, \(mode.rawValue), \(note), \(roles), now())
                    ON CONFLICT (singleton) DO UPDATE SET audit_mode = excluded.audit_mode, audit_note = excluded.audit_note,
                        app_roles = excluded.app_roles, installed_at = excluded.installed_at
                    """, logger: logger)
                return InstallReport(
                    tables: plan.tables.map(\.name), changed: plan.tables.map(\.name).filter(changed.contains),
                    auditMode: mode, auditNote: note, appRoles: roles, captureInstalled: false)
            }
        }
        let capture = Capture(unifiedURL: unifiedURL, discriminator: discriminator, schema: schema, logger: logger)
        if installCapture { try await capture.install() }
        report.captureInstalled = try await capture.isInstalled()
        return report
    }

    func lock(_ connection: PostgresConnection) async throws {
        try await connection.query(
            "SELECT pg_advisory_xact_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.guardInstall))", logger: logger)
    }

    /// `COMMENT ON … IS 'tenantry:<hash of sql>'`: how a re-run knows an object is current.
    private func comment(on object: String, _ table: MovePlan.Table, _ plan: MovePlan, _ sql: String) -> String {
        "\nCOMMENT ON \(object) ON \(plan.unifiedName(table)) IS \(CaptureSQL.literal(Self.tag(sql)));"
    }

    static func tag(_ sql: String) -> String {
        "tenantry:" + String(StableHash.fnv1a64(sql), radix: 16)
    }

    static func configuredRoles(_ connection: PostgresConnection, logger: Logger) async throws -> [String] {
        let rows = try await connection.query("SELECT app_roles FROM tenantry.guard_config", logger: logger)
        return try await rows.decode([String].self).first(where: { _ in true }) ?? []
    }

    /// The schema of the dblink extension's functions, if it is installed.
    func dblinkSchema(_ connection: PostgresConnection) async throws -> String? {
        try await connection.query("""
            SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'
            """, logger: logger).decode(String.self).first(where: { _ in true })
    }
}
