import Foundation
import PostgresNIO
import TenantryCore

/// One move of a tenant database from one server to another (`tenantry move …`).
///
/// The tenant's catalog placement (`tenants.server_name`) always names the database that takes
/// its writes: the source while the move is `moving`, the target once it is `switched`.
public struct ServerMoveRecord: Sendable, Equatable, Codable {
    /// Where a server move is.
    public enum Phase: String, Sendable, Codable, CaseIterable {
        /// The target is being provisioned and copied (a crash here is finished by `move start`
        /// again or undone by `move cancel`).
        case starting
        /// Copied; the relay keeps the target current; writes go to the source.
        case moving
        /// Writes go to the target; the relay keeps the source current (`move reverse` goes back).
        case switched
        /// The source database and role are dropped.
        case complete
        /// The target was dropped before a switch; the tenant never left the source.
        case cancelled

        /// Whether the move still holds two databases.
        public var isActive: Bool { self == .starting || self == .moving || self == .switched }
    }

    /// The move's id.
    public var id: Int64
    /// The tenant.
    public var tenant: TenantID
    /// The server the tenant leaves.
    public var sourceServer: String
    /// Its database there.
    public var sourceDatabase: String
    /// The server it moves to.
    public var targetServer: String
    /// Its database there.
    public var targetDatabase: String
    /// The phase.
    public var phase: Phase
    /// Rows the snapshot copy wrote.
    public var rowsCopied: Int64
    /// How long the copy took.
    public var copySeconds: Double?
    /// The write pause of the last switch or reverse, in milliseconds.
    public var lastPauseMilliseconds: Double?
    /// Switches and reverses so far.
    public var switches: Int
    /// Why it was started (a rebalance plan's reason, or `operator`).
    public var reason: String?
    /// The last error, when a step failed.
    public var lastError: String?
    /// When it started.
    public var startedAt: Date
    /// When the phase last changed.
    public var phaseChangedAt: Date

    /// The server whose database takes the tenant's writes now.
    public var liveServer: String { phase == .switched || phase == .complete ? targetServer : sourceServer }
    /// The database that takes the tenant's writes now.
    public var liveDatabase: String { phase == .switched || phase == .complete ? targetDatabase : sourceDatabase }
    /// The server of the other database (kept current by the relay while the move is active).
    public var followerServer: String { phase == .switched || phase == .complete ? sourceServer : targetServer }
    /// The other database.
    public var followerDatabase: String { phase == .switched || phase == .complete ? sourceDatabase : targetDatabase }
    /// How the live database's `capture_state.forward_to` names the follower.
    public var followerStreamName: String { Self.streamName(server: followerServer, database: followerDatabase) }

    /// A database as `capture_state.forward_to` names it: `server/database`.
    public static func streamName(server: String, database: String) -> String { "\(server)/\(database)" }
}

extension Catalog {
    static let serverMoveColumns = """
        id, tenant_id, source_server, source_database, target_server, target_database, phase, rows_copied, copy_seconds,
        last_pause_ms, switches, reason, last_error, started_at, phase_changed_at
        """

    private func serverMoves(where condition: PostgresQuery) async throws -> [ServerMoveRecord] {
        var query = PostgresQuery(unsafeSQL: "SELECT \(Self.serverMoveColumns) FROM tenantry.server_moves WHERE ")
        query.sql += condition.sql
        query.binds = condition.binds
        query.sql += " ORDER BY id"
        var result: [ServerMoveRecord] = []
        let rows = try await client.query(query, logger: logger)
        for try await row in rows.decode(
            (Int64, String, String, String, String, String, String, Int64, Double?, Double?, Int, String?, String?, Date, Date).self) {
            result.append(ServerMoveRecord(
                id: row.0, tenant: try TenantID(row.1), sourceServer: row.2, sourceDatabase: row.3, targetServer: row.4,
                targetDatabase: row.5, phase: ServerMoveRecord.Phase(rawValue: row.6) ?? .cancelled, rowsCopied: row.7,
                copySeconds: row.8, lastPauseMilliseconds: row.9, switches: row.10, reason: row.11, lastError: row.12,
                startedAt: row.13, phaseChangedAt: row.14))
        }
        return result
    }

    /// `tenant`'s active server move (starting, moving or switched), if any.
    public func activeServerMove(_ tenant: TenantID) async throws -> ServerMoveRecord? {
        try await serverMoves(where: "tenant_id = \(tenant.rawValue) AND phase IN ('starting', 'moving', 'switched')").first
    }

