/// A validated SQL identifier, quoted for use in SQL text.
///
/// Identifiers that come from introspection (any name PostgreSQL allows) are quoted with
/// ``quoted(_:)``; names Tenantry makes (databases, roles) must also pass ``validateName(_:)``.
public enum SQLIdentifier {
    /// Quotes an identifier: `"name"`, doubling embedded quotes. Rejects NUL and empty names.
    public static func quoted(_ name: String) throws(TenantryError) -> String {
        guard !name.isEmpty, !name.utf8.contains(0), name.utf8.count <= 63 else {
            throw TenantryError(code: .invalidIdentifier, message: "invalid SQL identifier (empty, too long or NUL)")
        }
        return "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Checks a name Tenantry creates: lower-case letters, digits and `_`, at most 63 bytes,
    /// not starting with a digit.
    public static func validateName(_ name: String, what: String) throws(TenantryError) {
        let bytes = Array(name.utf8)
        let ok = (1...63).contains(bytes.count) && bytes.allSatisfy {
            ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9"))
                || $0 == UInt8(ascii: "_")
        } && !(bytes[0] >= UInt8(ascii: "0") && bytes[0] <= UInt8(ascii: "9"))
        guard ok else {
            throw TenantryError(
                code: .invalidIdentifier,
                message: "\(what) '\(name.prefix(70))' is not a valid name: use 1-63 characters of a-z, 0-9 and _, "
                    + "not starting with a digit")
        }
    }
}
