import Foundation
import Logging
import PostgresNIO
import TenantryCore
import Tracing

extension Verifier {
    /// A tenant's rows in every table of the plan, in the plan's order: per table the row count and
    /// the sum of the same 64-bit row hashes the chunk summaries add up (as decimal text).
    public struct Fingerprint: Sendable, Equatable {
        /// Per table, in the plan's order.
        public var tables: [Table]

        /// One table's count and hash sum.
        public struct Table: Sendable, Equatable {
            /// The table.
            public var table: String
            /// Its rows (of the tenant).
            public var rows: Int
            /// The sum of its rows' hashes.
            public var hash: String
        }
    }

    /// The fingerprint of `tenant`'s rows on `connection` — in ONE statement, one round trip for
    /// every table (`tenant`: the filter in a shared database; `nil`: a tenant database, whole
    /// tables). The connection must have been normalized (``prepareForFingerprints(_:)``).
    public func fingerprint(_ tenant: TenantID?, on connection: PostgresConnection) async throws -> Fingerprint {
        guard !plan.tables.isEmpty else { return Fingerprint(tables: []) }
        let parts = plan.tables.map { table in
            let from = tenant == nil ? table.quoted : "\(plan.unifiedName(table)) WHERE \(plan.tenantFilter(parameter: 1))"
            return "(SELECT count(*)::text || ' ' || coalesce(sum(('x' || substr(\(rowHash(table)), 1, 16))::bit(64)::bigint::numeric), 0)::text "
                + "FROM \(from))"
        }
        var query = PostgresQuery(unsafeSQL: "SELECT ARRAY[\(parts.joined(separator: ", "))]::text[]")
        if let tenant { query.binds.append(tenant.rawValue) }
        let values = try await connection.query(query, logger: logger).decode([String].self).first(where: { _ in true }) ?? []
        guard values.count == plan.tables.count else {
            throw TenantryError(code: .database, message: "verify: the fingerprint returned \(values.count) tables, not \(plan.tables.count)")
        }
        return Fingerprint(tables: zip(plan.tables, values).map { table, value in
            let fields = value.split(separator: " ", maxSplits: 1)
            return Fingerprint.Table(table: table.name, rows: Int(fields.first ?? "") ?? -1, hash: fields.count > 1 ? String(fields[1]) : "")
        })
    }

    /// Sets the session's output settings so both sides render each value as the same text (once
    /// per connection, before ``fingerprint(_:on:)``).
    public func prepareForFingerprints(_ connection: PostgresConnection) async throws {
        try await normalize(connection)
    }

    /// Compares `tenant` between `unified` (a connection prepared with ``prepareForFingerprints(_:)``,
    /// reused across tenants) and its tenant database with one fingerprint statement per side, both
    /// at once. Equal: a report without chunks is returned (the whole table is the one chunk: the
    /// same count and hash sum the chunked comparison adds up). Different: the full chunked
    /// ``verify(_:unifiedURL:tenantURL:settle:)`` (settling and re-checking, naming each row) decides.
    public func verifyByFingerprint(
        _ tenant: TenantID, unified: PostgresConnection, unifiedURL: PostgresURL, tenantURL: PostgresURL,
        settle: (@Sendable () async throws -> Void)? = nil
    ) async throws -> Report {
        try await TenantryTracing.phase("verify", tenant: tenant) { span in
            let report = try await compareFingerprints(tenant, unified: unified, unifiedURL: unifiedURL, tenantURL: tenantURL, settle: settle)
            span?.attributes["tenantry.verify.equal"] = report.equal
            return report
        }
    }

    private func compareFingerprints(
        _ tenant: TenantID, unified: PostgresConnection, unifiedURL: PostgresURL, tenantURL: PostgresURL,
        settle: (@Sendable () async throws -> Void)?
    ) async throws -> Report {
        let started = ContinuousClock.now
        let sides = try await Database.withConnection(tenantURL, logger: logger) { tenantDatabase in
            try await normalize(tenantDatabase)
            async let tenantSide = fingerprint(nil, on: tenantDatabase)
            let unifiedSide = try await fingerprint(tenant, on: unified)
            return (unifiedSide, try await tenantSide)
        }
        guard sides.0 == sides.1 else {
            return try await verify(tenant, unifiedURL: unifiedURL, tenantURL: tenantURL, settle: settle)
        }
        return Report(
            tenant: tenant, equal: true,
            tables: sides.0.tables.map {
                TableResult(table: $0.table, unifiedRows: $0.rows, tenantRows: $0.rows, chunks: 1, differences: [], differenceCount: 0)
            },
            seconds: (ContinuousClock.now - started).totalSeconds)
    }
}