    /// Every active server move.
    public func activeServerMoves() async throws -> [ServerMoveRecord] {
        try await serverMoves(where: "phase IN ('starting', 'moving', 'switched')")
    }

    /// `tenant`'s latest server move, active or ended.
    public func latestServerMove(_ tenant: TenantID) async throws -> ServerMoveRecord? {
        try await serverMoves(where: "tenant_id = \(tenant.rawValue)").last
    }

    /// Server moves, newest last: every tenant's, or `tenant`'s.
    public func serverMoves(tenant: TenantID? = nil) async throws -> [ServerMoveRecord] {
        if let tenant { return try await serverMoves(where: "tenant_id = \(tenant.rawValue)") }
        return try await serverMoves(where: "true")
    }

    /// Records a new server move in phase `starting`; one clear error when the tenant already has
    /// an active one.
    public func beginServerMove(
        _ tenant: TenantID, sourceServer: String, sourceDatabase: String, targetServer: String, targetDatabase: String,
        reason: String?
    ) async throws -> ServerMoveRecord {
        do {
            try await client.query("""
                INSERT INTO tenantry.server_moves (tenant_id, source_server, source_database, target_server, target_database, phase, reason)
                VALUES (\(tenant.rawValue), \(sourceServer), \(sourceDatabase), \(targetServer), \(targetDatabase), 'starting', \(reason))
                """, logger: logger)
        } catch where Database.sqlState(of: error) == "23505" {
            throw TenantryError(
                code: .conflict, message: "tenant \(tenant) is already moving between servers (tenantry move status --tenant \(tenant))",
                tenant: tenant.rawValue)
        }
        guard let record = try await activeServerMove(tenant) else {
            throw TenantryError(code: .conflict, message: "the server move of tenant \(tenant) vanished", tenant: tenant.rawValue)
        }
        return record
    }

    /// Moves server move `id` from `from` to `to` (one statement: a concurrent change makes it
    /// fail with a conflict), with optional figures.
    public func setServerMovePhase(
        _ id: Int64, from: ServerMoveRecord.Phase, to phase: ServerMoveRecord.Phase, rowsCopied: Int64? = nil,
        copySeconds: Double? = nil, pauseMilliseconds: Double? = nil, lastError: String? = nil
    ) async throws {
        let switched: Int = (from == .moving && phase == .switched) || (from == .switched && phase == .moving) ? 1 : 0
        let ended = phase == .complete || phase == .cancelled
        let rows = try await client.query("""
            UPDATE tenantry.server_moves SET phase = \(phase.rawValue),
                rows_copied = coalesce(\(rowsCopied), rows_copied), copy_seconds = coalesce(\(copySeconds), copy_seconds),
                last_pause_ms = coalesce(\(pauseMilliseconds), last_pause_ms), switches = switches + \(switched),
                last_error = \(lastError), phase_changed_at = CASE WHEN phase = \(phase.rawValue) THEN phase_changed_at ELSE now() END,
                ended_at = CASE WHEN \(ended) THEN now() ELSE NULL END
            WHERE id = \(id) AND phase = \(from.rawValue)
            RETURNING 1
            """, logger: logger)
        var updated = 0
        for try await _ in rows { updated += 1 }
        guard updated == 1 else {
            throw TenantryError(code: .conflict, message: "server move \(id) is no longer \(from.rawValue) (changed concurrently); retry")
        }
    }

    /// Refuses `what` (rollback, retire-legacy, restore-legacy) for a tenant whose database is
    /// moving between servers: its streams run through two databases until the move ends.
    public func requireNoServerMove(_ tenants: [TenantID], before what: String) async throws {
        let moving = Set(try await activeServerMoves().map(\.tenant))
        if let tenant = tenants.first(where: moving.contains) {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) is moving between servers: complete or cancel that move before \(what) "
                    + "(tenantry move status --tenant \(tenant)); nothing changed", tenant: tenant.rawValue)
        }
    }

    /// Notes an error on server move `id` without changing its phase.
    public func noteServerMoveError(_ id: Int64, _ message: String?) async throws {
        try await client.query(
            "UPDATE tenantry.server_moves SET last_error = \(message) WHERE id = \(id)", logger: logger)
    }
}
