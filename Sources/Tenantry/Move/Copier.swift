import Foundation
import Logging
import NIOCore
import PostgresNIO
import TenantryCore
import Tracing

/// Copies one tenant's rows from the unified database into its tenant database (step 2 of a move):
/// from the route's source endpoint (filtered to the tenant) to its target (``MoveRoute``).
///
/// Capture is turned on first (waiting for older transactions), then one REPEATABLE READ snapshot
/// of the unified database is streamed table by table, parents first, with COPY into the tenant
/// database: all in one tenant-side transaction with constraints deferred, so a killed copy leaves
/// nothing behind and a re-run starts clean. The snapshot is recorded for the relay, which then
/// applies every captured change the snapshot did not see.
public struct Copier: Sendable {
    /// Where a copy is, for progress reports.
    public struct Progress: Sendable {
        /// The tenant.
        public var tenant: TenantID
        /// The table being copied.
        public var table: String
        /// Tables finished.
        public var tablesDone: Int
        /// Tables in all.
        public var tablesTotal: Int
        /// Rows copied for this tenant so far.
        public var rows: Int
    }

    /// What one tenant's copy did.
    public struct Report: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// Rows copied (0 when skipped).
        public var rows: Int
        /// Rows per table.
        public var tables: [String: Int]
        /// Wall time.
        public var seconds: Double
        /// `true` when the tenant was already copied (phase `syncing` or later).
        public var skipped: Bool
    }

    let catalog: Catalog
    let servers: ServerDirectory
    let unifiedURL: PostgresURL
    let plan: MovePlan
    let capture: Capture
    let actor: String
    let logger: Logger

    /// Creates a copier. `unifiedURL` must be able to read every tenant table; `capture` must
    /// point at the same database.
    public init(catalog: Catalog, servers: ServerDirectory, unifiedURL: PostgresURL, plan: MovePlan, capture: Capture,
                actor: String, logger: Logger) {
        self.catalog = catalog
        self.servers = servers
        self.unifiedURL = unifiedURL
        self.plan = plan
        self.capture = capture
        self.actor = actor
        self.logger = logger
    }

    /// Copies `tenant`. A tenant already in `syncing` or later is skipped.
    public func copy(_ tenant: TenantID, progress: @Sendable (Progress) -> Void = { _ in }) async throws -> Report {
        try await TenantryTracing.phase("copy", tenant: tenant) { span in
            let report = try await copyTenant(tenant, progress: progress)
            span?.attributes[TenantryTracing.Key.rows] = report.rows
            span?.attributes["tenantry.copy.skipped"] = report.skipped
            return report
        }
    }

    private func copyTenant(_ tenant: TenantID, progress: @Sendable (Progress) -> Void) async throws -> Report {
        let record = try await catalog.requireTenant(tenant)
        guard record.status == .active, let database = record.databaseName else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) has no database (status \(record.status.rawValue)): run 'tenantry provision \(tenant)' first",
                tenant: tenant.rawValue)
        }
        let phase = try await catalog.move(tenant)?.phase ?? .shared
        if phase >= .syncing {
            return Report(tenant: tenant, rows: 0, tables: [:], seconds: 0, skipped: true)
        }
        if phase == .shared { try await catalog.setPhase(tenant, to: .provisioned) }
        try await catalog.setPhase(tenant, to: .copying)
        let started = ContinuousClock.now
        do {
            try await capture.enable(tenant)
            let route = MoveRoute.toDedicated(
                tenant, unified: unifiedURL, tenantDatabase: try servers.adminURL(server: record.serverName, database: database),
                plan: plan)
            let (snapshot, counts) = try await copyRows(route, progress: progress)
            try await Database.withConnection(unifiedURL, logger: logger) { connection in
                try await connection.query("""
                    UPDATE tenantry.capture_state SET snapshot = \(snapshot)::pg_snapshot, updated_at = now()
                    WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
            }
            let rows = counts.values.reduce(0, +)
            try await catalog.recordCopy(tenant, snapshot: snapshot, rows: rows)
            try await catalog.setPhase(tenant, to: .syncing)
            let seconds = (ContinuousClock.now - started).totalSeconds
            try? await catalog.audit(
                actor: actor, action: "migrate-data", tenant: tenant, outcome: .ok,
                detail: ["rows": "\(rows)", "seconds": String(format: "%.2f", seconds)])
            return Report(tenant: tenant, rows: rows, tables: counts, seconds: seconds, skipped: false)
        } catch {
            let message = Database.message(of: error)
            try? await catalog.setPhase(tenant, to: .copying, lastError: message)
            try? await catalog.audit(actor: actor, action: "migrate-data", tenant: tenant, outcome: .failed, detail: ["error": message])
            throw Database.wrap(error, "copying tenant \(tenant)", tenant: tenant.rawValue)
        }
    }

    /// Streams every table of the tenant from `route`'s source to its target in one snapshot;
    /// returns the snapshot and rows per table. The target must hold one tenant (COPY writes the
    /// tenant tables as they are; nothing adds a discriminator).
    /// With `consistentSource` (a tenant database copied to another server: the same schema, its
    /// rows already satisfy every constraint), the target skips per-row triggers and foreign-key
    /// checks (`session_replication_role = replica`), as `pg_restore` loads data before its constraints.
    func copyRows(
        _ route: MoveRoute, consistentSource: Bool = false, progress: @Sendable (Progress) -> Void
    ) async throws -> (String, [String: Int]) {
        let tenant = route.tenant
        guard !route.target.isShared, route.target.schema == nil else {
            throw TenantryError(
                code: .invalidArgument, message: "copying tenant \(tenant): the copy's target must be a database of its own",
                tenant: tenant.rawValue)
        }
        return try await Database.withConnection(route.source.url, logger: logger) { source in
            try await Database.withConnection(route.target.url, logger: logger) { destination in
                // Marks this session as a copy snapshot (read only): capture-enable waits of other
                // tenants need not wait for it. Released when the connection closes.
                try await source.query(
                    "SELECT pg_advisory_lock_shared(\(AdvisoryLock.copySnapshotNamespace), 0)", logger: logger)
                try await source.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
                do {
                    let snapshot = try await source.query("SELECT pg_current_snapshot()::text", logger: logger)
                        .decode(String.self).first(where: { _ in true }) ?? ""
                    let counts = try await Database.withTransaction(destination, logger: logger) { destination in
                        try await destination.query("SET CONSTRAINTS ALL DEFERRED", logger: logger)
                        try await destination.query("SET LOCAL tenantry.applying = 'on'", logger: logger)
                        if consistentSource {
                            try await destination.query("SET LOCAL session_replication_role = replica", logger: logger)
                        }
                        // A re-run after a killed copy starts from empty tables. TRUNCATE makes new
                        // files for every table and index, so it runs only when a table has rows.
                        let anyRows = plan.tables.map { "EXISTS (SELECT FROM \(route.target.name($0)))" }.joined(separator: " OR ")
                        if try await destination.query(PostgresQuery(unsafeSQL: "SELECT \(anyRows)"), logger: logger)
                            .decode(Bool.self).first(where: { _ in true }) ?? true {
                            try await destination.query(
                                PostgresQuery(unsafeSQL: "TRUNCATE \(plan.tables.map(route.target.name).joined(separator: ", "))"),
                                logger: logger)
                        }
                        var counts: [String: Int] = [:]
                        var total = 0
                        for (index, table) in plan.tables.enumerated() {
                            progress(Progress(tenant: tenant, table: table.name, tablesDone: index, tablesTotal: plan.tables.count, rows: total))
                            let count = try await copyTable(table, route: route, from: source, to: destination) { rows in
                                progress(Progress(tenant: tenant, table: table.name, tablesDone: index, tablesTotal: plan.tables.count, rows: total + rows))
                            }
                            counts[table.name] = count
                            total += count
                        }
                        try await SequenceSync(plan: plan, logger: logger).advance(tenantDatabase: destination, unified: source)
                        progress(Progress(tenant: tenant, table: "", tablesDone: plan.tables.count, tablesTotal: plan.tables.count, rows: total))
                        return counts
                    }
                    try await source.query("COMMIT", logger: logger)
                    return (snapshot, counts)
                } catch {
                    _ = try? await source.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        }
    }

    /// Copies one table of `route`'s tenant: a SELECT on the source (filtered when it is shared)
    /// streamed into COPY FROM on the target.
    private func copyTable(
        _ table: MovePlan.Table, route: MoveRoute, from source: PostgresConnection, to destination: PostgresConnection,
        rowsCopied: (Int) -> Void
    ) async throws -> Int {
        let tenant = route.tenant
        let columns = table.writableColumns
        let select = columns.map { "\(MovePlan.quote($0))::text" }.joined(separator: ", ")
        var query = PostgresQuery(unsafeSQL: "SELECT \(select) FROM \(route.source.name(table))")
        if let filter = route.source.filter {
            query.sql += " WHERE \(filter.condition(parameter: 1))"
            query.binds.append(filter.tenant.rawValue)
        }
        var count = 0
        do {
            try await destination.copyFrom(
                // copyFrom wraps the names in double quotes itself (without escaping them).
                table: Self.escapeQuotes(table.name), columns: columns.map(Self.escapeQuotes), logger: logger
            ) { writer in
                var encoder = CopyEncoder()
                let rows = try await source.query(query, logger: logger)
                for try await row in rows {
                    encoder.append(row)
                    count += 1
                    if encoder.readableBytes >= 1 << 18 {
                        try await writer.write(encoder.take())
                        if count % 50_000 < 1_000 { rowsCopied(count) }
                    }
                }
                if encoder.readableBytes > 0 { try await writer.write(encoder.take()) }
            }
        } catch {
            throw Database.wrap(error, "copying table \(table.name) of tenant \(tenant)", tenant: tenant.rawValue, table: table.name)
        }
        return count
    }
}

extension Copier {
    static func escapeQuotes(_ name: String) -> String { name.replacingOccurrences(of: "\"", with: "\"\"") }
}
