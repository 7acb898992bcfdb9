import Logging

import PostgresNIO

/// Builds rows in PostgreSQL's COPY text format: fields separated by tabs, rows ended by `\n`,
/// NULL as `\N`, and backslash, tab, newline and carriage return escaped in every value.
struct CopyRow {
    /// The encoded rows so far (UTF-8).
    var bytes: [UInt8]
    private var atRowStart = true

    init(capacity: Int = 80 * 1024) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    private mutating func separator() {
        if atRowStart { atRowStart = false } else { bytes.append(0x09) }
    }

    /// Ends the current row.
    mutating func endRow() {
        bytes.append(0x0a)
        atRowStart = true
    }

    /// A NULL field.
    mutating func null() {
        separator()
        bytes.append(0x5c)
        bytes.append(UInt8(ascii: "N"))
    }

    /// A text field (or NULL), escaped.
    mutating func text(_ value: String?) {
        guard let value else { return null() }
        separator()
        writeEscaped(value)
    }

    /// An integer field (or NULL).
    mutating func int(_ value: Int64?) {
        guard let value else { return null() }
        separator()
        bytes.append(contentsOf: String(value).utf8)
    }

    /// An integer field (or NULL).
    mutating func int(_ value: Int?) { int(value.map(Int64.init)) }

    /// A boolean field (or NULL).
    mutating func bool(_ value: Bool?) {
        guard let value else { return null() }
        separator()
        bytes.append(UInt8(ascii: value ? "t" : "f"))
    }

    /// A bytea field (or NULL) in hex form; the backslash of `\x` is itself escaped for COPY.
    mutating func bytea(_ value: [UInt8]?) {
        guard let value else { return null() }
        separator()
        bytes.append(contentsOf: [0x5c, 0x5c, UInt8(ascii: "x")])
        Hex.append(value, to: &bytes)
    }

    /// A one-dimensional array field (or NULL) in array-literal form, every element quoted, NULL
    /// elements as unquoted `NULL`.
    mutating func array(_ value: [String?]?) {
        guard let value else { return null() }
        text(CopyRow.arrayLiteral(value))
    }

    /// A jsonb field (or NULL).
    mutating func json(_ value: JSON?) {
        guard let value else { return null() }
        text(value.text)
    }

    /// The array literal of `elements`: `{"a","b\"c",NULL}`.
    static func arrayLiteral(_ elements: [String?]) -> String {
        var out = "{"
        for (index, element) in elements.enumerated() {
            if index > 0 { out += "," }
            guard let element else { out += "NULL"; continue }
            out += "\""
            if element.utf8.contains(where: { $0 == 0x5c || $0 == 0x22 }) {
                for scalar in element.unicodeScalars {
                    if scalar == "\\" || scalar == "\"" { out += "\\" }
                    out.unicodeScalars.append(scalar)
                }
            } else {
                out += element
            }
            out += "\""
        }
        return out + "}"
    }

    /// Appends `value`'s UTF-8 with COPY's escapes, copying runs without special bytes at once.
    private mutating func writeEscaped(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let escape: UInt8
                switch utf8[index] {
                case 0x5c: escape = 0x5c
                case 0x09: escape = UInt8(ascii: "t")
                case 0x0a: escape = UInt8(ascii: "n")
                case 0x0d: escape = UInt8(ascii: "r")
                default: continue
                }
                if start < index { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index])) }
                bytes.append(0x5c)
                bytes.append(escape)
                start = index + 1
            }
            if start < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...])) }
        }
    }
}

/// Streams rows into one table with `COPY … FROM STDIN (FORMAT text)` in batches of about 64 KiB.
struct CopyLoader {
    let connection: PostgresConnection
    let logger: Logger
    static let batchBytes = 64 * 1024

    /// Copies `count` rows into `table`; `fill` writes the fields of row `index` (0-based).
    func load(
        _ table: String, columns: [String], count: Int, _ fill: (inout CopyRow, Int) throws -> Void
    ) async throws {
        guard count > 0 else { return }
        try await connection.copyFrom(table: table, columns: columns, logger: logger) { writer in
            var row = CopyRow()
            for index in 0..<count {
                try fill(&row, index)
                row.endRow()
                if row.bytes.count >= Self.batchBytes {
                    try await writer.write(ByteBuffer(bytes: row.bytes))
                    row.bytes.removeAll(keepingCapacity: true)
                }
            }
            if !row.bytes.isEmpty { try await writer.write(ByteBuffer(bytes: row.bytes)) }
        }
    }
}

/// A JSON value with a stable key order, rendered to text without Foundation.
indirect enum JSON: Sendable {
    case null
    case bool(Bool)
    /// A number, written as given (must be a valid JSON number).
    case number(String)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    /// The JSON text.
    var text: String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .number(let value): out += value
        case .string(let value): JSON.quote(value, into: &out)
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += ", " }
                item.write(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out += ", " }
                JSON.quote(key, into: &out)
                out += ": "
                value.write(into: &out)
            }
            out += "}"
        }
    }

    private static func quote(_ value: String, into out: inout String) {
        out += "\""
        if !value.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c }) {
            out += value
            out += "\""
            return
        }
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
