import Logging
import NIOCore
import NIOConcurrencyHelpers
import PostgresNIO
import TenantryCore

/// Opening connections and turning PostgreSQL errors into ``TenantryError``s that are safe to print.
public enum Database {
    /// Runs `body` holding the tenant's session-level advisory lock on `connection` (the lock
    /// provisioning and password rotation serialise on), released afterwards whatever happens.
    static func holdingTenantLock<Result: Sendable>(
        _ tenant: TenantID, on connection: PostgresConnection, logger: Logger, _ body: () async throws -> Result
    ) async throws -> Result {
        try await connection.query(
            "SELECT pg_advisory_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.tenant(tenant)))", logger: logger)
        let result: Result
        do {
            result = try await body()
        } catch {
            _ = try? await connection.query(
                "SELECT pg_advisory_unlock(\(AdvisoryLock.namespace), \(AdvisoryLock.tenant(tenant)))", logger: logger)
            throw error
        }
        // If this fails the connection is closed (never reused), which releases the lock too.
        try await connection.query(
            "SELECT pg_advisory_unlock(\(AdvisoryLock.namespace), \(AdvisoryLock.tenant(tenant)))", logger: logger)
        return result
    }

    private static let connectionIDs = ManagedCounter()

    /// Opens one connection to `url`.
    public static func connect(_ url: PostgresURL, logger: Logger) async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(
                configuration: url.connectionConfiguration(), id: connectionIDs.next(), logger: logger)
        } catch {
            throw describe(error, connectingTo: url)
        }
    }

    /// Runs `body` with a connection to `url` and closes it afterwards.
    @discardableResult
    public static func withConnection<Result: Sendable>(
        _ url: PostgresURL, logger: Logger, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await closing(try await connect(url, logger: logger), body)
    }

    /// Runs `body` with `connection` and closes it afterwards, whether `body` returns or throws.
    @discardableResult
    public static func closing<Result: Sendable>(
        _ connection: PostgresConnection, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        do {
            let result = try await body(connection)
            try? await connection.close()
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Runs `body` inside a transaction (`BEGIN` … `COMMIT`, or `ROLLBACK` when it throws).
    public static func withTransaction<Result: Sendable>(
        _ connection: PostgresConnection, logger: Logger, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await connection.query("BEGIN", logger: logger)
        do {
            let result = try await body(connection)
            try await connection.query("COMMIT", logger: logger)
            return result
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// Runs every statement of a SQL script, in order, on `connection`.
    public static func execute(script: String, on connection: PostgresConnection, logger: Logger) async throws {
        for statement in try SQLScript.statements(script) {
            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
    }

    /// The SQLSTATE of a server error, if `error` is one.
    public static func sqlState(of error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// A one-line, printable description of a PostgreSQL error (server message, or the kind of
    /// connection failure). Never includes a password: Tenantry puts none in SQL text or URLs it prints.
    public static func message(of error: any Error) -> String {
        if let error = error as? TenantryError { return error.message }
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let info = error.serverInfo, let message = info[.message] {
            var text = message
            if let detail = info[.detail] { text += " (\(detail))" }
            if let state = info[.sqlState] { text += " [\(state)]" }
            return text
        }
        switch error.code {
        case .connectionError: return "connection failed: \(error.underlying.map { String(describing: $0) } ?? "unknown")"
        case .sslUnsupported: return "the server does not support TLS, and the URL's sslmode requires it (use sslmode=prefer or disable, or enable ssl on the server)"
        case .serverClosedConnection: return "the server closed the connection"
        case .clientClosedConnection: return "the connection was closed"
        case .queryCancelled: return "the query was cancelled"
        default: return "database error: \(error.code)"
        }
    }

    /// Wraps a connection failure into a ``TenantryError`` that names the server (without password).
    public static func describe(_ error: any Error, connectingTo url: PostgresURL) -> TenantryError {
        if let error = error as? TenantryError { return error }
        return TenantryError(
            code: .connectionFailed, message: "cannot connect to \(url): \(message(of: error))", underlying: error)
    }

    /// Wraps any error into a ``TenantryError`` with `context` in front.
    public static func wrap(_ error: any Error, _ context: String, tenant: String? = nil, table: String? = nil) -> TenantryError {
        if let error = error as? TenantryError { return error }
        return TenantryError(
            code: .database, message: "\(context): \(message(of: error))", tenant: tenant, table: table, underlying: error)
    }
}

/// A thread-safe counter for connection ids.
final class ManagedCounter: Sendable {
    private let value = NIOLockedValueBox(0)
    func next() -> Int { value.withLockedValue { $0 += 1; return $0 } }
}

extension PostgresConnection {
    /// `query(_:logger:)`, refusing at once on a connection that is already closed: PostgresNIO
    /// never completes a query sent on a connection the server has just closed (the write fails
    /// without failing the query), so the caller would wait forever.
    @discardableResult
    func queryIfOpen(_ query: PostgresQuery, logger: Logger) async throws -> PostgresRowSequence {
        guard !isClosed else {
            throw TenantryError(code: .connectionFailed, message: "the server closed the connection")
        }
        return try await self.query(query, logger: logger)
    }
}
