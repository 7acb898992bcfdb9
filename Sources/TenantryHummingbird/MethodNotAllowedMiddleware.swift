import Foundation
import Hummingbird

/// Answers 405 `method_not_allowed`, with `Allow` listing the declared methods, for a request to a
/// path the OpenAPI document declares with a method it does not declare for it (the router alone
/// would say 404, as if the path did not exist). The document is the list: a method is allowed
/// exactly when the document says so.
public struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    /// A declared path: its segments (`nil` for a `{parameter}`) and its methods, upper case.
    struct Route: Sendable {
        var segments: [String?]
        var methods: [String]
    }

    let routes: [Route]

    /// A middleware over the paths of the OpenAPI document `document` (JSON text); default: the
    /// admin API's own (``OpenAPIDocument``; none when it is not installed: every path passes).
    public init(document: String? = OpenAPIDocument.json) {
        let object = document.flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }?.object
        let verbs: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
        var routes: [Route] = []
        for (path, item) in object?["paths"]?.object ?? [:] {
            let segments = path.split(separator: "/").map { $0.hasPrefix("{") ? nil : String($0) }
            let methods = (item.object ?? [:]).keys.filter(verbs.contains).map { $0.uppercased() }.sorted()
            routes.append(Route(segments: segments, methods: methods))
        }
        self.routes = routes
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let segments = request.uri.path.split(separator: "/")
        let matching = routes.filter { route in
            route.segments.count == segments.count
                && zip(route.segments, segments).allSatisfy { declared, given in declared.map { $0 == given } ?? !given.isEmpty }
        }
        let allowed = Set(matching.flatMap(\.methods))
        guard !matching.isEmpty, !allowed.contains(request.method.rawValue) else { return try await next(request, context) }
        let list = allowed.sorted().joined(separator: ", ")
        var response = try AdminError(.methodNotAllowed, code: "method_not_allowed", "\(request.method.rawValue.prefix(20)) is not allowed here (allowed: \(list))")
            .response(from: request, context: context)
        response.headers[.allow] = list
        return response
    }
}
