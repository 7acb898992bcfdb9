import Hummingbird
import Logging
import Tenantry

/// Turns every error into a JSON error response (``AdminError``), refuses bodies whose declared
/// length is over the limit (413) before any handler reads them, and logs server-side failures
/// (5xx) without secrets: only the error's safe message.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The body limit, in bytes.
    public let bodyLimit: Int

    /// A middleware with `bodyLimit` bytes as the largest body.
    public init(bodyLimit: Int) {
        self.bodyLimit = bodyLimit
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > bodyLimit {
            return try AdminError.payloadTooLarge(bodyLimit).response(from: request, context: context)
        }
        do {
            return try await next(request, context)
        } catch {
            let mapped = AdminError.from(error, bodyLimit: bodyLimit)
            if mapped.status.code >= 500 {
                context.logger.error("request failed", metadata: [
                    "http.path": "\(request.uri.path)", "http.status": "\(mapped.status.code)",
                    "error": "\(Database.oneLine(error))"])
            }
            return try mapped.response(from: request, context: context)
        }
    }
}
