import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
import TenantryCore

/// Turns rows whose columns were selected as `::text` into COPY text-format lines, byte by byte
/// (no String round trip): the text a value's output function printed is exactly what COPY FROM
/// reads back, once tabs, newlines, carriage returns and backslashes are escaped.
struct CopyEncoder {
    private(set) var buffer: ByteBuffer

    init(capacity: Int = 1 << 16) {
        buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    /// Appends one row.
    mutating func append(_ row: PostgresRow) {
        var first = true
        for cell in row {
            if !first { buffer.writeInteger(UInt8(ascii: "\t")) }
            first = false
            guard var bytes = cell.bytes else {
                buffer.writeStaticString("\\N")
                continue
            }
            let view = bytes.readableBytesView
            if !view.contains(where: { $0 == 0x5C || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
                buffer.writeBuffer(&bytes)
                continue
            }
            for byte in view {
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

    /// Appends one row of ``lineExpression(_:)``: its single column is a finished COPY line.
    mutating func appendLine(_ row: PostgresRow) throws {
        var cells = row.makeIterator()
        guard var bytes = cells.next()?.bytes else {
            throw TenantryError(code: .database, message: "a COPY line read from the source was NULL")
        }
        buffer.writeBuffer(&bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    /// Types whose text form never holds a tab, newline, carriage return or backslash, so their
    /// text needs no COPY escaping (their arrays and domains over them are escaped all the same).
    static let plainTypes = ["smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean",
                             "date", "timestamp", "time", "interval", "uuid", "oid"]

    /// Types whose text form may hold a backslash but never a tab, newline or carriage return:
    /// `jsonb` prints control characters in strings as JSON escapes (`\n`, `\u0001`) and puts
    /// only spaces between tokens (`json` keeps its input's text as it was, so it is escaped fully).
    static let backslashOnlyTypes = ["jsonb"]

    /// The SQL expression that makes the source server write one COPY text line of `table`'s
    /// writable columns (without the newline): every value's text (its output function, as
    /// `::text` and COPY TO print it), `\N` for NULL, tabs between, and tabs, newlines, carriage
    /// returns and backslashes escaped in every column whose type is not in ``plainTypes``
    /// (only backslashes for ``backslashOnlyTypes``). The copier then only appends bytes: no
    /// per-cell work in the client.
    static func lineExpression(_ table: MovePlan.Table) -> String {
        let values = table.writableColumns.map { column -> String in
            let type = table.type(of: column)
            var text = "\(MovePlan.quote(column))::text"
            func among(_ types: [String]) -> Bool {
                !type.hasSuffix("]") && types.contains { type == $0 || type.hasPrefix($0 + "(") || type.hasPrefix($0 + " ") }
            }
            if among(backslashOnlyTypes) {
                text = #"replace(\#(text), E'\\', E'\\\\')"#
            } else if !among(plainTypes) {
                text = #"replace(replace(replace(replace(\#(text), E'\\', E'\\\\'), E'\n', E'\\n'), E'\r', E'\\r'), E'\t', E'\\t')"#
            }
            return #"coalesce(\#(text), E'\\N')"#
        }
        guard !values.isEmpty else { return "''" }
        // concat_ws takes at most 100 arguments; no value is NULL, so chunks nest exactly.
        var chunks = stride(from: 0, to: values.count, by: 90).map { start in
            "concat_ws(E'\\t', \(values[start..<min(start + 90, values.count)].joined(separator: ", ")))"
        }
        while chunks.count > 1 {
            chunks = stride(from: 0, to: chunks.count, by: 90).map { start in
                "concat_ws(E'\\t', \(chunks[start..<min(start + 90, chunks.count)].joined(separator: ", ")))"
            }
        }
        return chunks[0]
    }

    /// Hands over what was encoded and starts a new buffer.
    mutating func take() -> ByteBuffer {
        let full = buffer
        buffer = ByteBufferAllocator().buffer(capacity: max(1 << 16, full.capacity))
        return full
    }

    var readableBytes: Int { buffer.readableBytes }
}

/// A bounded queue of COPY data between the task reading a tenant's tables from the source and
/// the task writing them into the target: the reader runs ahead (into the next table, while the
/// target still works through the end of the previous one) by at most `limit` bytes.
/// One sender, one receiver; whichever side fails closes the pipe, which wakes the other.
final class CopyPipe: Sendable {
    /// What flows: COPY text of the current table, or the end of a table with its row count.
    enum Item: Sendable {
        case data(ByteBuffer, rows: Int)
        case endOfTable(rows: Int)
    }

    private struct State {
        var items: [Item] = []
        var head = 0
        var bytes = 0
        var closed: (any Error)?
        var receiver: CheckedContinuation<Item, any Error>?
        var sender: CheckedContinuation<Void, any Error>?
    }

    private let limit: Int
    private let state = NIOLockedValueBox(State())

    init(limit: Int = 4 << 20) {
        self.limit = limit
    }

    /// Queues `item`; waits while the queue holds `limit` bytes or more.
    func send(_ item: Item) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let resume: (CheckedContinuation<Item, any Error>?, Result<Void, any Error>?) = state.withLockedValue { state in
                if let error = state.closed { return (nil, .failure(error)) }
                if let receiver = state.receiver {
                    state.receiver = nil
                    return (receiver, .success(()))
                }
                state.items.append(item)
                if case .data(let buffer, _) = item { state.bytes += buffer.readableBytes }
                if state.bytes < limit { return (nil, .success(())) }
                state.sender = continuation
                return (nil, nil)
            }
            resume.0?.resume(returning: item)
            if let result = resume.1 { continuation.resume(with: result) }
        }
    }

    /// The next item, waiting for the sender when the queue is empty.
    func receive() async throws -> Item {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Item, any Error>) in
            let (result, sender): (Result<Item, any Error>?, CheckedContinuation<Void, any Error>?) = state.withLockedValue { state in
                if state.head < state.items.count {
                    let item = state.items[state.head]
                    state.head += 1
                    if state.head == state.items.count { state.items.removeAll(keepingCapacity: true); state.head = 0 }
                    if case .data(let buffer, _) = item { state.bytes -= buffer.readableBytes }
                    var sender: CheckedContinuation<Void, any Error>?
                    if state.bytes < limit { sender = state.sender; state.sender = nil }
                    return (.success(item), sender)
                }
                if let error = state.closed { return (.failure(error), nil) }
                state.receiver = continuation
                return (nil, nil)
            }
            sender?.resume()
            if let result { continuation.resume(with: result) }
        }
    }

    /// Closes the pipe: a waiting sender or receiver (and every later call) fails with `error`;
    /// items already queued are still received first.
    func close(_ error: any Error) {
        let (sender, receiver) = state.withLockedValue { state -> (CheckedContinuation<Void, any Error>?, CheckedContinuation<Item, any Error>?) in
            if state.closed == nil { state.closed = error }
            defer { state.sender = nil; state.receiver = nil }
            return (state.sender, state.receiver)
        }
        sender?.resume(throwing: error)
        receiver?.resume(throwing: error)
    }
}
