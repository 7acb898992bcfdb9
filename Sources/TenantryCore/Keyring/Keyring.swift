import Crypto
import _CryptoExtras
import Foundation

/// Seals and opens secrets (tenant passwords, server admin passwords) with AES-256-GCM.
///
/// A sealed value is `v1:<key-id>:<base64(nonce|ciphertext|tag)>`. The tenant id and field name
/// are the associated data, so a ciphertext copied onto another tenant or field does not open.
/// The plaintext starts with a small header naming its tenant and field (not secret), so that such
/// a copy is reported as what it is rather than as tampering.
public struct Keyring: Sendable {
    /// The key new values are sealed with.
    public let current: EncryptionKey
    /// Older keys, accepted for opening only (until `tenantry keys rotate` re-seals everything).
    public let previous: [EncryptionKey]

    static let version = "v1"

    /// Creates a keyring.
    public init(current: EncryptionKey, previous: [EncryptionKey] = []) {
        self.current = current
        self.previous = previous.filter { $0.id != current.id }
    }

    /// Seals `secret` for `field` of `tenant` (use the tenant id, or e.g. `server:main`).
    public func seal(_ secret: String, tenant: String, field: String) throws -> String {
        let context = Self.context(tenant: tenant, field: field)
        let plaintext = Self.header(tenant: tenant, field: field) + Array(secret.utf8)
        let box = try AES.GCM.seal(plaintext, using: current.symmetricKey, authenticating: context)
        guard let combined = box.combined else {
            throw TenantryError(code: .malformedCiphertext, message: "AES-GCM produced no combined box")
        }
        return "\(Self.version):\(current.id):\(combined.base64EncodedString())"
    }

    /// Opens a sealed value for `field` of `tenant`.
    ///
    /// Throws ``TenantryError`` with code `malformedCiphertext` (not a Tenantry value), `unknownKey`
    /// (sealed with a key that is not configured), `wrongCiphertextContext` (sealed for another
    /// tenant or field) or `tamperedCiphertext` (altered or corrupted). No message holds a secret.
    public func open(_ sealed: String, tenant: String, field: String) throws(TenantryError) -> String {
        let (keyID, combined) = try Self.parse(sealed)
        guard let key = ([current] + previous).first(where: { $0.id == keyID }) else {
            throw TenantryError(
                code: .unknownKey,
                message: "the \(field) of tenant \(tenant) was sealed with key \(keyID), which is neither "
                    + "TENANT_ENCRYPTION_KEY (\(current.id)) nor one of TENANT_ENCRYPTION_PREVIOUS_KEYS",
                tenant: tenant)
        }
        let context = Self.context(tenant: tenant, field: field)
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            let plaintext = try AES.GCM.open(box, using: key.symmetricKey, authenticating: context)
            let body = try Self.stripHeader(Array(plaintext), tenant: tenant, field: field)
            guard let secret = String(bytes: body, encoding: .utf8) else {
                throw TenantryError(code: .tamperedCiphertext, message: "the \(field) of tenant \(tenant) is not UTF-8")
            }
            return secret
        } catch let error as TenantryError {
            throw error
        } catch {
            // Authentication failed. Tell a copy from another tenant or field apart from tampering
            // by reading the (unauthenticated) header; its checksum guards against flipped bits.
            if let (otherTenant, otherField) = Self.peekHeader(combined, key: key),
               otherTenant != tenant || otherField != field {
                throw TenantryError(
                    code: .wrongCiphertextContext,
                    message: "this ciphertext belongs to tenant \(otherTenant) (\(otherField)) and cannot be "
                        + "opened as the \(field) of tenant \(tenant)",
                    tenant: tenant)
            }
            throw TenantryError(
                code: .tamperedCiphertext,
                message: "the \(field) of tenant \(tenant) failed authentication: the ciphertext was altered or corrupted",
                tenant: tenant)
        }
    }

    /// The id of the key a sealed value names, or `nil` when it is malformed.
    public static func keyID(of sealed: String) -> String? {
        try? parse(sealed).0
    }

    /// Re-seals a value under the current key; returns `nil` when it already uses the current key.
    public func reseal(_ sealed: String, tenant: String, field: String) throws -> String? {
        guard Self.keyID(of: sealed) != current.id else { return nil }
        let secret = try open(sealed, tenant: tenant, field: field)
        return try seal(secret, tenant: tenant, field: field)
    }

    // MARK: - Format

    static func context(tenant: String, field: String) -> [UInt8] {
        Array("tenantry/\(version)/\(tenant)/\(field)".utf8)
    }

    /// `len(u8) | "tenant\0field" | sha256(...)[0..<4]`
    static func header(tenant: String, field: String) -> [UInt8] {
        let name = Array("\(tenant)\u{0}\(field)".utf8)
        precondition(name.count < 256, "tenant id and field name are short")
        let checksum = Array(SHA256.hash(data: name).prefix(4))
        return [UInt8(name.count)] + name + checksum
    }

    static func stripHeader(_ plaintext: [UInt8], tenant: String, field: String) throws(TenantryError) -> ArraySlice<UInt8> {
        let expected = header(tenant: tenant, field: field)
        guard plaintext.starts(with: expected) else {
            throw TenantryError(code: .tamperedCiphertext, message: "the \(field) of tenant \(tenant) has a bad header")
        }
        return plaintext[expected.count...]
    }

    /// Decrypts the header without authentication (AES-CTR from GCM's first data counter).
    static func peekHeader(_ combined: Data, key: EncryptionKey) -> (String, String)? {
        let bytes = Array(combined)
        guard bytes.count >= 12 + 16 + 1 else { return nil }
        let nonce = Array(bytes[0..<12]) + [0, 0, 0, 2]
        let ciphertext = Array(bytes[12..<(bytes.count - 16)])
        guard let ctrNonce = try? AES._CTR.Nonce(nonceBytes: nonce),
              let plain = try? AES._CTR.decrypt(ciphertext, using: key.symmetricKey, nonce: ctrNonce) else { return nil }
        let text = Array(plain)
        guard let length = text.first.map(Int.init), text.count >= 1 + length + 4 else { return nil }
        let name = Array(text[1..<(1 + length)])
        guard Array(SHA256.hash(data: name).prefix(4)) == Array(text[(1 + length)..<(1 + length + 4)]),
              let decoded = String(bytes: name, encoding: .utf8) else { return nil }
        let parts = decoded.split(separator: "\u{0}", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        return (String(parts[0]), String(parts[1]))
    }

    static func parse(_ sealed: String) throws(TenantryError) -> (String, Data) {
        let parts = sealed.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == Substring(version), parts[1].count == 8,
              let data = Data(base64Encoded: String(parts[2])), data.count >= 12 + 16 else {
            throw TenantryError(
                code: .malformedCiphertext,
                message: "stored value is not a Tenantry ciphertext (expected v1:<key-id>:<base64>)")
        }
        return (String(parts[1]), data)
    }
}
