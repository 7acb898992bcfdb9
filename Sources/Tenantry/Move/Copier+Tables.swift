import Logging
import NIOCore
import PostgresNIO
import TenantryCore

/// The table-by-table part of a copy: the reader (COPY TO, or SELECT lines) and the writer (COPY
/// FROM) joined by a bounded pipe.
extension Copier {
    /// Copies every table, parents first: one task reads the tables from the source, one after
    /// another, and sends their COPY text into a bounded pipe; this task runs one
    /// `COPY … FROM STDIN` per table on the target from it. The reader thus starts on the next
    /// table while the target is still working through the end of the previous one, and after the
    /// last table reads the source's sequences (returned with the rows per table).
    func copyTables(
        _ route: MoveRoute, from source: PostgresConnection, reader: CopyOutSession?, snapshot: String,
        to destination: PostgresConnection,
        progress: @Sendable (Progress) -> Void
    ) async throws -> ([String: Int], [SequenceSync.UnifiedSequence]) {
        let pipe = CopyPipe()
        let tables = plan.tables
        let sequences = SequenceSync(plan: plan, logger: logger)
        return try await withThrowingTaskGroup(of: [SequenceSync.UnifiedSequence].self) { group in
            group.addTask {
                do {
                    try await self.readTables(tables, route: route, from: source, reader: reader, snapshot: snapshot, into: pipe)
                } catch {
                    pipe.close(error)
                    throw error
                }
                // The source's sequences, read while the target works through the last COPY.
                return try await sequences.unifiedNextValues(source)
            }
            var counts: [String: Int] = [:]
            var total = 0
            do {
                for (index, table) in tables.enumerated() {
                    let done = total
                    progress(Progress(tenant: route.tenant, table: table.name, tablesDone: index, tablesTotal: tables.count, rows: done))
                    let count = try await writeTable(table, route: route, to: destination, from: pipe) { rows in
                        progress(Progress(tenant: route.tenant, table: table.name, tablesDone: index, tablesTotal: tables.count, rows: done + rows))
                    }
                    counts[table.name] = count
                    total += count
                }
            } catch {
                pipe.close(error)
                throw error
            }
            var unifiedNext: [SequenceSync.UnifiedSequence] = []
            for try await values in group { unifiedNext = values }
            return (counts, unifiedNext)
        }
    }

    /// Reads the tables of `route`'s tenant into `pipe`, in order: with `COPY … TO STDOUT` on
    /// `reader` in `snapshot` (exported by the `source` session's transaction) — the server writes
    /// COPY text in C, as for `psql` — or, without `reader` or when it fails before anything was
    /// sent, with SELECT on `source`. Like `source`, `reader` marks itself as a copy snapshot.
    func readTables(
        _ tables: [MovePlan.Table], route: MoveRoute, from source: PostgresConnection, reader: CopyOutSession?, snapshot: String,
        into pipe: CopyPipe
    ) async throws {
        if let session = reader, !snapshot.isEmpty {
            var sent = false
            var current = tables.first?.name ?? ""
            do {
                try await session.beginCopySnapshot(snapshot)
                for table in tables {
                    current = table.name
                    let rows = try await session.copyOut(Self.copyOutStatement(table, from: route.source)) { chunk, rows in
                        sent = true
                        try await pipe.send(.data(chunk, rows: rows))
                    }
                    sent = true
                    try await pipe.send(.endOfTable(rows: rows))
                }
                try await session.execute("COMMIT")
                return
            } catch where !sent {
                logger.notice("copy: reading tenant \(route.tenant) with SELECT (no COPY TO session: \(error))")
            } catch {
                throw Database.wrap(
                    error, "reading table \(current) of tenant \(route.tenant)", tenant: route.tenant.rawValue, table: current)
            }
        }
        for table in tables { try await readTable(table, route: route, from: source, into: pipe) }
    }

