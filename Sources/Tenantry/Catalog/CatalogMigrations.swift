import Crypto
import Foundation

/// The versioned migrations of the catalog schema (`tenantry`). Append only: a released migration
/// never changes (its checksum is stored and compared).
enum CatalogMigrations {
    struct Migration: Sendable {
        var version: Int
        var name: String
        var sql: String
        var checksum: String {
            SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
        }
    }

    static let all: [Migration] = [
        Migration(version: 1, name: "control plane", sql: v1),
        Migration(version: 2, name: "route notifications for moves", sql: v2),
        Migration(version: 3, name: "pending passwords for rotation", sql: v3),
        Migration(version: 4, name: "server moves and byte budgets", sql: v4),
    ]

    static var latestVersion: Int { all.last?.version ?? 0 }

    static let v1 = """
    CREATE TABLE tenantry.servers (
        name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
        host text NOT NULL,
        port integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
        admin_user text NOT NULL,
        admin_password_sealed text,
        max_connections integer NOT NULL DEFAULT 50 CHECK (max_connections > 0),
        is_default boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE tenantry.tenants (
        id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_]{0,39}$'),
        status text NOT NULL DEFAULT 'active'
            CHECK (status IN ('provisioning', 'active', 'failed', 'deprovisioning', 'deprovisioned')),
        placement text NOT NULL DEFAULT 'shared' CHECK (placement IN ('shared', 'dedicated')),
        server_name text REFERENCES tenantry.servers (name),
        database_name text,
        role_name text,
        schema_version integer,
        epoch bigint NOT NULL DEFAULT 1,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE tenantry.credentials (
        tenant_id text PRIMARY KEY REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        username text NOT NULL,
        password_sealed text NOT NULL,
        key_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        rotated_at timestamptz,
        last_used_at timestamptz,
        active boolean NOT NULL DEFAULT true
    );
    CREATE TABLE tenantry.moves (
        tenant_id text PRIMARY KEY REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        phase text NOT NULL DEFAULT 'shared' CHECK (phase IN
            ('shared', 'provisioned', 'copying', 'syncing', 'reads_switched', 'cutover', 'dedicated', 'retired')),
        snapshot text,
        capture_started_at timestamptz,
        rows_copied bigint NOT NULL DEFAULT 0,
        started_at timestamptz NOT NULL DEFAULT now(),
        phase_changed_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        last_error text
    );
    CREATE TABLE tenantry.read_policy (
        id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
        strategy text NOT NULL DEFAULT 'unified'
            CHECK (strategy IN ('unified', 'tenant', 'percentage', 'shop-list', 'canary')),
        percentage integer NOT NULL DEFAULT 0 CHECK (percentage BETWEEN 0 AND 100),
        shop_ids text[] NOT NULL DEFAULT '{}',
        canary_ids text[] NOT NULL DEFAULT '{}',
        enable_fallback boolean NOT NULL DEFAULT true,
        verify_consistency boolean NOT NULL DEFAULT false,
        log_inconsistencies boolean NOT NULL DEFAULT true,
        verify_sample_rate double precision NOT NULL DEFAULT 0.01 CHECK (verify_sample_rate BETWEEN 0 AND 1),
        epoch bigint NOT NULL DEFAULT 1,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE tenantry.audit_log (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor text NOT NULL,
        action text NOT NULL,
        tenant_id text,
        outcome text NOT NULL CHECK (outcome IN ('ok', 'failed', 'refused')),
        detail jsonb NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_log_tenant_at ON tenantry.audit_log (tenant_id, at);
    CREATE FUNCTION tenantry.notify_route_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('tenantry_routes', TG_TABLE_NAME || ':' ||
            CASE WHEN TG_OP = 'DELETE' THEN OLD.id::text ELSE NEW.id::text END);
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenantry.tenants
        FOR EACH ROW EXECUTE FUNCTION tenantry.notify_route_change();
    CREATE TRIGGER read_policy_notify AFTER INSERT OR UPDATE OR DELETE ON tenantry.read_policy
        FOR EACH ROW EXECUTE FUNCTION tenantry.notify_route_change();
    """

    static let v2 = """
    CREATE FUNCTION tenantry.notify_move_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('tenantry_routes', 'moves:' ||
            CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END);
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER moves_notify AFTER INSERT OR UPDATE OR DELETE ON tenantry.moves
        FOR EACH ROW EXECUTE FUNCTION tenantry.notify_move_change();
    """

    /// A password rotation stores the new password here first, then changes the role, then
    /// promotes it: a crash or a failed catalog write in between never loses the password.
    static let v3 = """
    ALTER TABLE tenantry.credentials
        ADD COLUMN pending_password_sealed text,
        ADD COLUMN pending_since timestamptz;
    """

    /// Step 10: a tenant database moving between servers (one row per move, the active one
    /// unique per tenant), and a byte budget per server for placement and rebalancing.
    static let v4 = """
    ALTER TABLE tenantry.servers ADD COLUMN max_bytes bigint CHECK (max_bytes > 0);
    CREATE TABLE tenantry.server_moves (
        id bigserial PRIMARY KEY,
        tenant_id text NOT NULL REFERENCES tenantry.tenants (id) ON DELETE CASCADE,
        source_server text NOT NULL,
        source_database text NOT NULL,
        target_server text NOT NULL,
        target_database text NOT NULL,
        phase text NOT NULL CHECK (phase IN ('starting', 'moving', 'switched', 'complete', 'cancelled')),
        rows_copied bigint NOT NULL DEFAULT 0,
        copy_seconds double precision,
        last_pause_ms double precision,
        switches integer NOT NULL DEFAULT 0,
        reason text,
        last_error text,
        started_at timestamptz NOT NULL DEFAULT now(),
        phase_changed_at timestamptz NOT NULL DEFAULT now(),
        ended_at timestamptz
    );
    CREATE UNIQUE INDEX server_moves_active ON tenantry.server_moves (tenant_id)
        WHERE phase IN ('starting', 'moving', 'switched');
    CREATE TRIGGER server_moves_notify AFTER INSERT OR UPDATE OR DELETE ON tenantry.server_moves
        FOR EACH ROW EXECUTE FUNCTION tenantry.notify_move_change();
    """
}
