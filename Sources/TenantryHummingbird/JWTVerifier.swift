import Crypto
import Foundation

/// Verifies HS256 JSON Web Tokens (RFC 7519) with swift-crypto: the header must say `HS256`
/// (`none` and every other algorithm are refused), the signature must match (compared in
/// constant time), `exp` must be in the future and `nbf`, when present, in the past; `aud` and
/// `iss` must match when an audience or issuer is configured. Secrets shorter than
/// ``minimumSecretLength`` bytes are refused (an HS256 key must be as long as the hash, RFC 7518 §3.2).
public struct JWTVerifier: Sendable {
    /// The shortest secret accepted: 32 bytes.
    public static let minimumSecretLength = 32

    private let key: SymmetricKey
    /// The audience a token's `aud` must name (a string, or an array containing it); `nil`: not checked.
    public var audience: String?
    /// The issuer a token's `iss` must equal; `nil`: not checked.
    public var issuer: String?
    /// Clock skew tolerated on `exp` and `nbf`.
    public var leeway: Duration = .seconds(5)
    /// Whether a token without `exp` is refused (default: yes).
    public var requireExpiry = true

    /// A verifier with the shared secret `secret` (at least ``minimumSecretLength`` bytes, else
    /// ``Failure``), checking `aud` against `audience` and `iss` against `issuer` when given.
    public init(secret: some DataProtocol, audience: String? = nil, issuer: String? = nil) throws(Failure) {
        guard secret.count >= Self.minimumSecretLength else {
            throw Failure(description: "the JWT secret must be at least \(Self.minimumSecretLength) bytes")
        }
        self.key = SymmetricKey(data: Data(secret))
        self.audience = audience
        self.issuer = issuer
    }

    /// Why a token was refused (the message is safe to return to the client).
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// What was wrong.
        public var description: String
    }

    /// The claims of `token`, or ``Failure``.
    public func verify(_ token: String, now: Date = Date()) throws(Failure) -> [String: JSONValue] {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.base64URLDecode(parts[0]), let payloadData = Self.base64URLDecode(parts[1]),
              let signature = Self.base64URLDecode(parts[2])
        else { throw Failure(description: "the token is not a JWT") }
        guard let header = (try? JSONDecoder().decode(JSONValue.self, from: headerData))?.object,
              header["alg"] == .string("HS256")
        else { throw Failure(description: "the token must be signed with HS256") }
        let signed = Data("\(parts[0]).\(parts[1])".utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signed, using: key) else {
            throw Failure(description: "the token's signature is invalid")
        }
        guard let claims = (try? JSONDecoder().decode(JSONValue.self, from: payloadData))?.object else {
            throw Failure(description: "the token's payload is not a JSON object")
        }
        let leewaySeconds = Double(leeway.components.seconds)
        let nowSeconds = now.timeIntervalSince1970
        if let exp = Self.number(claims["exp"]) {
            guard exp + leewaySeconds > nowSeconds else { throw Failure(description: "the token has expired") }
        } else if requireExpiry {
            throw Failure(description: "the token has no expiry (exp)")
        }
        if let nbf = Self.number(claims["nbf"]), nbf - leewaySeconds > nowSeconds {
            throw Failure(description: "the token is not valid yet")
        }
        if let audience {
            let audiences: [JSONValue] = switch claims["aud"] {
            case .array(let values): values
            case let value?: [value]
            case nil: []
            }
            guard audiences.contains(.string(audience)) else { throw Failure(description: "the token is not for this audience (aud)") }
        }
        if let issuer, claims["iss"] != .string(issuer) {
            throw Failure(description: "the token's issuer (iss) is not accepted")
        }
        return claims
    }

    /// An HS256 token with `claims`, signed with `secret` (for clients and tests).
    public static func sign(_ claims: [String: JSONValue], secret: some DataProtocol) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let header = base64URLEncode(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = base64URLEncode(try encoder.encode(claims))
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(header).\(payload)".utf8), using: SymmetricKey(data: Data(secret)))
        return "\(header).\(payload).\(base64URLEncode(Data(mac)))"
    }

    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .integer(let value): Double(value)
        case .number(let value): value
        default: nil
        }
    }

    static func base64URLEncode(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func base64URLDecode(_ text: Substring) -> Data? {
        guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}
