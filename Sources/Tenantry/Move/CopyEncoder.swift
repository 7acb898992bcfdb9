import NIOCore
import PostgresNIO

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

    /// Hands over what was encoded and starts a new buffer.
    mutating func take() -> ByteBuffer {
        let full = buffer
        buffer = ByteBufferAllocator().buffer(capacity: max(1 << 16, full.capacity))
        return full
    }

    var readableBytes: Int { buffer.readableBytes }
}
