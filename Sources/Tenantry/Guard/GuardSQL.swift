import TenantryCore

/// The SQL that `tenantry guard install` puts in the unified database (schema `tenantry`).
///
/// - `guard_audit`: every refused attempt to change a row's discriminator. The row is written by a
///   second session (dblink over a loopback connection), because a row inserted by the refused
///   transaction itself would be rolled back together with it.
/// - `guard_config`: how the guard was installed (audit mode, application roles).
/// - `guard_record(jsonb)`: stores one attempt (dblink) or, when that is impossible, writes it to
///   the server log (`RAISE LOG`); returns whether the row was stored.
/// - `guard_discriminator()`: the trigger function, shared by every tenant table (arguments: the
///   discriminator, then the table's key columns). It only runs when the discriminator changes
///   (the trigger's `WHEN` clause), so ordinary writes never call it.
enum GuardSQL {
    /// The trigger's name. It is a BEFORE trigger: it runs before row-level security checks the new
    /// row (which would refuse the application role's attempt without a trace) and before capture's
    /// AFTER trigger (which refuses it too, unaudited).
    static let triggerName = "tenantry_audit_discriminator"
    /// The row-level security policy's name on every tenant table.
    static let policyName = "tenantry_tenant_isolation"
    /// `application_name` of the loopback session that stores audit rows.
    static let loopbackApplication = "tenantry_guard_audit"

    /// Tables; idempotent.
    static let tables = """
        CREATE SCHEMA IF NOT EXISTS tenantry;
        CREATE TABLE IF NOT EXISTS tenantry.guard_audit (
            id bigserial PRIMARY KEY,
            attempted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            table_name text NOT NULL,
            column_name text NOT NULL,
            old_value text,
            new_value text,
            row_key jsonb,
            operation text NOT NULL,
            login_role text NOT NULL,
            effective_role text,
            application_name text,
            client_addr inet,
            backend_pid integer,
            transaction_id text
        );
        REVOKE ALL ON tenantry.guard_audit FROM PUBLIC;
        CREATE TABLE IF NOT EXISTS tenantry.guard_config (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            audit_mode text NOT NULL,
            audit_note text,
            app_roles text[] NOT NULL DEFAULT '{}',
            installed_at timestamptz NOT NULL DEFAULT now()
        );
        REVOKE ALL ON tenantry.guard_config FROM PUBLIC;
        """

