import Foundation
import Logging
import PostgresNIO
import TenantryCore

extension FleetQuery {
    /// Runs the query through `router` (which must be running) and returns the rows.
    ///
    /// Each chosen tenant's SQL runs on a connection of the router's pools, where the tenant's data
    /// is authoritative (a dedicated tenant's database; the unified database for a shared one), at
    /// most ``concurrency`` at a time. `onBatch` gets each tenant's rows as soon as its query has
    /// finished, in completion order (not called when there is a ``combine`` SQL). The combine SQL
    /// runs on a connection of its own to `combineURL` (default: the router's unified database).
    ///
    /// Throws one ``TenantryError``: bad input (`invalidArgument`: empty SQL, a statement that
    /// writes, a statement that is not a query, bad combine SQL), an unknown tenant
    /// (`tenantNotFound`), or — without ``partial`` — tenants that failed (`database`, naming them).
    public func run(
        router: TenantRouter, combineURL: PostgresURL? = nil, logger: Logger,
        onBatch: (Batch) throws -> Void = { _ in }
    ) async throws -> Result {
        try validate()
        let start = ContinuousClock.now
        let records = try await chooseTenants(router.catalog)
        guard !records.isEmpty else {
            throw TenantryError(
                code: .tenantNotFound, message: "no tenants to query\(server.map { " on server \($0)" } ?? "")")
        }
        let sql = Self.trimmed(self.sql)
        if records.contains(where: { $0.placement != .dedicated }), Self.qualifiesPublicSchema(sql) {
            throw TenantryError(
                code: .invalidArgument,
                message: "the per-tenant SQL names the public schema (public.…): shared tenants are scoped by views that "
                    + "shadow unqualified table names only; write orders, not public.orders")
        }
        var columns: [Column]?
        var builtin: [Bool] = []
        var rows: [[String?]] = []
        var missing: [Missing] = []
        var answered = 0
        let tenantColumn = Column(name: Self.tenantColumn, type: "text")
        let typeNames = FleetSession.TypeNames()
        let shape = FleetSession.Shape()
        try await forEachConcurrently(records.map(\.id), concurrency: concurrency, { tenant in
            try await self.ask(tenant, sql: sql, router: router, typeNames: typeNames, shape: shape, logger: logger)
        }) { index, outcome, _ in
            let tenant = records[index].id
            let answer: FleetSession.Answer
            switch outcome {
            case .success(let value): answer = value
            case .failure(let error as FatalInput): throw error.error
            case .failure(let error):
                missing.append(Missing(tenant: tenant.rawValue, error: Database.message(of: error)))
                return
            }
            if let known = columns {
                guard known.map(\.name) == answer.columns.map(\.name) else {
                    missing.append(Missing(tenant: tenant.rawValue, error: "its columns (\(Self.names(answer.columns))) "
                        + "differ from the first tenant's (\(Self.names(known)))"))
                    return
                }
                // A type that differs between tenants is combined as text.
                for (position, column) in answer.columns.enumerated() where column.type != known[position].type {
                    columns?[position].type = "text"
                    builtin[position] = true
                }
            } else {
                columns = answer.columns
                builtin = answer.builtin
            }
            let tenantRows = answer.rows.map { [tenant.rawValue] + $0 }
            answered += 1
            rows.append(contentsOf: tenantRows)
            if combine == nil {
                try onBatch(Batch(tenant: tenant, columns: [tenantColumn] + answer.columns, rows: tenantRows))
            }
        }
        let position = Dictionary(records.enumerated().map { ($1.id.rawValue, $0) }, uniquingKeysWith: { first, _ in first })
        missing.sort { position[$0.tenant, default: 0] < position[$1.tenant, default: 0] }
        if !partial, !missing.isEmpty { throw Self.failed(missing, of: records.count) }
        var result = Result(
            columns: [tenantColumn] + (columns ?? []), rows: rows, tenants: records.count, answered: answered,
            missing: missing, combined: false, seconds: 0)
        if let combine {
            guard let columns else {
                throw TenantryError(code: .database, message: "no tenant answered: nothing to combine (\(Self.failed(missing, of: records.count).message))")
            }
            let combined = try await Self.combine(
                Self.trimmed(combine), columns: columns, builtin: builtin, rows: rows, timeout: timeout,
                url: combineURL ?? router.configuration.unifiedURL, logger: logger)
            result.columns = combined.columns
            result.rows = combined.rows
            result.combined = true
        }
        result.seconds = (ContinuousClock.now - start).totalSeconds
        return result
    }

    /// An error that ends the whole query (bad input), whichever tenant met it first.
    struct FatalInput: Error { var error: TenantryError }

