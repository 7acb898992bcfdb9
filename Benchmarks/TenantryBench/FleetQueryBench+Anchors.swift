import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// The anchors of the fleet-query benchmark and the one result all three must give.
extension FleetQueryBench {
    /// The per-tenant aggregate every contestant runs in every tenant database.
    static let perTenantSQL = "SELECT state, count(*) AS n, sum(price_cents)::bigint AS cents FROM repairs GROUP BY 1"
    /// How FleetQuery merges the per-tenant rows (over its `results` table).
    static let combineSQL = "SELECT state, sum(n)::bigint AS n, sum(cents)::bigint AS cents FROM results GROUP BY 1 ORDER BY 1"
    /// The fdw anchor's query: the same aggregate over the `UNION ALL` view.
    static let fdwSQL = "SELECT state, count(*) AS n, sum(price_cents)::bigint AS cents FROM all_repairs GROUP BY 1 ORDER BY 1"

    /// A combined result: one row per state, `[state, n, cents]`, sorted, every value as text.
    typealias Combined = [[String]]

    /// Sums per-tenant rows `(state, n, cents)` into the combined result.
    static func combine(_ rows: [(String, Int, Int)]) -> Combined {
        var totals: [String: (n: Int, cents: Int)] = [:]
        for (state, n, cents) in rows {
            let old = totals[state, default: (0, 0)]
            totals[state] = (old.n + n, old.cents + cents)
        }
        return totals.keys.sorted().map { [$0, String(totals[$0]!.n), String(totals[$0]!.cents)] }
    }

    /// The per-tenant aggregate on an open connection.
    static func aggregate(on connection: PostgresConnection) async throws -> [(String, Int, Int)] {
        var rows: [(String, Int, Int)] = []
        for try await row in try await connection.query(PostgresQuery(unsafeSQL: perTenantSQL), logger: Bench.logger)
            .decode((String, Int, Int).self) {
            rows.append(row)
        }
        return rows
    }

    /// Anchor "sequential loop" (stancl/tenancy's `runForEach`, django-tenants' loop over tenants):
    /// for each tenant in turn, connect to its database with its own login, run the aggregate,
    /// disconnect; the sum is accumulated in Swift.
    static func sequentialLoop(_ tenants: [PostgresURL]) async throws -> Combined {
        var rows: [(String, Int, Int)] = []
        for url in tenants {
            rows += try await Database.withConnection(url, logger: Bench.logger) { connection in
                try await aggregate(on: connection)
            }
        }
        return combine(rows)
    }

    /// The same loop over connections opened beforehand (a pool kept per tenant): its lower limit.
    static func sequentialLoop(pooled connections: [PostgresConnection]) async throws -> Combined {
        var rows: [(String, Int, Int)] = []
        for connection in connections { rows += try await aggregate(on: connection) }
        return combine(rows)
    }

    /// Anchor `postgres_fdw`: the aggregate over the `UNION ALL` view of the foreign tables, in a
    /// new session (its foreign connections are opened by the query, as for a reporting job), or
    /// on `session` (an open session whose foreign connections are cached from earlier queries).
    static func foreignAggregate(admin: PostgresURL, session: PostgresConnection? = nil) async throws -> Combined {
        let run: (PostgresConnection) async throws -> [(String, Int, Int)] = { connection in
            var rows: [(String, Int, Int)] = []
            for try await row in try await connection.query(PostgresQuery(unsafeSQL: fdwSQL), logger: Bench.logger)
                .decode((String, Int, Int).self) {
                rows.append(row)
            }
            return rows
        }
        let rows: [(String, Int, Int)]
        if let session {
            rows = try await run(session)
        } else {
            rows = try await Database.withConnection(admin.with(database: fdwDatabase), logger: Bench.logger, run)
        }
        return combine(rows)
    }

    /// Normalises a result cell to text: integers without a fraction or exponent.
    static func canonical(_ value: String) -> String {
        if let double = Double(value), double.rounded() == double, abs(double) < 9e15,
           Int(value) == nil, value.contains(".") || value.lowercased().contains("e") {
            return String(Int(double))
        }
        return value
    }
}

/// The median of `values` (the mean of the middle two for an even count).
func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
