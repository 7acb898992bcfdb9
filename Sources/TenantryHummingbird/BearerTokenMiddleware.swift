import Crypto
import Foundation
import Hummingbird

/// Requires `Authorization: Bearer <token>` (the admin token, `TENANTRY_ADMIN_TOKEN`), compared
/// in constant time; otherwise 401 with a JSON error. Sets the context's actor to
/// `api:<fingerprint>`: the first 12 hex digits of the token's SHA-256, so the audit log tells
/// tokens apart without holding one.
public struct BearerTokenMiddleware<Context: ActorRequestContext>: RouterMiddleware {
    private let digest: [UInt8]
    /// The token's fingerprint (safe to log).
    public let fingerprint: String

    /// A middleware accepting `token`.
    public init(token: String) {
        self.digest = Array(SHA256.hash(data: Data(token.utf8)))
        self.fingerprint = Self.fingerprint(of: token)
    }

    /// The first 12 hex digits of the SHA-256 of `token`.
    public static func fingerprint(of token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).map { String(format: "%02x", $0) }.joined().prefix(12).description
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw AdminError(.unauthorized, code: "unauthorized", "missing bearer token (Authorization: Bearer <token>)")
        }
        let prefix = "bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix else {
            throw AdminError(.unauthorized, code: "unauthorized", "the Authorization header must be 'Bearer <token>'")
        }
        guard matches(String(header.dropFirst(prefix.count))) else {
            context.logger.warning("admin request with a wrong token refused", metadata: ["http.path": "\(request.uri.path)"])
            throw AdminError(.unauthorized, code: "unauthorized", "invalid bearer token")
        }
        var context = context
        context.actor = "api:\(fingerprint)"
        return try await next(request, context)
    }

    /// Whether `request` carries the token (`Authorization: Bearer <token>`), for endpoints open
    /// to everyone that show more to the token's holder.
    public func accepts(_ request: Request) -> Bool {
        guard let header = request.headers[.authorization], header.count > 7, header.prefix(7).lowercased() == "bearer " else { return false }
        return matches(String(header.dropFirst(7)))
    }

    /// Compares a presented token with the token in constant time.
    private func matches(_ presented: String) -> Bool {
        // Both sides hashed first: equal lengths, so the comparison's time does not depend on the
        // presented token's length or on where it differs.
        let candidate = Array(SHA256.hash(data: Data(presented.trimmingCharacters(in: .whitespaces).utf8)))
        var difference: UInt8 = 0
        for index in 0..<digest.count { difference |= digest[index] ^ candidate[index] }
        return difference == 0
    }
}
