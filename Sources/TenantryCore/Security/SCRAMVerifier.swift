import Crypto
import _CryptoExtras
import Foundation

/// Computes PostgreSQL's SCRAM-SHA-256 password verifier on the client, so `CREATE ROLE … PASSWORD`
/// carries `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` and never the password: the
/// plaintext is absent from SQL text, `pg_stat_activity` and the server log.
public enum SCRAMVerifier {
    /// PostgreSQL's default iteration count.
    public static let defaultIterations = 4096

    /// The verifier of `password` with a fresh random 16-byte salt.
    public static func make(password: String, iterations: Int = defaultIterations) throws -> String {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return try make(password: password, salt: salt, iterations: iterations)
    }

    /// The verifier of `password` with `salt` (RFC 5802/7677, as PostgreSQL's `scram_build_secret`).
    /// Passwords are used as UTF-8; Tenantry generates ASCII passwords, for which SASLprep is the identity.
    public static func make(password: String, salt: [UInt8], iterations: Int) throws -> String {
        let salted = try KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, unsafeUncheckedRounds: iterations)
        let clientKey = HMAC<SHA256>.authenticationCode(for: Array("Client Key".utf8), using: salted)
        let storedKey = SHA256.hash(data: Array(clientKey))
        let serverKey = HMAC<SHA256>.authenticationCode(for: Array("Server Key".utf8), using: salted)
        return "SCRAM-SHA-256$\(iterations):\(Data(salt).base64EncodedString())$"
            + "\(Data(Array(storedKey)).base64EncodedString()):\(Data(Array(serverKey)).base64EncodedString())"
    }

    /// A new random password: 32 characters of `[A-Za-z0-9]` from the system CSPRNG (~190 bits).
    public static func generatePassword(length: Int = 32) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
    }
}
