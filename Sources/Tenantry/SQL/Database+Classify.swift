import PostgresNIO
import TenantryCore

extension Database {
    /// The HINT the capture guard raises with when it refuses a write for a tenant that has moved
    /// (SQLSTATE 25006): a fixed, machine-readable marker, so nobody matches message text.
    public static let tenantMovedHint = "tenantry:tenant-moved"

    /// Whether `error` means the connection or the server is the problem, not the statement: the
    /// one classifier the router, the pool and the relay share. A pool discards such a
    /// connection; the router retries a retry-safe body once; the relay retries the batch with
    /// backoff for as long as it takes (never a dead letter).
    ///
    /// True for ``TenantryError/Code/connectionFailed`` (and any ``TenantryError`` whose
    /// `underlying` error is one), PostgresNIO's connection-level errors, and the server errors
    /// of class 08 (connection exception), 57P (operator intervention: shutdown, crash, cannot
    /// connect now), 53300 (too many connections) and 3D000 (the database does not exist, as while
    /// it is being restored).
    public static func isConnectionFailure(_ error: any Error) -> Bool {
        if let error = error as? TenantryError {
            if error.code == .connectionFailed { return true }
            return error.underlying.map(isConnectionFailure) ?? false
        }
        guard let error = error as? PSQLError else { return false }
        if let state = error.serverInfo?[.sqlState] {
            return state.hasPrefix("08") || state.hasPrefix("57P") || state == "53300" || state == "3D000"
        }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .sslUnsupported:
            return true
        default:
            return false
        }
    }

    /// Whether `error` is the capture guard's refusal of a write for a tenant that has moved (its
    /// writes go to the other database now): a ``TenantryError/Code/tenantMoved``, or the guard's
    /// server error itself (SQLSTATE 25006 with the ``tenantMovedHint``), possibly wrapped.
    public static func isTenantMoved(_ error: any Error) -> Bool {
        if let error = error as? TenantryError {
            if error.code == .tenantMoved { return true }
            return error.underlying.map(isTenantMoved) ?? false
        }
        guard let info = (error as? PSQLError)?.serverInfo else { return false }
        return info[.sqlState] == "25006" && info[.hint] == tenantMovedHint
    }

    /// Whether `error` (or the error it wraps) is an integrity-constraint violation the server
    /// reported (SQLSTATE class 23): the transaction failed and rolled back, its outcome known.
    public static func isIntegrityViolation(_ error: any Error) -> Bool {
        if let error = error as? TenantryError { return error.underlying.map(isIntegrityViolation) ?? false }
        return sqlState(of: error)?.hasPrefix("23") == true
    }
}