    /// The libpq connection string of the loopback session: this database, as the current user
    /// (the functions' owner inside them), over the server's first Unix socket (TCP to localhost
    /// when it has none). Values are quoted for libpq. No password: the loopback relies on the
    /// server's local authentication (trust or peer), and dblink accepts that only for a superuser.
    static let loopbackFunction = #"""
        CREATE OR REPLACE FUNCTION tenantry.guard_conninfo_value(value text) RETURNS text LANGUAGE sql IMMUTABLE
            SET standard_conforming_strings = on AS $tenantry$
        SELECT '''' || replace(replace(value, '\', '\\'), '''', '\''') || ''''
        $tenantry$;
        CREATE OR REPLACE FUNCTION tenantry.guard_loopback() RETURNS text LANGUAGE sql STABLE
            SET search_path = pg_catalog, pg_temp AS $tenantry$
        SELECT format('dbname=%s user=%s port=%s host=%s application_name=\#(loopbackApplication) connect_timeout=5',
            tenantry.guard_conninfo_value(current_database()),
            tenantry.guard_conninfo_value(current_user::text),
            tenantry.guard_conninfo_value(current_setting('port')),
            tenantry.guard_conninfo_value(coalesce(
                nullif(trim(split_part(current_setting('unix_socket_directories'), ',', 1)), ''), 'localhost')))
        $tenantry$;
        REVOKE ALL ON FUNCTION tenantry.guard_loopback() FROM PUBLIC;
        """#

    /// `guard_record` storing through dblink (`dblinkSchema` holds the extension's functions).
    static func recordWithDBLink(dblinkSchema: String) throws -> String {
        let dblink = try SQLIdentifier.quoted(dblinkSchema)
        return #"""
            CREATE OR REPLACE FUNCTION tenantry.guard_record(entry jsonb) RETURNS boolean LANGUAGE plpgsql
                SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tenantry$
            BEGIN
                PERFORM \#(dblink).dblink_exec(tenantry.guard_loopback(), format($sql$
                    INSERT INTO tenantry.guard_audit (attempted_at, table_name, column_name, old_value, new_value, row_key,
                        operation, login_role, effective_role, application_name, client_addr, backend_pid, transaction_id)
                    SELECT r.attempted_at, r.table_name, r.column_name, r.old_value, r.new_value, r.row_key, r.operation,
                        r.login_role, r.effective_role, r.application_name, r.client_addr, r.backend_pid, r.transaction_id
                    FROM jsonb_populate_record(NULL::tenantry.guard_audit, %L::jsonb) r
                    $sql$, entry::text));
                RETURN true;
            EXCEPTION WHEN OTHERS THEN
                RAISE LOG 'tenantry guard audit (not stored: %): %', SQLERRM, entry::text;
                RETURN false;
            END
            $tenantry$;
            REVOKE ALL ON FUNCTION tenantry.guard_record(jsonb) FROM PUBLIC;
            """#
    }

    /// `guard_record` writing to the server log only (no dblink, or not a superuser).
    static let recordToServerLog = """
        CREATE OR REPLACE FUNCTION tenantry.guard_record(entry jsonb) RETURNS boolean LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tenantry$
        BEGIN
            RAISE LOG 'tenantry guard audit: %', entry::text;
            RETURN false;
        END
        $tenantry$;
        REVOKE ALL ON FUNCTION tenantry.guard_record(jsonb) FROM PUBLIC;
        """

    /// The trigger function: records the attempt, then refuses it (`check_violation`, like
    /// capture's own check, so callers see one kind of error whichever trigger refuses).
    static let triggerFunction = """
        CREATE OR REPLACE FUNCTION tenantry.guard_discriminator() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tenantry$
        DECLARE
            column_name text := TG_ARGV[0];
            old_row jsonb := to_jsonb(OLD);
            new_row jsonb := to_jsonb(NEW);
            row_key jsonb;
            stored boolean;
        BEGIN
            SELECT jsonb_object_agg(k, old_row -> k) INTO row_key FROM unnest(TG_ARGV[1:]) AS k;
            stored := tenantry.guard_record(jsonb_build_object(
                'attempted_at', clock_timestamp(),
                'table_name', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
                'column_name', column_name,
                'old_value', old_row ->> column_name,
                'new_value', new_row ->> column_name,
                'row_key', row_key,
                'operation', TG_OP,
                'login_role', session_user,
                'effective_role', current_setting('role'),
                'application_name', current_setting('application_name'),
                'client_addr', inet_client_addr(),
                'backend_pid', pg_backend_pid(),
                'transaction_id', pg_current_xact_id()::text));
            RAISE EXCEPTION USING ERRCODE = 'check_violation',
                MESSAGE = format('%s.%s cannot change (from %s to %s): a row belongs to one tenant',
                    TG_TABLE_NAME, column_name, old_row ->> column_name, new_row ->> column_name),
                DETAIL = CASE WHEN stored THEN 'the attempt is recorded in tenantry.guard_audit'
                              ELSE 'the attempt is recorded in the server log' END;
        END
        $tenantry$;
        """

    /// The guard trigger of one table.
    static func trigger(for table: MovePlan.Table, plan: MovePlan) throws -> String {
        let discriminator = try SQLIdentifier.quoted(plan.discriminator)
        let arguments = ([plan.discriminator] + table.unifiedPrimaryKey).map(CaptureSQL.literal).joined(separator: ", ")
        let name = plan.unifiedName(table)
        return """
            DROP TRIGGER IF EXISTS \(triggerName) ON \(name);
            CREATE TRIGGER \(triggerName) BEFORE UPDATE ON \(name) FOR EACH ROW
                WHEN (OLD.\(discriminator) IS DISTINCT FROM NEW.\(discriminator))
                EXECUTE FUNCTION tenantry.guard_discriminator(\(arguments));
            """
    }

    /// Row-level security on one table: `roles` see and write only the rows of the tenant named by
    /// `tenantry.tenant` (nothing when it is unset). The owner and superusers are not affected
    /// (RLS is enabled, not forced).
    static func policy(for table: MovePlan.Table, plan: MovePlan, roles: [String]) throws -> String {
        let name = plan.unifiedName(table)
        let discriminator = try SQLIdentifier.quoted(plan.discriminator)
        let to = try roles.map { try SQLIdentifier.quoted($0) }.joined(separator: ", ")
        let tenant = "CAST(nullif(current_setting('tenantry.tenant', true), '') AS \(plan.discriminatorType))"
        return """
            ALTER TABLE \(name) ENABLE ROW LEVEL SECURITY;
            DROP POLICY IF EXISTS \(policyName) ON \(name);
            CREATE POLICY \(policyName) ON \(name) AS PERMISSIVE FOR ALL TO \(to)
                USING (\(discriminator) = \(tenant)) WITH CHECK (\(discriminator) = \(tenant));
            """
    }

    /// Removes Tenantry's policy from one table and disables row-level security there.
    static func removePolicy(from table: MovePlan.Table, plan: MovePlan) -> String {
        let name = plan.unifiedName(table)
        return """
            DROP POLICY IF EXISTS \(policyName) ON \(name);
            ALTER TABLE \(name) DISABLE ROW LEVEL SECURITY;
            """
    }

    /// Removes the discriminator trigger from one table.
    static func removeTrigger(from table: MovePlan.Table, plan: MovePlan) -> String {
        "DROP TRIGGER IF EXISTS \(triggerName) ON \(plan.unifiedName(table));"
    }

    /// The guard's functions (the audit table stays: it is evidence).
    static let dropFunctions = """
        DROP FUNCTION IF EXISTS tenantry.guard_discriminator();
        DROP FUNCTION IF EXISTS tenantry.guard_record(jsonb);
        """
}
