import Logging
import PostgresNIO
import TenantryCore

extension TenantGuard {
    /// What `tenantry guard status` shows.
    public struct Status: Sendable, Codable, Equatable {
        /// Whether `guard install` has run (and not been undone).
        public var installed: Bool
        /// Where refused attempts go.
        public var auditMode: AuditMode?
        /// Why the audit goes to the server log, when it does.
        public var auditNote: String?
        /// Roles confined by row-level security.
        public var appRoles: [String]
        /// Tenant tables whose discriminator is guarded.
        public var guardedTables: [String]
        /// Tenant tables without the guard (created after the install: run it again).
        public var unguardedTables: [String]
        /// Tenant tables with Tenantry's row-level security policy enabled.
        public var rowLevelSecurityTables: [String]
        /// Refused attempts recorded in `tenantry.guard_audit`.
        public var auditedAttempts: Int
        /// Whether capture (and the moved-tenant guard) is installed.
        public var captureInstalled: Bool
    }

    /// The guards in place.
    public func status() async throws -> Status {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            let plan = try await MovePlan.load(connection, schema: schema, discriminator: discriminator, logger: logger)
            let objects = try await currentObjects(connection)
            let hasTables = try await connection.query(
                "SELECT to_regclass('tenantry.guard_config') IS NOT NULL AND to_regclass('tenantry.guard_audit') IS NOT NULL",
                logger: logger).decode(Bool.self).first(where: { _ in true }) ?? false
            var status = Status(
                installed: false, auditMode: nil, auditNote: nil, appRoles: [],
                guardedTables: plan.tables.map(\.name).filter { objects.triggers[$0] != nil },
                unguardedTables: plan.tables.map(\.name).filter { objects.triggers[$0] == nil },
                rowLevelSecurityTables: plan.tables.map(\.name).filter { objects.policies[$0] != nil && objects.rowSecurity[$0] == true },
                auditedAttempts: 0, captureInstalled: false)
            if hasTables {
                let rows = try await connection.query("""
                    SELECT audit_mode, audit_note, app_roles, (SELECT count(*)::int FROM tenantry.guard_audit) FROM tenantry.guard_config
                    """, logger: logger)
                for try await (mode, note, roles, attempts) in rows.decode((String, String?, [String], Int).self) {
                    status.installed = true
                    status.auditMode = AuditMode(rawValue: mode)
                    status.auditNote = note
                    status.appRoles = roles
                    status.auditedAttempts = attempts
                }
            }
            status.captureInstalled = try await connection.query(
                "SELECT to_regclass('tenantry.changes') IS NOT NULL AND to_regclass('tenantry.capture_state') IS NOT NULL",
                logger: logger).decode(Bool.self).first(where: { _ in true }) ?? false
            return status
        }
    }

    /// What ``uninstall()`` did.
    public struct UninstallReport: Sendable, Codable, Equatable {
        /// Tables the trigger or policy was removed from.
        public var tables: [String]
    }

    /// Removes the discriminator guard and Tenantry's row-level security policies. The audit table
    /// stays (it is evidence), and so does capture (moves depend on it).
    @discardableResult
    public func uninstall() async throws -> UninstallReport {
        try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                try await lock(connection)
                try await connection.query(
                    PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = '\(Cutover.milliseconds(lockTimeout))ms'"), logger: logger)
                let plan = try await MovePlan.load(connection, schema: schema, discriminator: discriminator, logger: logger)
                let objects = try await currentObjects(connection)
                var removed: [String] = []
                for table in plan.tables where objects.triggers[table.name] != nil || objects.policies[table.name] != nil {
                    var script = GuardSQL.removeTrigger(from: table, plan: plan)
                    if objects.policies[table.name] != nil { script += "\n" + GuardSQL.removePolicy(from: table, plan: plan) }
                    try await Database.execute(script: script, on: connection, logger: logger)
                    removed.append(table.name)
                }
                try await Database.execute(script: GuardSQL.dropFunctions, on: connection, logger: logger)
                try await connection.query("""
                    DO $tenantry$ BEGIN
                        IF to_regclass('tenantry.guard_config') IS NOT NULL THEN DELETE FROM tenantry.guard_config; END IF;
                    END $tenantry$
                    """, logger: logger)
                return UninstallReport(tables: removed)
            }
        }
    }
}
