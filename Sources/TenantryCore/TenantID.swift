/// A validated tenant id: 1–40 characters of `a-z`, `0-9` and `_`, starting with a letter or digit
/// (`^[a-z0-9][a-z0-9_]{0,39}$`). Integer shop ids are the common case.
///
/// Only a `TenantID` is ever placed into a database or role name, so a hostile string such as
/// `1;drop database x` cannot reach SQL text.
public struct TenantID: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    /// The id's text.
    public let rawValue: String

    /// The longest id accepted.
    public static let maximumLength = 40

    /// Validates `rawValue`; throws ``TenantryError/Code-swift.struct/invalidTenantID`` otherwise.
    public init(_ rawValue: String) throws(TenantryError) {
        guard Self.isValid(rawValue) else {
            throw TenantryError(
                code: .invalidTenantID,
                message: "tenant id \(Self.quoted(rawValue)) is invalid: use 1-\(Self.maximumLength) characters "
                    + "of a-z, 0-9 and _, starting with a letter or digit")
        }
        self.rawValue = rawValue
    }

    /// Whether `value` is a valid tenant id.
    public static func isValid(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard (1...maximumLength).contains(bytes.count) else { return false }
        for (index, byte) in bytes.enumerated() {
            let isLower = byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")
            let isDigit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
            let isUnderscore = byte == UInt8(ascii: "_")
            guard isLower || isDigit || (isUnderscore && index > 0) else { return false }
        }
        return true
    }

    /// A printable, bounded rendering of untrusted input for error messages.
    static func quoted(_ value: String) -> String {
        var shown = ""
        for scalar in value.unicodeScalars.prefix(48) {
            shown += scalar.properties.generalCategory == .control ? scalar.escaped(asASCII: true) : String(scalar)
        }
        if value.unicodeScalars.count > 48 { shown += "…" }
        return "'\(shown)'"
    }

    public var description: String { rawValue }
    public static func < (lhs: TenantID, rhs: TenantID) -> Bool {
        // Numeric ids sort numerically (2 before 10), others by text.
        switch (Int(lhs.rawValue), Int(rhs.rawValue)) {
        case let (l?, r?): return l < r
        default: return lhs.rawValue < rhs.rawValue
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