    /// One tenant's answer: the SQL in a read-only, time-limited transaction on the side where its
    /// data is authoritative (``Route/writeSource``), through the router's pool. Once `shape`
    /// knows the column count, one statement reads it; a tenant whose count differs is read again
    /// with a describe of its own.
    func ask(
        _ tenant: TenantID, sql: String, router: TenantRouter, typeNames: FleetSession.TypeNames,
        shape: FleetSession.Shape = FleetSession.Shape(), logger: Logger
    ) async throws -> FleetSession.Answer {
        let route = try await router.route(for: tenant)
        let source = route.writeSource
        guard route.placement != .dedicated || source == .tenant else {
            // Its rows left the unified database: answering from there would be silently wrong.
            throw TenantryError(
                code: .database, message: "tenant \(tenant) is dedicated but has no active database", tenant: tenant.rawValue)
        }
        do {
            do {
                return try await session(router, route, source, logger) { connection in
                    try await FleetSession.read(connection, sql: sql, typeNames: typeNames, shape: shape, logger: logger)
                }
            } catch where shape.count != nil && (error is FleetSession.ShapeChanged || Database.sqlState(of: error) == "42P10") {
                // Another column count than the first tenants' (42P10: fewer than the aliases).
                return try await session(router, route, source, logger) { connection in
                    try await FleetSession.read(connection, sql: sql, typeNames: typeNames, logger: logger)
                }
            }
        } catch where Database.sqlState(of: error) == "57014" {
            throw TenantryError(
                code: .timeout, message: "timed out after \(Self.describe(timeout)) (statement_timeout)", tenant: tenant.rawValue)
        } catch where Database.sqlState(of: error) == "25006" {
            throw FatalInput(error: Self.writes(error))
        } catch where ["42601", "0A000"].contains(Database.sqlState(of: error) ?? "") {
            // Not readable as a subquery: run it as written (still read-only) for PostgreSQL's own reason.
            let reason: TenantryError
            do {
                _ = try await session(router, route, source, logger) { connection in
                    try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).collect().count
                }
                reason = TenantryError(
                    code: .invalidArgument,
                    message: "the per-tenant SQL must be one query (SELECT, WITH … SELECT, VALUES or TABLE) that can be read as a subquery")
            } catch where Database.sqlState(of: error) == "25006" {
                reason = Self.writes(error)
            } catch {
                reason = TenantryError(
                    code: .invalidArgument, message: "the per-tenant SQL is not valid: \(Database.message(of: error))", underlying: error)
            }
            throw FatalInput(error: reason)
        }
    }

    /// Runs `body` in a transaction of the router on `source`, made read-only and time-limited;
    /// on the unified database inside a savepoint with the tenant tables shadowed (rolled back after).
    private func session<T: Sendable>(
        _ router: TenantRouter, _ route: Route, _ source: Route.Source, _ logger: Logger,
        _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let (timeout, discriminator) = (self.timeout, self.discriminator)
        return try await router.run(on: source, route: route, retrySafe: true, transaction: true) { routed in
            let connection = routed.connection
            guard source == .unified else {
                try await FleetSession.restrict(connection, timeout: timeout, logger: logger)
                return try await body(connection)
            }
            try await connection.query("SAVEPOINT fleet_query", logger: logger)
            try await FleetSession.shadowTenantTables(connection, discriminator: discriminator, logger: logger)
            try await FleetSession.restrict(connection, timeout: timeout, logger: logger)
            let value = try await body(connection)
            try await connection.query("ROLLBACK TO SAVEPOINT fleet_query", logger: logger)
            return value
        }
    }

    static func writes(_ error: any Error) -> TenantryError {
        TenantryError(
            code: .invalidArgument,
            message: "the per-tenant SQL writes, and fleet queries only read: PostgreSQL refused it in the READ ONLY transaction "
                + "(\(Database.message(of: error)))", underlying: error)
    }

    /// The error for tenants that failed without `partial`: the first five named, with their reasons.
    static func failed(_ missing: [Missing], of total: Int) -> TenantryError {
        let named = missing.prefix(5).map { "tenant \($0.tenant): \($0.error)" }.joined(separator: "; ")
        let more = missing.count > 5 ? "; and \(missing.count - 5) more" : ""
        return TenantryError(
            code: .database,
            message: "\(missing.count) of \(total) tenant\(total == 1 ? "" : "s") failed: \(named)\(more) (with partial, the others' rows are returned)",
            tenant: missing.first?.tenant)
    }

    /// Whether the SQL names the schema `public` before a `.` (`public.orders`, `"public" . orders`,
    /// in any case; `republic.x` does not count): a guard for shared tenants, whose scoping views
    /// shadow unqualified names only. A string literal that contains `public.` counts too: refusing
    /// such a query is the safe side.
    static func qualifiesPublicSchema(_ sql: String) -> Bool {
        let text = Array(sql.lowercased().unicodeScalars)
        func isIdentifier(_ scalar: Unicode.Scalar) -> Bool {
            CharacterSet.alphanumerics.contains(scalar) || scalar == "_" || scalar == "$"
        }
        let word = Array("public".unicodeScalars)
        var index = 0
        while index + word.count <= text.count {
            defer { index += 1 }
            var end = index + word.count
            if text[index] == "\"" {
                guard index + word.count + 2 <= text.count, Array(text[(index + 1)...(index + word.count)]) == word,
                      text[index + word.count + 1] == "\"" else { continue }
                end = index + word.count + 2
            } else {
                guard Array(text[index..<end]) == word, index == 0 || !isIdentifier(text[index - 1]) else { continue }
            }
            var next = end
            while next < text.count, text[next].properties.isWhitespace { next += 1 }
            if next < text.count, text[next] == "." { return true }
        }
        return false
    }

    static func names(_ columns: [Column]) -> String { columns.map(\.name).joined(separator: ", ") }

    static func describe(_ duration: Duration) -> String {
        let seconds = duration.totalSeconds
        return seconds >= 1 && seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(duration.wholeMilliseconds) ms"
    }
}
