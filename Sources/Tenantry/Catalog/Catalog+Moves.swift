import Foundation
import PostgresNIO
import TenantryCore

extension Catalog {
    /// A tenant's move state, or `nil` when it never started moving.
    public func move(_ tenant: TenantID) async throws -> MoveRecord? {
        let rows = try await client.query("""
            SELECT tenant_id, phase, snapshot, rows_copied, phase_changed_at, last_error
            FROM tenantry.moves WHERE tenant_id = \(tenant.rawValue)
            """, logger: logger)
        for try await (id, phase, snapshot, copied, changed, lastError) in rows.decode(
            (String, String, String?, Int64, Date, String?).self) {
            return MoveRecord(
                tenant: try TenantID(id), phase: MovePhase(phase) ?? .shared, snapshot: snapshot, rowsCopied: copied,
                phaseChangedAt: changed, lastError: lastError)
        }
        return nil
    }

    /// Moves a tenant to `phase`, refusing transitions ``MovePhase/canTransition(to:)`` does not
    /// allow. The check and the write happen in one statement, so concurrent callers cannot both win.
    public func setPhase(_ tenant: TenantID, to phase: MovePhase, lastError: String? = nil) async throws {
        let current = try await move(tenant)?.phase ?? .shared
        guard current == phase || current.canTransition(to: phase) else {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) is in phase \(current) and cannot go to \(phase)",
                tenant: tenant.rawValue)
        }
        let rows = try await client.query("""
            WITH upsert AS (
                INSERT INTO tenantry.moves (tenant_id, phase, last_error) VALUES (\(tenant.rawValue), \(phase.rawValue), \(lastError))
                ON CONFLICT (tenant_id) DO UPDATE SET phase = excluded.phase, last_error = excluded.last_error,
                    phase_changed_at = CASE WHEN tenantry.moves.phase = excluded.phase
                                            THEN tenantry.moves.phase_changed_at ELSE now() END,
                    updated_at = now()
                WHERE tenantry.moves.phase = \(current.rawValue)
                RETURNING 1)
            SELECT count(*)::int FROM upsert
            """, logger: logger)
        guard try await rows.decode(Int.self).first(where: { _ in true }) == 1 else {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) changed phase concurrently; retry", tenant: tenant.rawValue)
        }
    }
}

extension Catalog {
    /// The read policy.
    public func readPolicy() async throws -> ReadPolicy {
        let rows = try await client.query("""
            SELECT strategy, percentage, shop_ids, canary_ids, enable_fallback, verify_consistency,
                   log_inconsistencies, verify_sample_rate
            FROM tenantry.read_policy WHERE id = 1
            """, logger: logger)
        var policy = ReadPolicy()
        for try await (strategy, percentage, shops, canaries, fallback, verify, log, rate) in rows.decode(
            (String, Int, [String], [String], Bool, Bool, Bool, Double).self) {
            policy.strategy = ReadPolicy.Strategy(strategy) ?? .unified
            policy.percentage = percentage
            policy.shopIDs = shops.compactMap { try? TenantID($0) }
            policy.canaryIDs = canaries.compactMap { try? TenantID($0) }
            policy.enableFallback = fallback
            policy.verifyConsistency = verify
            policy.logInconsistencies = log
            policy.verifySampleRate = rate
        }
        return policy
    }

    /// Replaces the read policy (every router follows within a second, through NOTIFY).
    public func setReadPolicy(_ policy: ReadPolicy) async throws {
        try policy.validate()
        try await client.withConnection { connection in
            try await writePolicy(policy, on: connection)
        }
    }

    func writePolicy(_ policy: ReadPolicy, on connection: PostgresConnection) async throws {
        try await connection.query("""
            INSERT INTO tenantry.read_policy (id, strategy, percentage, shop_ids, canary_ids, enable_fallback,
                verify_consistency, log_inconsistencies, verify_sample_rate)
            VALUES (1, \(policy.strategy.rawValue), \(policy.percentage), \(policy.shopIDs.map(\.rawValue)),
                \(policy.canaryIDs.map(\.rawValue)), \(policy.enableFallback), \(policy.verifyConsistency),
                \(policy.logInconsistencies), \(policy.verifySampleRate))
            ON CONFLICT (id) DO UPDATE SET strategy = excluded.strategy, percentage = excluded.percentage,
                shop_ids = excluded.shop_ids, canary_ids = excluded.canary_ids, enable_fallback = excluded.enable_fallback,
                verify_consistency = excluded.verify_consistency, log_inconsistencies = excluded.log_inconsistencies,
                verify_sample_rate = excluded.verify_sample_rate, epoch = tenantry.read_policy.epoch + 1, updated_at = now()
            """, logger: logger)
    }
}

extension Catalog {
    /// Records a finished copy: its snapshot and the rows copied.
    public func recordCopy(_ tenant: TenantID, snapshot: String, rows: Int) async throws {
        try await client.query("""
            UPDATE tenantry.moves SET snapshot = \(snapshot), rows_copied = \(Int64(rows)), updated_at = now()
            WHERE tenant_id = \(tenant.rawValue)
            """, logger: logger)
    }
}

extension Catalog {
    /// The tenants whose move is in one of `phases`, ordered by id.
    public func tenants(inPhases phases: [MovePhase]) async throws -> [TenantID] {
        let rows = try await client.query("""
            SELECT tenant_id FROM tenantry.moves WHERE phase = ANY(\(phases.map(\.rawValue)))
            """, logger: logger)
        var ids: [TenantID] = []
        for try await id in rows.decode(String.self) { ids.append(try TenantID(id)) }
        return ids.sorted()
    }
}

extension Catalog {
    /// Every tenant's move phase in one query (tenants without a move are absent: `shared`).
    public func phases() async throws -> [TenantID: MovePhase] {
        let rows = try await client.query("SELECT tenant_id, phase FROM tenantry.moves", logger: logger)
        var phases: [TenantID: MovePhase] = [:]
        for try await (id, phase) in rows.decode((String, String).self) {
            phases[try TenantID(id)] = MovePhase(phase) ?? .shared
        }
        return phases
    }
}
