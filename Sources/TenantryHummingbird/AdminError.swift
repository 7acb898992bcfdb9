import Foundation
import Hummingbird
import NIOCore
import Tenantry
import TenantryCore

/// An error the admin API and the HandyShop service answer with: an HTTP status and
/// `{"error": {"code": "...", "message": "..."}}`. The message is safe to show a client: it never
/// holds a secret (tokens, passwords, keys) nor server internals.
public struct AdminError: HTTPResponseError, Sendable, CustomStringConvertible {
    /// The HTTP status.
    public var status: HTTPResponse.Status
    /// A stable, snake_case code (`unauthorized`, `tenant_not_found`, …).
    public var code: String
    /// A one-line message.
    public var message: String

    /// An error.
    public init(_ status: HTTPResponse.Status, code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    /// The JSON body of an error response.
    public struct Body: Sendable, Codable, Equatable {
        /// The error's code and message.
        public struct Detail: Sendable, Codable, Equatable {
            /// The code.
            public var code: String
            /// The message.
            public var message: String
        }
        /// The error.
        public var error: Detail
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        let data = try JSONEncoder().encode(Body(error: .init(code: code, message: message)))
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: - Common errors

    /// 400: the body is not JSON, or a field has the wrong type.
    public static func invalidRequest(_ message: String) -> AdminError { AdminError(.badRequest, code: "invalid_request", message) }
    /// 404: no such tenant.
    public static func tenantNotFound(_ tenant: TenantID) -> AdminError {
        AdminError(.notFound, code: "tenant_not_found", "tenant \(tenant) is not known")
    }
    /// 413: the body is larger than the limit.
    public static func payloadTooLarge(_ limit: Int) -> AdminError {
        AdminError(.contentTooLarge, code: "payload_too_large", "the request body is larger than \(limit) bytes")
    }

    // MARK: - Mapping

    /// The answer for any error: an ``AdminError`` as it is; a ``TenantryError`` by its code
    /// (client errors 4xx, the database unavailable 503); a decoding error 400; an oversized body
    /// 413; Hummingbird's own errors with their status; anything else 500 without detail.
    public static func from(_ error: any Error, bodyLimit: Int) -> AdminError {
        switch error {
        case let error as AdminError: return error
        case let error as TenantryError: return from(error)
        case is DecodingError: return invalidRequest(describe(error as? DecodingError))
        case is NIOTooManyBytesError: return payloadTooLarge(bodyLimit)
        case let error as HTTPError:
            let code = error.status == .notFound ? "not_found"
                : error.status == .methodNotAllowed ? "method_not_allowed"
                : error.status.code < 500 ? "bad_request" : "internal"
            let message = error.status == .notFound ? "no such endpoint" : (error.body ?? error.status.reasonPhrase)
            return AdminError(error.status, code: code, String(message.prefix(200)))
        default:
            return AdminError(.internalServerError, code: "internal", "internal error (see the service log)")
        }
    }

    /// The status and code of a ``TenantryError``.
    public static func from(_ error: TenantryError) -> AdminError {
        let message = String(error.message.split(separator: "\n").first ?? "")
        switch error.code {
        case .invalidTenantID: return AdminError(.badRequest, code: "invalid_tenant_id", message)
        case .invalidIdentifier, .invalidArgument: return AdminError(.badRequest, code: "invalid_argument", message)
        case .tenantNotFound: return AdminError(.notFound, code: "tenant_not_found", message)
        case .conflict: return AdminError(.conflict, code: "conflict", message)
        case .timeout: return AdminError(.gatewayTimeout, code: "timeout", message)
        case .catalogNotInitialized: return AdminError(.serviceUnavailable, code: "catalog_not_initialized", message)
        case .configuration: return AdminError(.serviceUnavailable, code: "not_configured", message)
        case .database, .connectionFailed: return AdminError(.serviceUnavailable, code: "database_unavailable", message)
        case .tenantMoved: return AdminError(.serviceUnavailable, code: "tenant_moved", message)
        default: return AdminError(.internalServerError, code: "internal", message)
        }
    }

    /// A client-facing description of a decoding error: which field, what was wrong.
    static func describe(_ error: DecodingError?) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "the body" : "field '\(keys.joined(separator: "."))'"
        }
        switch error {
        case .typeMismatch(let type, let context): return "\(path(context)) must be \(typeName(type))"
        case .valueNotFound(let type, let context): return "\(path(context)) must be \(typeName(type)), not null"
        case .keyNotFound(let key, _): return "field '\(key.stringValue)' is required"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "the body is not valid JSON" : "\(path(context)) is invalid: \(context.debugDescription)"
        default: return "the body is not valid JSON"
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "a boolean"
        case is String.Type: "a string"
        default: String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }
}
