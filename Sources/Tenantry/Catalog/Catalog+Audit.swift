import Foundation
import PostgresNIO
import TenantryCore

extension Catalog {
    /// Appends an audit entry. `detail` must hold no secret; values are stored as JSON strings.
    public func audit(
        actor: String, action: String, tenant: TenantID? = nil, outcome: AuditEntry.Outcome, detail: [String: String] = [:]
    ) async throws {
        let json = String(decoding: try JSONEncoder().encode(detail), as: UTF8.self)
        try await client.query("""
            INSERT INTO tenantry.audit_log (actor, action, tenant_id, outcome, detail)
            VALUES (\(actor), \(action), \(tenant?.rawValue), \(outcome.rawValue), \(json)::jsonb)
            """, logger: logger)
    }

    /// The newest audit entries first, optionally of one tenant.
    public func auditLog(tenant: TenantID? = nil, limit: Int = 100) async throws -> [AuditEntry] {
        let rows = try await client.query("""
            SELECT id, at, actor, action, tenant_id, outcome, detail::text FROM tenantry.audit_log
            WHERE \(tenant?.rawValue)::text IS NULL OR tenant_id = \(tenant?.rawValue)
            ORDER BY id DESC LIMIT \(limit)
            """, logger: logger)
        var result: [AuditEntry] = []
        for try await (id, at, actor, action, tenant, outcome, detail) in rows.decode(
            (Int64, Date, String, String, String?, String, String).self) {
            result.append(AuditEntry(
                id: id, at: at, actor: actor, action: action, tenant: tenant,
                outcome: AuditEntry.Outcome(rawValue: outcome) ?? .failed, detail: detail))
        }
        return result
    }

    /// The catalog at a glance.
    public func summary() async throws -> CatalogSummary {
        try await requireCurrent()
        var summary = CatalogSummary(
            catalogVersion: try await version(), tenants: 0, byStatus: [:], byPlacement: [:], byPhase: [:],
            servers: try await servers().map(\.name), readPolicy: try await readPolicy())
        let rows = try await client.query("""
            SELECT t.status, t.placement, coalesce(m.phase, 'shared'), count(*)::int
            FROM tenantry.tenants t LEFT JOIN tenantry.moves m ON m.tenant_id = t.id
            GROUP BY 1, 2, 3
            """, logger: logger)
        for try await (status, placement, phase, count) in rows.decode((String, String, String, Int).self) {
            summary.tenants += count
            summary.byStatus[status, default: 0] += count
            summary.byPlacement[placement, default: 0] += count
            summary.byPhase[phase, default: 0] += count
        }
        return summary
    }
}

extension Catalog {
    /// Appends one audit entry per tenant in one statement (one entry without a tenant when
    /// `tenants` is empty). `detail` must hold no secret.
    public func audit(
        actor: String, action: String, tenants: [TenantID], outcome: AuditEntry.Outcome, detail: [String: String] = [:]
    ) async throws {
        guard !tenants.isEmpty else { return try await audit(actor: actor, action: action, outcome: outcome, detail: detail) }
        let json = String(decoding: try JSONEncoder().encode(detail), as: UTF8.self)
        try await client.query("""
            INSERT INTO tenantry.audit_log (actor, action, tenant_id, outcome, detail)
            SELECT \(actor), \(action), t, \(outcome.rawValue), \(json)::jsonb FROM unnest(\(tenants.map(\.rawValue))::text[]) AS t
            """, logger: logger)
    }
}
