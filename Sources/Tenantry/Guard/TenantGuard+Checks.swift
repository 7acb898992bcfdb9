import Logging
import PostgresNIO
import TenantryCore

extension TenantGuard {
    /// Decides where refused attempts go, creating the dblink extension when it can, and proves
    /// the loopback connection works before relying on it.
    func chooseAuditMode(_ requested: AuditMode, on connection: PostgresConnection) async throws -> (AuditMode, String?) {
        guard requested != .serverLog else { return (.serverLog, "chosen with --audit server-log") }
        var reason: String?
        let superuser = try await connection.query(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user", logger: logger)
            .decode(Bool.self).first(where: { _ in true }) ?? false
        if !superuser {
            reason = "the login \(unifiedURL.user) is not a superuser, and dblink's password-less loopback needs one"
        } else {
            do {
                try await Database.withTransaction(connection, logger: logger) { connection in
                    try await lock(connection)
                    try await connection.query("CREATE EXTENSION IF NOT EXISTS dblink SCHEMA tenantry", logger: logger)
                }
            } catch {
                reason = "the dblink extension is not available (\(Database.message(of: error)))"
            }
            if reason == nil, let schema = try await dblinkSchema(connection) {
                do {
                    try await connection.query(PostgresQuery(unsafeSQL: """
                        SELECT n FROM \(try SQLIdentifier.quoted(schema)).dblink(tenantry.guard_loopback(),
                            'SELECT count(*) FROM tenantry.guard_audit') AS t(n bigint)
                        """), logger: logger)
                } catch {
                    reason = "the loopback connection failed (\(Database.message(of: error)))"
                }
            }
        }
        guard let reason else { return (.dblink, nil) }
        if requested == .dblink {
            throw TenantryError(code: .conflict, message: "guard install --audit dblink: \(reason)")
        }
        logger.warning("guard audit goes to the server log", metadata: ["guard.reason": "\(reason)"])
        return (.serverLog, reason)
    }

    /// Refuses roles for which PostgreSQL would not apply the policies.
    func validate(roles: [String], plan: MovePlan, on connection: PostgresConnection) async throws {
        guard !roles.isEmpty else { return }
        var found: [String: (superuser: Bool, bypass: Bool)] = [:]
        let rows = try await connection.query(
            "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ANY(\(roles))", logger: logger)
        for try await (name, superuser, bypass) in rows.decode((String, Bool, Bool).self) { found[name] = (superuser, bypass) }
        for role in roles {
            guard let attributes = found[role] else {
                throw TenantryError(code: .invalidArgument, message: "--app-role \(role): no such role in the unified database's server")
            }
            if attributes.superuser || attributes.bypass {
                throw TenantryError(
                    code: .invalidArgument,
                    message: "--app-role \(role) is \(attributes.superuser ? "a superuser" : "BYPASSRLS"): row-level security would not apply to it")
            }
        }
        let owned = try await connection.query("""
            SELECT c.relname::text, r.rolname::text
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, unnest(\(roles)::text[]) AS r(rolname)
            WHERE n.nspname = \(plan.schema) AND c.relname = ANY(\(plan.tables.map(\.name)))
              AND pg_has_role(r.rolname, c.relowner, 'USAGE')
            ORDER BY 1 LIMIT 1
            """, logger: logger)
        for try await (table, role) in owned.decode((String, String).self) {
            throw TenantryError(
                code: .invalidArgument,
                message: "--app-role \(role) owns table \(table) (or inherits its owner): row-level security does not apply to owners; "
                    + "let another role own the tables", table: table)
        }
    }

    /// What is in place per table: the tag comment of the guard trigger and of Tenantry's policy
    /// (empty when untagged), and whether row-level security is enabled.
    struct Objects {
        var triggers: [String: String] = [:]
        var policies: [String: String] = [:]
        var rowSecurity: [String: Bool] = [:]
    }

    func currentObjects(_ connection: PostgresConnection) async throws -> Objects {
        var objects = Objects()
        let rows = try await connection.query("""
            SELECT c.relname::text, c.relrowsecurity,
                (SELECT coalesce(obj_description(t.oid, 'pg_trigger'), '') FROM pg_trigger t
                 WHERE t.tgrelid = c.oid AND t.tgname = \(GuardSQL.triggerName)),
                (SELECT coalesce(obj_description(p.oid, 'pg_policy'), '') FROM pg_policy p
                 WHERE p.polrelid = c.oid AND p.polname = \(GuardSQL.policyName))
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = \(schema) AND c.relkind IN ('r', 'p')
            """, logger: logger)
        for try await (table, rowSecurity, trigger, policy) in rows.decode((String, Bool, String?, String?).self) {
            objects.rowSecurity[table] = rowSecurity
            objects.triggers[table] = trigger
            objects.policies[table] = policy
        }
        return objects
    }
}
