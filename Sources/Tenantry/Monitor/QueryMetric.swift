import Foundation
import PostgresNIO
import TenantryCore

/// What a statement does, decided by its main keyword (see ``classify(sql:)``).
public enum QueryKind: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// `SELECT`, `VALUES`, `TABLE`, and `WITH … SELECT`.
    case select
    /// `INSERT`, and `WITH … INSERT`.
    case insert
    /// `UPDATE`, and `WITH … UPDATE`.
    case update
    /// `DELETE`, and `WITH … DELETE`.
    case delete
    /// Everything else: DDL, `COPY`, `MERGE`, `BEGIN`, `SET`, `EXPLAIN`, empty text.
    case other

    /// The lowercase name used in metric labels and reports.
    public var description: String { rawValue }
}

/// Which side of a move served a query.
public enum QuerySource: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// The unified (shared) database, where every row carries the tenant key.
    case unified
    /// The tenant's own database.
    case tenant

    /// The lowercase name used in metric labels and reports.
    public var description: String { rawValue }
}

/// One executed query, as the router reports it to the ``PerformanceMonitor``.
///
/// `error` is shown in reports and logs, so it must never hold a secret or row data: build it with
/// ``errorSummary(_:)`` rather than from an error's full debug description.
public struct QueryMetric: Sendable, Codable, Hashable {
    /// The tenant the query ran for.
    public var tenant: String
    /// The main table, when known (see ``table(of:)``).
    public var table: String?
    /// What the statement does.
    public var kind: QueryKind
    /// Wall-clock time from sending the query to its last row.
    public var duration: Duration
    /// Whether the query succeeded.
    public var success: Bool
    /// A short description of the failure, safe to print; `nil` on success.
    public var error: String?
    /// The database that served it.
    public var source: QuerySource
    /// When the query finished.
    public var timestamp: Date

    /// The longest `error` kept; longer text is cut, so a huge message cannot bloat retention.
    public static let maxErrorLength = 200

    /// A metric with every field given.
    public init(
        tenant: String,
        table: String?,
        kind: QueryKind,
        duration: Duration,
        success: Bool = true,
        error: String? = nil,
        source: QuerySource,
        timestamp: Date = Date()
    ) {
        self.tenant = tenant
        self.table = table
        self.kind = kind
        self.duration = duration
        self.success = success
        self.error = error.map { String($0.prefix(Self.maxErrorLength)) }
        self.source = source
        self.timestamp = timestamp
    }

    /// A metric for `sql`: its kind from ``QueryKind/classify(sql:)`` and its table from
    /// ``table(of:)``.
    public init(
        tenant: String,
        sql: String,
        duration: Duration,
        success: Bool = true,
        error: String? = nil,
        source: QuerySource,
        timestamp: Date = Date()
    ) {
        self.init(
            tenant: tenant, table: Self.table(of: sql), kind: QueryKind.classify(sql: sql), duration: duration,
            success: success, error: error, source: source, timestamp: timestamp)
    }

    /// A description of `error` that is safe to keep and print: a ``TenantryError``'s message, a
    /// PostgreSQL error's SQLSTATE and code, or else only the error's type name (an arbitrary
    /// error's text may carry a URL with a password or row values).
    public static func errorSummary(_ error: any Error) -> String {
        switch error {
        case let error as TenantryError:
            return String(error.message.prefix(maxErrorLength))
        case let error as PSQLError:
            if let state = error.serverInfo?[.sqlState] {
                return "PostgreSQL error \(state) (\(error.code))"
            }
            return "PostgreSQL client error (\(error.code))"
        default:
            return String(describing: type(of: error))
        }
    }
}
