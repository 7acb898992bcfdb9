import Foundation
import PostgresNIO
import TenantryCore

/// The whole catalog as an operator's overview shows it, read in one query: every tenant with
/// its placement, phase and active server move, the registered servers, the read policy.
public struct FleetOverview: Sendable, Codable, Equatable {
    /// A tenant's row.
    public struct Tenant: Sendable, Codable, Equatable {
        /// The tenant id.
        public var id: String
        /// `active`, `provisioning`, `failed`, …
        public var status: String
        /// `shared` or `dedicated`.
        public var placement: String
        /// Its database's server (`default`: the unified database's server).
        public var server: String
        /// Its database, once provisioned.
        public var database: String?
        /// Its schema version, once provisioned.
        public var schemaVersion: Int?
        /// The move's phase (`shared` without a move).
        public var phase: String
        /// Rows the copy wrote.
        public var rowsCopied: Int64
        /// When the phase last changed (seconds since 1970), if it has a move.
        public var phaseChangedAt: Double?
        /// The move's or the tenant's last error.
        public var lastError: String?
        /// The active server move's phase, if any.
        public var serverMove: String?
        /// The server it moves to, during a server move.
        public var serverMoveTarget: String?
    }

    /// A registered server.
    public struct Server: Sendable, Codable, Equatable {
        /// Its name.
        public var name: String
        /// Its connection cap.
        public var maxConnections: Int
        /// Its byte budget, if any.
        public var maxBytes: Int64?
    }

    /// The read policy at a glance.
    public struct Policy: Sendable, Codable, Equatable {
        /// The strategy (`unified`, `tenant`, `percentage`, `shop-list`, `canary`).
        public var strategy: String
        /// The percentage (strategy `percentage`).
        public var percentage: Int
        /// The shops (strategy `shop-list`).
        public var shops: [String]
        /// The canary shops (strategy `canary`).
        public var canary: [String]
        /// Whether reads fall back to unified on an error.
        public var fallback: Bool
    }

    /// Every tenant, in id order (shorter ids first, so 2 comes before 10).
    public var tenants: [Tenant]
    /// The registered servers by name.
    public var servers: [Server]
    /// The read policy (`nil` before the catalog has one).
    public var readPolicy: Policy?
}

extension Catalog {
    /// The catalog for an overview in ONE query (an operator's console refreshes it every second,
    /// so it must cost the catalog one round trip, not one per tenant or per table).
    public func overview() async throws -> FleetOverview {
        let rows = try await client.query("""
            SELECT json_build_object(
              'tenants', coalesce((SELECT json_agg(json_build_object(
                  'id', t.id, 'status', t.status, 'placement', t.placement,
                  'server', coalesce(t.server_name, \(ServerDirectory.defaultServerName)), 'database', t.database_name,
                  'schemaVersion', t.schema_version, 'phase', coalesce(m.phase, 'shared'),
                  'rowsCopied', coalesce(m.rows_copied, 0), 'phaseChangedAt', extract(epoch FROM m.phase_changed_at)::float8,
                  'lastError', coalesce(m.last_error, t.last_error), 'serverMove', sm.phase, 'serverMoveTarget', sm.target_server)
                  ORDER BY length(t.id), t.id)
                FROM tenantry.tenants t
                LEFT JOIN tenantry.moves m ON m.tenant_id = t.id
                LEFT JOIN LATERAL (SELECT s.phase, s.target_server FROM tenantry.server_moves s
                                   WHERE s.tenant_id = t.id AND s.phase IN ('starting', 'moving', 'switched')
                                   ORDER BY s.id DESC LIMIT 1) sm ON true), '[]'::json),
              'servers', coalesce((SELECT json_agg(json_build_object(
                  'name', s.name, 'maxConnections', s.max_connections, 'maxBytes', s.max_bytes) ORDER BY s.name)
                FROM tenantry.servers s), '[]'::json),
              'readPolicy', (SELECT json_build_object(
                  'strategy', p.strategy, 'percentage', p.percentage, 'shops', p.shop_ids, 'canary', p.canary_ids,
                  'fallback', p.enable_fallback) FROM tenantry.read_policy p WHERE p.id = 1))::text
            """, logger: logger)
        for try await text in rows.decode(String.self) {
            return try JSONDecoder().decode(FleetOverview.self, from: Data(text.utf8))
        }
        throw TenantryError(code: .database, message: "the catalog overview returned no row")
    }
}
