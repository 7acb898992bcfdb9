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
        /// `forward` (unified → tenant database, before cutover) or `reverse` (tenant database →
        /// unified, after cutover: the letter lives in the tenant database, copied here).
        public var direction: String = "forward"
    }

    /// The unified database.
    public var unifiedURL: PostgresURL
    /// The admin URL of a tenant's database (where reverse-sync letters live); `nil`: reverse
    /// letters are listed but cannot be replayed.
    public var tenantURL: (@Sendable (TenantID) async throws -> PostgresURL)?
    /// The logger.
    public var logger: Logger

    /// Creates a handle.
    public init(
        unifiedURL: PostgresURL, tenantURL: (@Sendable (TenantID) async throws -> PostgresURL)? = nil, logger: Logger
    ) {
        self.unifiedURL = unifiedURL
        self.tenantURL = tenantURL
        self.logger = logger
    }

    /// The dead letters, oldest first, of `tenants` (default: all).
    public func list(tenants: [TenantID]? = nil) async throws -> [Letter] {
        let ids = tenants?.map(\.rawValue)
        return try await Database.withConnection(unifiedURL, logger: logger) { connection in
            let rows = try await connection.query("""
                SELECT id, tenant_id, table_name, op::text, coalesce(old_key, row_data)::text, attempts, error, captured_at, dead_at,
                       direction
                FROM tenantry.dead_letters WHERE \(ids == nil) OR tenant_id = ANY(\(ids ?? []))
                ORDER BY dead_at, id
                """, logger: logger)
            var letters: [Letter] = []
            for try await (id, tenant, table, op, row, attempts, error, captured, dead, direction) in rows.decode(
                (Int64, String, String, String, String?, Int, String, Date, Date, String).self) {
                letters.append(Letter(
                    id: id, tenant: try TenantID(tenant), table: table,
                    operation: ["I": "insert", "U": "update", "D": "delete"][op] ?? op,
                    key: row ?? "{}", attempts: attempts, error: error, capturedAt: captured, deadAt: dead, direction: direction))
            }
            return letters
        }
    }

    /// Moves the dead letters of `tenants` (default: all) back into their streams, with their
    /// original ids (so they apply first) and fresh retries, and resumes those streams. Returns
    /// how many letters were replayed.
    @discardableResult
    public func replay(tenants: [TenantID]? = nil) async throws -> Int {
        // Reverse letters first: each tenant's are replayed in its database, then their copies here
        // are dropped and the pause lifted (a crash in between leaves copies that a new replay clears).
        let reverse = Set(try await list(tenants: tenants).filter { $0.direction == "reverse" }.map(\.tenant))
        var replayed = 0
        for tenant in reverse.sorted(by: { $0.rawValue < $1.rawValue }) {
            guard let tenantURL else {
                throw TenantryError(
                    code: .conflict, message: "tenant \(tenant) has reverse-sync dead letters: replay them with its database reachable",
                    tenant: tenant.rawValue)
            }
            let url = try await tenantURL(tenant)
            replayed += try await Database.withConnection(url, logger: logger) { connection in
                try await Self.replay(tenants: [tenant.rawValue], direction: nil, on: connection, logger: logger)
            }
            try await Database.withConnection(unifiedURL, logger: logger) { connection in
                try await connection.query("""
                    WITH gone AS (DELETE FROM tenantry.dead_letters WHERE tenant_id = \(tenant.rawValue) AND direction = 'reverse')
                    UPDATE tenantry.capture_state SET sync_paused = false, paused_reason = NULL, pause_kind = NULL, updated_at = now()
                    WHERE tenant_id = \(tenant.rawValue) AND pause_kind = \(PauseKind.reverseDeadLetter.rawValue)
                    """, logger: logger)
            }
        }
        let ids = tenants?.map(\.rawValue)
        return replayed + (try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await Self.replay(tenants: ids, direction: "forward", on: connection, logger: logger)
        })
    }

    /// Drops `tenant`'s dead letters (those with `ids`, or all) without applying them, and resumes
    /// its streams: for a change that must never apply, such as one that would overwrite another
    /// tenant's row (fix the row where it lives first, so its own change flows instead). Returns
    /// how many letters were dropped.
    @discardableResult
    public func discard(tenant: TenantID, ids: [Int64]? = nil) async throws -> Int {
        let letters = try await list(tenants: [tenant]).filter { ids == nil || ids!.contains($0.id) }
        let reverse = letters.filter { $0.direction == "reverse" }.map(\.id)
        if !reverse.isEmpty {
            guard let tenantURL else {
                throw TenantryError(
                    code: .conflict, message: "tenant \(tenant) has reverse-sync dead letters: discard them with its database reachable",
                    tenant: tenant.rawValue)
            }
            try await Database.withConnection(try await tenantURL(tenant), logger: logger) { connection in
                try await Self.drop(tenant, ids: reverse, direction: nil, on: connection, logger: logger)
            }
            try await Database.withConnection(unifiedURL, logger: logger) { connection in
                try await Self.drop(tenant, ids: reverse, direction: "reverse", on: connection, logger: logger)
            }
        }
        let forward = letters.filter { $0.direction != "reverse" }.map(\.id)
        if !forward.isEmpty {
            try await Database.withConnection(unifiedURL, logger: logger) { connection in
                try await Self.drop(tenant, ids: forward, direction: "forward", on: connection, logger: logger)
            }
        }
        return letters.count
    }

    /// Deletes letters and lifts the dead-letter pause of `tenant` when none is left.
    private static func drop(
        _ tenant: TenantID, ids: [Int64], direction: String?, on connection: PostgresConnection, logger: Logger
    ) async throws {
        try await Database.withTransaction(connection, logger: logger) { connection in
            try await connection.query("""
                DELETE FROM tenantry.dead_letters WHERE tenant_id = \(tenant.rawValue) AND id = ANY(\(ids))
                    AND (\(direction == nil) OR direction = \(direction ?? ""))
                """, logger: logger)
            try await connection.query("""
                UPDATE tenantry.capture_state SET sync_paused = false, paused_reason = NULL, pause_kind = NULL, updated_at = now()
                WHERE tenant_id = \(tenant.rawValue) AND pause_kind = ANY(\(PauseKind.deadLetters))
                  AND NOT EXISTS (SELECT 1 FROM tenantry.dead_letters WHERE tenant_id = \(tenant.rawValue))
                """, logger: logger)
        }
    }

    /// Moves the letters of `tenants` (all when nil) in `direction` (all when nil) back into the
    /// stream of the database `connection` is on, and resumes those tenants there.
    private static func replay(tenants ids: [String]?, direction: String?, on connection: PostgresConnection, logger: Logger) async throws -> Int {
        try await Database.withTransaction(connection, logger: logger) { connection in
            let rows = try await connection.query("""
                WITH moved AS (
                    DELETE FROM tenantry.dead_letters WHERE (\(ids == nil) OR tenant_id = ANY(\(ids ?? [])))
                        AND (\(direction == nil) OR direction = \(direction ?? ""))
                    RETURNING id, tenant_id, table_name, op, old_key, row_data, xid, captured_at),
                restored AS (
                    INSERT INTO tenantry.changes (id, tenant_id, table_name, op, old_key, row_data, xid, captured_at)
                    SELECT * FROM moved RETURNING tenant_id),
                resumed AS (
                    UPDATE tenantry.capture_state SET sync_paused = false, paused_reason = NULL, pause_kind = NULL, updated_at = now()
                    WHERE tenant_id IN (SELECT tenant_id FROM restored) AND pause_kind = ANY(\(PauseKind.deadLetters)))
                SELECT count(*)::int FROM restored
                """, logger: logger)
            return try await rows.decode(Int.self).first(where: { _ in true }) ?? 0
        }
    }
}
