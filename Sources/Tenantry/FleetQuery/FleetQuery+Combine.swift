import Logging
import NIOCore
import PostgresNIO
import TenantryCore

extension FleetQuery {
    /// Loads the tenants' rows into a temporary table `results` (`tenant_id text`, then each
    /// per-tenant column with its type when that type is a `pg_catalog` one and no pseudo-type, else
    /// `text`) with COPY,
    /// then runs `sql` over it in the same transaction, made `READ ONLY` and time-limited first.
    /// The table is dropped at the end of the transaction and the connection closed.
    static func combine(
        _ sql: String, columns: [Column], builtin: [Bool], rows: [[String?]], timeout: Duration, url: PostgresURL,
        logger: Logger
    ) async throws -> (columns: [Column], rows: [[String?]]) {
        let names = [tenantColumn] + columns.map(\.name)
        if let duplicate = Dictionary(grouping: names, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw TenantryError(
                code: .invalidArgument,
                message: "cannot combine: the results would have two columns named \(duplicate) (name them apart with AS)")
        }
        var definitions = ["\(try SQLIdentifier.quoted(tenantColumn)) text"]
        for (column, isBuiltin) in zip(columns, builtin) {
            definitions.append("\(try SQLIdentifier.quoted(column.name)) \(isBuiltin ? column.type : "text")")
        }
        let create = "CREATE TEMP TABLE results (\(definitions.joined(separator: ", "))) ON COMMIT DROP"
        do {
            return try await Database.withConnection(url, logger: logger) { connection in
                try await Database.withTransaction(connection, logger: logger) { connection in
                    try await connection.query(PostgresQuery(unsafeSQL: create), logger: logger)
                    // copyFrom wraps the names in double quotes itself (without escaping them).
                    try await connection.copyFrom(
                        table: "results", columns: names.map { $0.replacingOccurrences(of: "\"", with: "\"\"") }, logger: logger
                    ) { writer in
                        var buffer = ByteBufferAllocator().buffer(capacity: 1 << 16)
                        for row in rows {
                            appendCopyLine(row, to: &buffer)
                            if buffer.readableBytes >= 1 << 18 {
                                try await writer.write(buffer)
                                buffer.clear()
                            }
                        }
                        if buffer.readableBytes > 0 { try await writer.write(buffer) }
                    }
                    try await FleetSession.restrict(connection, timeout: timeout, logger: logger)
                    do {
                        let answer = try await FleetSession.read(connection, sql: sql, logger: logger)
                        return (answer.columns, answer.rows)
                    } catch where Database.sqlState(of: error) == "57014" {
                        throw TenantryError(code: .timeout, message: "the combine SQL timed out after \(describe(timeout))")
                    } catch let error as TenantryError {
                        throw error
                    } catch {
                        throw TenantryError(
                            code: .invalidArgument, message: "the combine SQL failed: \(Database.message(of: error))", underlying: error)
                    }
                }
            }
        } catch let error as TenantryError {
            throw error
        } catch {
            throw Database.wrap(error, "cannot load the tenants' rows for combining")
        }
    }

    /// One row as a COPY text-format line: tabs, newlines, carriage returns and backslashes
    /// escaped, `\N` for NULL.
    static func appendCopyLine(_ row: [String?], to buffer: inout ByteBuffer) {
        for (index, value) in row.enumerated() {
            if index > 0 { buffer.writeInteger(UInt8(ascii: "\t")) }
            guard let value else {
                buffer.writeStaticString("\\N")
                continue
            }
            for byte in value.utf8 {
                switch byte {
                case 0x5C: buffer.writeStaticString("\\\\")
                case 0x09: buffer.writeStaticString("\\t")
                case 0x0A: buffer.writeStaticString("\\n")
                case 0x0D: buffer.writeStaticString("\\r")
                default: buffer.writeInteger(byte)
                }
            }
        }
        buffer.writeInteger(UInt8(ascii: "\n"))
    }
}
