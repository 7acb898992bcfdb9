import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// A tenant's capture state in one of its databases, as a server move reads and changes it: who
/// consumes its stream (`forward_to`), its pause, what waits.
struct LinkState: Sendable {
    var capturing: Bool
    var moved: Bool
    var paused: Bool
    var pausedReason: String?
    var pauseKind: String?
    var forwardTo: String?
    /// Changes waiting in its stream.
    var waiting: Int
    /// Age of the oldest waiting change, in seconds.
    var oldestSeconds: Double?
    /// Dead letters of its stream.
    var deadLetters: Int

    static let select = """
        SELECT s.capturing, s.moved, s.sync_paused, s.paused_reason, s.pause_kind, to_jsonb(s) ->> 'forward_to',
               (SELECT count(*)::int FROM tenantry.changes c WHERE c.tenant_id = s.tenant_id),
               (SELECT extract(epoch FROM clock_timestamp() - min(c.captured_at))::float8 FROM tenantry.changes c
                WHERE c.tenant_id = s.tenant_id),
               (SELECT count(*)::int FROM tenantry.dead_letters d WHERE d.tenant_id = s.tenant_id)
        FROM tenantry.capture_state s WHERE s.tenant_id = 
        """

    /// The state in the open session `connection`; nil when the database has no state row for the tenant.
    static func read(on connection: PostgresConnection, tenant: TenantID, logger: Logger) async throws -> LinkState? {
        var query = PostgresQuery(unsafeSQL: select + "$1")
        query.binds.append(tenant.rawValue)
        let rows = try await connection.query(query, logger: logger)
        for try await row in rows.decode((Bool, Bool, Bool, String?, String?, String?, Int, Double?, Int).self) {
            return LinkState(
                capturing: row.0, moved: row.1, paused: row.2, pausedReason: row.3, pauseKind: row.4, forwardTo: row.5,
                waiting: row.6, oldestSeconds: row.7, deadLetters: row.8)
        }
        return nil
    }

    /// The state in `url`'s database (nil when it has none for the tenant, or no capture tables).
    static func read(_ url: PostgresURL, tenant: TenantID, logger: Logger) async throws -> LinkState? {
        try await Database.withConnection(url, logger: logger) { connection in
            let installed = try await connection.query("SELECT to_regclass('tenantry.capture_state') IS NOT NULL", logger: logger)
                .decode(Bool.self).first(where: { _ in true }) ?? false
            guard installed else { return nil }
            return try await read(on: connection, tenant: tenant, logger: logger)
        }
    }

    /// Runs `body` in a transaction on `url`'s database holding the tenant's relay lock there, so
    /// no relay batch of that database's stream runs meanwhile (one in flight finishes first).
    @discardableResult
    static func update<Result: Sendable>(
        _ url: PostgresURL, tenant: TenantID, logger: Logger, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await Database.withConnection(url, logger: logger) { connection in
            try await Database.withTransaction(connection, logger: logger) { connection in
                // The reads below must see the state after the lock was granted (READ COMMITTED
                // takes a snapshot per statement, whatever the login's default isolation).
                try await connection.query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", logger: logger)
                try await lockRelay(tenant, on: connection, logger: logger)
                return try await body(connection)
            }
        }
    }

    /// Takes the tenant's relay lock in the open transaction on `connection`.
    static func lockRelay(_ tenant: TenantID, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            "SELECT pg_advisory_xact_lock(\(AdvisoryLock.relayNamespace), \(AdvisoryLock.tenant(tenant)))", logger: logger)
    }
}
