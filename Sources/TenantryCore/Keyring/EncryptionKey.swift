import Crypto
import Foundation

/// One AES-256 key, with a public id derived from it (so a ciphertext names its key without
/// revealing anything about it).
public struct EncryptionKey: Sendable {
    /// 8 hex characters: the start of SHA-256 over a label and the key.
    public let id: String
    let symmetricKey: SymmetricKey

    /// Parses 64 hex characters (32 bytes).
    public init(hex: String, variable: String = "TENANT_ENCRYPTION_KEY") throws(TenantryError) {
        guard let bytes = Self.decodeHex(hex), bytes.count == 32 else {
            throw TenantryError(code: .configuration, message: "\(variable) must be 64 hex characters (32 bytes)")
        }
        self.init(bytes: bytes)
    }

    /// Uses 32 raw bytes.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "AES-256 keys are 32 bytes")
        symmetricKey = SymmetricKey(data: bytes)
        var hasher = SHA256()
        hasher.update(data: Array("tenantry-key-id\u{0}".utf8))
        hasher.update(data: bytes)
        id = hasher.finalize().prefix(4).map { String(format: "%02x", $0) }.joined()
    }

    /// A new random key (CSPRNG), for tests and `tenantry keys generate`.
    public static func generate() -> EncryptionKey {
        var generator = SystemRandomNumberGenerator()
        return EncryptionKey(bytes: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// The key as 64 hex characters (to print a newly generated key once).
    public var hex: String {
        symmetricKey.withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
    }

    static func decodeHex(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(chars.count / 2)
        var index = 0
        while index < chars.count {
            guard let high = nibble(chars[index]), let low = nibble(chars[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
