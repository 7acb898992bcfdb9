import ArgumentParser
import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore

extension CopyBench {
    /// The limit: for each table (parents first), one `psql` exporting the tenant's rows with
    /// `\copy (SELECT …) TO STDOUT` piped into one `psql` loading them with `\copy … FROM PSTDIN`,
    /// the tables one after another in one `bash` (pipefail), as a shell script would do it.
    static func psqlPipe(_ bed: MoveBed, tenant: TenantID) async throws {
        let psql = ProcessRunner.quote(try PostgresBinaries.locate().path(of: "psql"))
        let environment = psqlEnvironment(bed)
        let source = "\(psql) -X -q -v ON_ERROR_STOP=1 -d \(ProcessRunner.quote(bed.unifiedURL.database))"
        let destination = "\(psql) -X -q -v ON_ERROR_STOP=1 -d \(ProcessRunner.quote(MoveBed.naming.databaseName(for: tenant)))"
        var script = ["set -e -o pipefail"]
        for table in bed.plan.tables {
            let columns = table.writableColumns.map(quote).joined(separator: ", ")
            let filter = "\(quote(bed.plan.discriminator)) = \(tenant.rawValue)"
            let export = "\\copy (SELECT \(columns) FROM \(bed.plan.unifiedName(table)) WHERE \(filter)) TO STDOUT"
            let load = "\\copy \(table.quoted) (\(columns)) FROM PSTDIN"
            script.append("\(source) -c \(ProcessRunner.quote(export)) | \(destination) -c \(ProcessRunner.quote(load))")
        }
        let output = try await ProcessRunner().run("/bin/bash", ["-c", script.joined(separator: "\n")], environment: environment)
        guard output.succeeded else {
            throw ValidationError("the psql pipe failed for tenant \(tenant): \(output.text.split(separator: "\n").first ?? "exit \(output.status)")")
        }
    }

    /// A tighter limit: per tenant, one `psql` exporting every table (`\copy (SELECT …) TO STDOUT`
    /// each, then a `\.` end-of-data line) piped into one `psql` loading them in order
    /// (`\copy … FROM PSTDIN` each reads up to its `\.`): the data path without a process start
    /// per table.
    static func psqlStream(_ bed: MoveBed, tenant: TenantID) async throws {
        let psql = ProcessRunner.quote(try PostgresBinaries.locate().path(of: "psql"))
        var exports: [String] = []
        var loads: [String] = []
        for table in bed.plan.tables {
            let columns = table.writableColumns.map(quote).joined(separator: ", ")
            let filter = "\(quote(bed.plan.discriminator)) = \(tenant.rawValue)"
            exports.append("-c \(ProcessRunner.quote("\\copy (SELECT \(columns) FROM \(bed.plan.unifiedName(table)) WHERE \(filter)) TO STDOUT"))")
            exports.append("-c \(ProcessRunner.quote("SELECT '\\.'"))")
            loads.append("-c \(ProcessRunner.quote("\\copy \(table.quoted) (\(columns)) FROM PSTDIN"))")
        }
        let script = "set -e -o pipefail\n"
            + "\(psql) -X -q -A -t -v ON_ERROR_STOP=1 -d \(ProcessRunner.quote(bed.unifiedURL.database)) \(exports.joined(separator: " "))"
            + " | \(psql) -X -q -v ON_ERROR_STOP=1 -d \(ProcessRunner.quote(MoveBed.naming.databaseName(for: tenant))) \(loads.joined(separator: " "))"
        let output = try await ProcessRunner().run("/bin/bash", ["-c", script], environment: psqlEnvironment(bed))
        guard output.succeeded else {
            throw ValidationError("the psql stream failed for tenant \(tenant): \(output.text.split(separator: "\n").first ?? "exit \(output.status)")")
        }
    }

    static func psqlEnvironment(_ bed: MoveBed) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["PGHOST"] = bed.admin.host
        environment["PGPORT"] = "\(bed.admin.port)"
        environment["PGUSER"] = bed.admin.user
        environment["PGPASSWORD"] = bed.admin.password ?? ""
        environment["PGSSLMODE"] = "disable"
        environment["PGCLIENTENCODING"] = "UTF8"
        return environment
    }

    /// What naive copy scripts do: for each table (parents first), SELECT the tenant's rows, then
    /// INSERT each one with its values as binds; one tenant-side transaction per tenant, with
    /// constraints deferred (as the copier does; self-references need it). Returns the rows.
    static func rowByRow(_ bed: MoveBed, tenant: TenantID) async throws -> Int {
        let logger = Bench.logger
        return try await Database.withConnection(bed.unifiedURL, logger: logger) { source in
            try await Database.withConnection(bed.tenantURL(tenant), logger: logger) { destination in
                try await Database.withTransaction(destination, logger: logger) { destination in
                    try await destination.query("SET CONSTRAINTS ALL DEFERRED", logger: logger)
                    var count = 0
                    for table in bed.plan.tables {
                        let columns = table.writableColumns
                        var select = PostgresQuery(unsafeSQL: """
                            SELECT \(columns.map { "\(quote($0))::text" }.joined(separator: ", "))
                            FROM \(bed.plan.unifiedName(table)) WHERE \(bed.plan.tenantFilter(parameter: 1))
                            """)
                        select.binds.append(tenant.rawValue)
                        let values = columns.enumerated().map { "CAST($\($0.offset + 1) AS \(table.type(of: $0.element)))" }
                        let insert = "INSERT INTO \(table.quoted) (\(columns.map(quote).joined(separator: ", ")))"
                            + (table.hasIdentityAlways ? " OVERRIDING SYSTEM VALUE" : "")
                            + " VALUES (\(values.joined(separator: ", ")))"
                        for try await row in try await source.query(select, logger: logger) {
                            var query = PostgresQuery(unsafeSQL: insert)
                            for cell in row {
                                if let value = try cell.decode(String?.self) { query.binds.append(value) } else { query.binds.appendNull() }
                            }
                            try await destination.query(query, logger: logger)
                            count += 1
                        }
                    }
                    return count
                }
            }
        }
    }
}

/// Per-tenant wall times of one contestant, and their least-squares fit `seconds = fixed + slope × rows`
/// (what a tenant costs whatever its size, and per row).
final class PerTenantTimes: @unchecked Sendable {
    private let lock = NSLock()
    private var samples: [(rows: Double, seconds: Double)] = []

    func record(rows: Int, seconds: Double) {
        lock.withLock { samples.append((Double(rows), seconds)) }
    }

    func time(rows: Int, _ body: () async throws -> Void) async throws {
        let start = ContinuousClock.now
        try await body()
        record(rows: rows, seconds: (ContinuousClock.now - start).totalSeconds)
    }

    /// `(fixed seconds, seconds per row)`; zeros with fewer than two distinct sizes.
    func fit() -> (Double, Double) {
        let points = lock.withLock { samples }
        let n = Double(points.count)
        guard n >= 2 else { return (0, 0) }
        let meanX = points.map(\.rows).reduce(0, +) / n
        let meanY = points.map(\.seconds).reduce(0, +) / n
        let sxx = points.map { ($0.rows - meanX) * ($0.rows - meanX) }.reduce(0, +)
        guard sxx > 0 else { return (0, 0) }
        let slope = points.map { ($0.rows - meanX) * ($0.seconds - meanY) }.reduce(0, +) / sxx
        return (meanY - slope * meanX, slope)
    }
}
