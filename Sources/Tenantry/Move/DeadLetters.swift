import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// The dead letter queue: changes the relay could not apply after its retries, each with its
/// error. A dead letter pauses its tenant's stream (later changes wait behind it, in order);
/// ``replay(tenants:)`` puts the letters back at the head of their streams and resumes them.
public struct DeadLetters: Sendable {
    /// One dead letter.
    public struct Letter: Sendable, Codable, Equatable {
        /// The change's id (its place in the tenant's stream).
        public var id: Int64
        /// The tenant.
        public var tenant: TenantID
        /// The table.
        public var table: String
        /// `insert`, `update` or `delete`.
        public var operation: String
        /// The row's key, as JSON.
        public var key: String
        /// How many times it was tried.
        public var attempts: Int
        /// The last error.
        public var error: String
        /// When it was captured.
        public var capturedAt: Date
        /// When it was given up on.
        public var deadAt: Date
    }

    /// The unified database.
    public var unifiedURL: PostgresURL
    /// The logger.
    public var logger: Logger

    /// Creates a handle.
    public init(unifiedURL: PostgresURL, logger: Logger) {
        self.unifiedURL = unifiedURL
        self.logger = logger
    }

    /// The dead letters, oldest first, of `tenants` (default: all).
    public func list(tenants: [TenantID]? = nil) async throws -> [Letter] {
        let ids = tenants?.map(\.rawValue)
        return try await Database.withConnection(unifiedURL, logger: logger) { connection in
            let rows = try await connection.query("""
                SELECT id, tenant_id, table_name, op::text, coalesce(old_key, row_data)::text, attempts, error, captured_at, dead_at
                FROM tenantry.dead_letters WHERE \(ids == nil) OR tenant_id = ANY(\(ids ?? []))
                ORDER BY id
                """, logger: logger)
            var letters: [Letter] = []
            for try await (id, tenant, table, op, row, attempts, error, captured, dead) in rows.decode(
                (Int64, String, String, String, String?, Int, String, Date, Date).self) {
                letters.append(Letter(
                    id: id, tenant: try TenantID(tenant), table: table,
                    operation: ["I": "insert", "U": "update", "D": "delete"][op] ?? op,
                    key: row ?? "{}", attempts: attempts, error: error, capturedAt: captured, deadAt: dead))
            }
            return letters
        }
    }

    /// Moves the dead letters of `tenants` (default: all) back into their streams, with their
    /// original ids (so they apply first) and fresh retries, and resumes those streams. Returns
    /// how many letters were replayed.
    @discardableResult
    public func replay(tenants: [TenantID]? = nil) async throws -> Int {
        let ids = tenants?.map(\.rawValue)
        return try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                let rows = try await connection.query("""
                    WITH moved AS (
                        DELETE FROM tenantry.dead_letters WHERE \(ids == nil) OR tenant_id = ANY(\(ids ?? []))
                        RETURNING id, tenant_id, table_name, op, old_key, row_data, xid, captured_at),
                    restored AS (
                        INSERT INTO tenantry.changes (id, tenant_id, table_name, op, old_key, row_data, xid, captured_at)
                        SELECT * FROM moved RETURNING tenant_id),
                    resumed AS (
                        UPDATE tenantry.capture_state SET sync_paused = false, paused_reason = NULL, updated_at = now()
                        WHERE tenant_id IN (SELECT tenant_id FROM restored) AND paused_reason LIKE 'dead letter%')
                    SELECT count(*)::int FROM restored
                    """, logger: logger)
                return try await rows.decode(Int.self).first(where: { _ in true }) ?? 0
            }
        }
    }
}
