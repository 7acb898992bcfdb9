import NIOCore
import PostgresNIO
import Tenantry
import TenantryCore

/// `logical_images`: the whole of a capture by logical decoding, as a spike of what such an
/// engine would do per change, so that its cost can be set against the trigger's: the decoding
/// session reads the slot's `pgoutput` messages, this process parses them (Begin, Relation, Insert,
/// Update), and each change of shop 1's `customers` becomes a row of an outbox shaped like
/// `tenantry.changes`, with the image the capture trigger would have built: the row's text values
/// turned back into a typed `customers` row by the server (`record_in`) and `to_jsonb` of it, the
/// jsonb column as text. One INSERT per batch of messages.
extension CaptureBench {
    /// One change of a decoded batch: the operation, the 32-bit xid, the row as a record literal.
    struct DecodedChange: Sendable {
        var op: String
        var xid: String
        var record: String
    }

    /// The messages of one `pg_logical_slot_get_binary_changes` batch (pgoutput, protocol 1) that
    /// change shop 1's `customers`, with the relation's columns learnt from its Relation message.
    struct PgOutputParser {
        /// Relation id → (table name, column names).
        var relations: [UInt32: (name: String, columns: [String])] = [:]

        /// Parses one message; returns the change when it is an Insert or Update of shop 1's customers.
        mutating func parse(_ message: ByteBuffer, xid: String) throws -> DecodedChange? {
            var buffer = message
            guard let kind = buffer.readInteger(as: UInt8.self) else { return nil }
            switch kind {
            case UInt8(ascii: "R"):
                guard let id = buffer.readInteger(as: UInt32.self), let _ = buffer.readNullTerminatedString(),
                      let name = buffer.readNullTerminatedString(), let _ = buffer.readInteger(as: UInt8.self),
                      let count = buffer.readInteger(as: Int16.self) else { throw ParseError() }
                var columns: [String] = []
                for _ in 0..<count {
                    guard let _ = buffer.readInteger(as: UInt8.self), let column = buffer.readNullTerminatedString(),
                          let _ = buffer.readInteger(as: UInt32.self), let _ = buffer.readInteger(as: Int32.self) else { throw ParseError() }
                    columns.append(column)
                }
                relations[id] = (name, columns)
                return nil
            case UInt8(ascii: "I"), UInt8(ascii: "U"):
                guard let id = buffer.readInteger(as: UInt32.self), let relation = relations[id], relation.name == "customers" else {
                    return nil
                }
                var marker = buffer.readInteger(as: UInt8.self)
                if marker == UInt8(ascii: "K") || marker == UInt8(ascii: "O") {
                    _ = try Self.tuple(&buffer)
                    marker = buffer.readInteger(as: UInt8.self)
                }
                guard marker == UInt8(ascii: "N") else { throw ParseError() }
                let values = try Self.tuple(&buffer)
                guard let shop = relation.columns.firstIndex(of: "shop_id"), values[shop] == "1" else { return nil }
                // An unchanged TOAST value ('u') cannot occur here: no customers value is that long.
                let record = "(" + values.map { value in
                    value.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" } ?? ""
                }.joined(separator: ",") + ")"
                return DecodedChange(op: kind == UInt8(ascii: "I") ? "I" : "U", xid: xid, record: record)
            default:
                return nil
            }
        }

        /// TupleData: the text of each column, nil for NULL.
        static func tuple(_ buffer: inout ByteBuffer) throws -> [String?] {
            guard let count = buffer.readInteger(as: Int16.self) else { throw ParseError() }
            var values: [String?] = []
            for _ in 0..<count {
                switch buffer.readInteger(as: UInt8.self) {
                case UInt8(ascii: "n"), UInt8(ascii: "u"): values.append(nil)
                case UInt8(ascii: "t"):
                    guard let length = buffer.readInteger(as: Int32.self), let text = buffer.readString(length: Int(length)) else {
                        throw ParseError()
                    }
                    values.append(text)
                default: throw ParseError()
                }
            }
            return values
        }

        struct ParseError: Error, CustomStringConvertible {
            var description: String { "malformed pgoutput message" }
        }
    }

    /// One step of the `logical_images` decoder: reads up to 10,000 messages, appends the images of
    /// shop 1's changes; returns the messages read.
    static func decodeImages(_ decoder: PostgresConnection, parser: inout PgOutputParser) async throws -> Int {
        var changes: [DecodedChange] = []
        var messages = 0
        for try await (xid, data) in try await decoder.query("""
            SELECT xid::text, data FROM pg_logical_slot_get_binary_changes(\(slot), NULL, 10000, 'proto_version', '1', 'publication_names', \(slot))
            """, logger: Bench.logger).decode((String, ByteBuffer).self) {
            messages += 1
            if let change = try parser.parse(data, xid: xid) { changes.append(change) }
        }
        guard !changes.isEmpty else { return messages }
        // The 32-bit xid widened with the current epoch (a spike: no wraparound handling).
        try await decoder.query("""
            INSERT INTO bench_floor.changes (tenant_id, table_name, op, row_data, xid)
            SELECT '1', 'customers', u.op::"char",
                   pg_catalog.to_jsonb(r.row) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('address', (r.row).address::text),
                   (pg_catalog.div(pg_catalog.pg_current_xact_id()::text::numeric, 4294967296) * 4294967296 + u.xid::bigint)::text::xid8
            FROM unnest(\(changes.map(\.op))::text[], \(changes.map(\.xid))::text[], \(changes.map(\.record))::text[]) AS u(op, xid, record),
                 LATERAL (SELECT u.record::public.customers AS row) r
            """, logger: Bench.logger)
        return messages
    }
}
