import Foundation
import PostgresNIO
import TenantryCore

/// The catalog writes of one tenant's copy (``Copier``), each one statement: a copy's fixed cost
/// per tenant is mostly sequential round trips.
extension Catalog {
    /// Starts a copy: moves `tenant` to phase `copying` (from `shared`, `provisioned` or
    /// `copying`, clearing the last error) when it has a database (status `active`), in one
    /// statement whose check and write cannot interleave with another caller's. Returns the phase
    /// it was in (a tenant in `syncing` or later is left as it is), or `nil` when the tenant has no
    /// database (nothing written; the caller reads the tenant's record to say why).
    func beginCopy(_ tenant: TenantID) async throws -> MovePhase? {
        let rows = try await client.query("""
            WITH cur AS (
                SELECT coalesce((SELECT phase FROM tenantry.moves WHERE tenant_id = \(tenant.rawValue)), 'shared') AS phase,
                       EXISTS (SELECT FROM tenantry.tenants WHERE id = \(tenant.rawValue)
                               AND status = \(TenantRecord.Status.active.rawValue) AND database_name IS NOT NULL) AS ready
            ), upsert AS (
                INSERT INTO tenantry.moves (tenant_id, phase, last_error)
                SELECT \(tenant.rawValue), \(MovePhase.copying.rawValue), NULL FROM cur
                WHERE ready AND phase = ANY(\([MovePhase.shared, .provisioned, .copying].map(\.rawValue)))
                ON CONFLICT (tenant_id) DO UPDATE SET phase = excluded.phase, last_error = NULL,
                    phase_changed_at = CASE WHEN tenantry.moves.phase = excluded.phase
                                            THEN tenantry.moves.phase_changed_at ELSE now() END,
                    updated_at = now()
                WHERE tenantry.moves.phase = (SELECT phase FROM cur)
                RETURNING 1)
            SELECT (SELECT phase FROM cur), (SELECT ready FROM cur), (SELECT count(*)::int FROM upsert)
            """, logger: logger)
        var result: (String, Bool, Int)?
        for try await row in rows.decode((String, Bool, Int).self) { result = row }
        guard let (name, ready, written) = result, ready else { return nil }
        let phase = MovePhase(name) ?? .shared
        if phase < .syncing, written != 1 {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) changed phase concurrently; retry", tenant: tenant.rawValue)
        }
        return phase
    }

    /// Finishes a copy in one statement: records its snapshot and rows, moves `tenant` from
    /// `copying` to `syncing` and appends the `migrate-data` audit entry (`detail` must hold no
    /// secret). Fails with `conflict` when the tenant is no longer in `copying`.
    func finishCopy(_ tenant: TenantID, snapshot: String, rows: Int, actor: String, detail: [String: String]) async throws {
        let json = String(decoding: try JSONEncoder().encode(detail), as: UTF8.self)
        let result = try await client.query("""
            WITH moved AS (
                UPDATE tenantry.moves SET snapshot = \(snapshot), rows_copied = \(Int64(rows)),
                    phase = \(MovePhase.syncing.rawValue), last_error = NULL, phase_changed_at = now(), updated_at = now()
                WHERE tenant_id = \(tenant.rawValue) AND phase = \(MovePhase.copying.rawValue)
                RETURNING tenant_id
            ), audited AS (
                INSERT INTO tenantry.audit_log (actor, action, tenant_id, outcome, detail)
                SELECT \(actor), 'migrate-data', tenant_id, \(AuditEntry.Outcome.ok.rawValue), \(json)::jsonb FROM moved
                RETURNING 1)
            SELECT (SELECT count(*)::int FROM moved), (SELECT count(*)::int FROM audited)
            """, logger: logger)
        var moved = 0
        for try await (count, _) in result.decode((Int, Int).self) { moved = count }
        guard moved == 1 else {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) left phase copying during its copy; retry", tenant: tenant.rawValue)
        }
    }
}