    /// `COPY (SELECT writable columns FROM table WHERE the tenant's rows) TO STDOUT` (the tenant id
    /// a literal: the simple-query protocol has no binds), or `COPY table (columns) TO STDOUT`.
    static func copyOutStatement(_ table: MovePlan.Table, from source: MoveEndpoint) -> String {
        let columns = table.writableColumns.map(MovePlan.quote).joined(separator: ", ")
        guard let filter = source.filter else { return "COPY \(source.name(table)) (\(columns)) TO STDOUT" }
        return "COPY (SELECT \(columns) FROM \(source.name(table)) WHERE \(filter.quotedColumn) = "
            + "CAST(\(CaptureSQL.literal(filter.tenant.rawValue)) AS \(filter.type))) TO STDOUT"
    }

    /// Reads one table of `route`'s tenant (filtered when the source is shared) as COPY text lines
    /// the source server writes (``CopyEncoder/lineExpression(_:)``: one column per row, so the
    /// copier only appends bytes) and sends them into `pipe`, then the table's end with its row count.
    func readTable(
        _ table: MovePlan.Table, route: MoveRoute, from source: PostgresConnection, into pipe: CopyPipe
    ) async throws {
        let tenant = route.tenant
        var query = PostgresQuery(unsafeSQL: "SELECT \(CopyEncoder.lineExpression(table)) FROM \(route.source.name(table))")
        if let filter = route.source.filter {
            query.sql += " WHERE \(filter.condition(parameter: 1))"
            query.binds.append(filter.tenant.rawValue)
        }
        var encoder = CopyEncoder()
        var count = 0
        do {
            let rows = try await source.query(query, logger: logger)
            for try await row in rows {
                try encoder.appendLine(row)
                count += 1
                if encoder.readableBytes >= 1 << 18 { try await pipe.send(.data(encoder.take(), rows: count)) }
            }
        } catch {
            throw Database.wrap(error, "reading table \(table.name) of tenant \(tenant)", tenant: tenant.rawValue, table: table.name)
        }
        if encoder.readableBytes > 0 { try await pipe.send(.data(encoder.take(), rows: count)) }
        try await pipe.send(.endOfTable(rows: count))
    }

    /// Runs `COPY … FROM STDIN` of one table on the target with what `pipe` holds up to the
    /// table's end; returns its rows.
    func writeTable(
        _ table: MovePlan.Table, route: MoveRoute, to destination: PostgresConnection, from pipe: CopyPipe,
        rowsCopied: (Int) -> Void
    ) async throws -> Int {
        let tenant = route.tenant
        var count = 0
        do {
            try await destination.copyFrom(
                // copyFrom wraps the names in double quotes itself (without escaping them).
                table: Self.escapeQuotes(table.name), columns: table.writableColumns.map(Self.escapeQuotes), logger: logger
            ) { writer in
                while true {
                    switch try await pipe.receive() {
                    case .data(let buffer, let rows):
                        try await writer.write(buffer)
                        if rows / 50_000 != count / 50_000 { rowsCopied(rows) }
                        count = rows
                    case .endOfTable(let rows):
                        count = rows
                        return
                    }
                }
            }
        } catch {
            throw Database.wrap(error, "copying table \(table.name) of tenant \(tenant)", tenant: tenant.rawValue, table: table.name)
        }
        return count
    }
}

extension CopyOutSession {
    /// Marks the session as a copy snapshot (read only: capture-enable waits of other tenants need
    /// not wait for it; released when it closes) and starts a READ ONLY transaction in `snapshot`
    /// (exported by another transaction, which must still be open).
    func beginCopySnapshot(_ snapshot: String) async throws {
        try await execute(Copier.markCopySnapshot)
        try await execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT \(CaptureSQL.literal(snapshot))")
    }
}

extension Copier {
    static func escapeQuotes(_ name: String) -> String { name.replacingOccurrences(of: "\"", with: "\"\"") }
}
