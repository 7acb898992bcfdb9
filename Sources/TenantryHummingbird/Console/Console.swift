import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import Tenantry
import TenantryCore

/// The operator's console at `/console`: server-rendered pages of the fleet, a tenant, jobs and
/// performance, live over server-sent events, with actions that run as the admin API's jobs.
///
/// Security: a login with the admin token (or the read-only viewer token) starts a session
/// (cookie `HttpOnly`, `SameSite=Strict`, `Secure` when served over HTTPS); every POST carries
/// the session's CSRF token; every response has a strict Content-Security-Policy (scripts and
/// styles from Tenantry only, no inline code, no frames); no token, password or URL is ever
/// rendered; sessions expire after ``Configuration/idleTimeout`` idle and ``Configuration/maximumAge``.
public struct Console: Sendable {
    /// Console settings.
    public struct Configuration: Sendable {
        /// The admin token (`TENANTRY_ADMIN_TOKEN`): logs in with every right.
        public var adminToken: String
        /// The viewer token (`TENANTRY_VIEWER_TOKEN`): logs in read-only (no actions).
        public var viewerToken: String?
        /// A session ends after this long without a request (default 30 minutes).
        public var idleTimeout: TimeInterval = 30 * 60
        /// A session ends this long after login, used or not (default 12 hours).
        public var maximumAge: TimeInterval = 12 * 3600
        /// Always mark cookies `Secure` (behind a TLS-terminating proxy that does not send
        /// `X-Forwarded-Proto: https`).
        public var secureCookies = false
        /// How often the fleet is read for pages and live updates, at most (default 1 s).
        public var refreshInterval: TimeInterval = 1
        /// How long one live (server-sent events) response lasts before the browser reconnects.
        public var streamLifetime: TimeInterval = 60

        /// Settings with the admin token.
        public init(adminToken: String, viewerToken: String? = nil) {
            self.adminToken = adminToken
            self.viewerToken = viewerToken
        }
    }

    /// The settings.
    public let configuration: Configuration
    let api: AdminAPI
    let sessions: ConsoleSessions
    let cache: ConsoleFleetCache
    let adminFingerprint: String
    /// The fleet's live values of the last fleet read (``fleetValues()``).
    let liveCache = NIOLockedValueBox<(at: Date, values: [String: String])?>(nil)
    /// Refused logins: at most 10 at once, one more a second (beyond: 429, not audited).
    let refusedLogins = ConsoleRateLimiter(capacity: 10, perSecond: 1)

    /// A console over `api` (its operations, jobs, monitor and relay).
    public init(configuration: Configuration, api: AdminAPI) {
        self.configuration = configuration
        self.api = api
        self.sessions = ConsoleSessions(idleTimeout: configuration.idleTimeout, maximumAge: configuration.maximumAge)
        self.cache = ConsoleFleetCache(operations: api.operations, relay: api.relay, interval: configuration.refreshInterval)
        self.adminFingerprint = BearerTokenMiddleware<AdminRequestContext>.fingerprint(of: configuration.adminToken)
    }

    /// Catalog queries the console has made so far (one per fleet read), for tests and benchmarks.
    public func catalogQueries() async -> Int { await cache.catalogQueries }

    /// The console's routes, to mount at `/console`.
    public func routes<Context: ActorRequestContext>(context: Context.Type = Context.self) -> RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.add(middleware: ConsoleSecurityMiddleware<Context>())
        routes.get("assets/console.js") { _, _ in ConsoleAssets.response(ConsoleAssets.script, type: "text/javascript; charset=utf-8") }
        routes.get("assets/console.css") { _, _ in ConsoleAssets.response(ConsoleAssets.style, type: "text/css; charset=utf-8") }
        routes.get("login") { request, _ in loginPage(request) }
        routes.post("login") { request, context in try await login(request, context) }
        routes.post("logout") { request, _ in try await logout(request) }
        routes.get("") { request, _ in try await withSession(request) { try await fleetPage($0, request) } }
        routes.get("tenants/:id") { request, context in
            try await withSession(request) { try await tenantPage($0, id: context.parameters.get("id") ?? "") }
        }
        routes.get("jobs") { request, _ in try await withSession(request) { jobsPage($0) } }
        routes.get("jobs/:id") { request, context in
            try await withSession(request) { try jobPage($0, id: context.parameters.get("id") ?? "") }
        }
        routes.get("performance") { request, _ in try await withSession(request) { performancePage($0) } }
        routes.get("events") { request, _ in
            // Not through withSession: the live channel must not keep a session alive, and a page
            // whose session ended is told so by an event (a 401 would only make EventSource give up).
            guard let session = sessions.session(for: request, touch: false) else { return Self.expiredStream() }
            return try events(session, request)
        }
        routes.post("actions/:name") { request, context in
            try await action(request, name: context.parameters.get("name") ?? "", context: context)
        }
        return routes
    }

    /// Runs `body` with the request's session; without one, a browser is sent to the login page
    /// (and a script's request gets 401).
    func withSession(_ request: Request, _ body: (ConsoleSessions.Session) async throws -> Response) async throws -> Response {
        guard let session = sessions.session(for: request) else {
            return ConsoleHTML.redirect("/console/login?next=" + (request.uri.path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""))
        }
        return try await body(session)
    }

    /// The fleet as pages and live channels show it: the shared read of the last second, or a new
    /// one when a job ended since.
    func fleet() async throws -> ConsoleFleet {
        try await cache.fleet(after: api.jobs.all().lazy.compactMap(\.finishedAt).max())
    }

    /// Whether responses to `request` should set `Secure` cookies.
    func secure(_ request: Request) -> Bool {
        configuration.secureCookies || request.headers[.init("X-Forwarded-Proto")!]?.lowercased() == "https"
            || request.uri.scheme == .https
    }
}

/// A token bucket: `capacity` at once, refilled `perSecond`.
final class ConsoleRateLimiter: Sendable {
    private let state: NIOLockedValueBox<(tokens: Double, at: ContinuousClock.Instant)>
    let capacity: Double
    let perSecond: Double

    init(capacity: Double, perSecond: Double) {
        self.capacity = capacity
        self.perSecond = perSecond
        self.state = NIOLockedValueBox((capacity, .now))
    }

    /// Takes one token if there is one.
    func take() -> Bool {
        state.withLockedValue { state in
            let now = ContinuousClock.now
            state.tokens = min(capacity, state.tokens + (now - state.at).totalSeconds * perSecond)
            state.at = now
            guard state.tokens >= 1 else { return false }
            state.tokens -= 1
            return true
        }
    }
}

/// An error the console shows as a page (with `status`), never as JSON.
struct ConsoleError: Error {
    var status: HTTPResponse.Status
    var message: String

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }
}

/// Security headers on every console response, and errors as an HTML page: the
/// Content-Security-Policy allows scripts, styles, images and connections from Tenantry itself
/// only (no inline script or style, no frames, forms post only here), and nothing is cached.
struct ConsoleSecurityMiddleware<Context: RequestContext>: RouterMiddleware {
    static var policy: String {
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as ConsoleError {
            response = Self.errorPage(error.status, error.message)
        } catch let error as HTTPError where error.status == .notFound {
            response = Self.errorPage(.notFound, "no such page")
        } catch {
            let mapped = AdminError.from(error, bodyLimit: AdminRequestContext.bodyLimit)
            if mapped.status.code >= 500 {
                context.logger.error("console request failed", metadata: [
                    "http.path": "\(request.uri.path)", "error.code": "\(mapped.code)", "error": "\(Database.oneLine(error))"])
            }
            response = Self.errorPage(mapped.status, mapped.message)
        }
        response.headers[.contentSecurityPolicy] = Self.policy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.init("X-Frame-Options")!] = "DENY"
        response.headers[.init("Referrer-Policy")!] = "no-referrer"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }

    static func errorPage(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let body = "<h1>\(status.code) \(ConsoleHTML.escape(status.reasonPhrase))</h1><p class=\"error\">\(ConsoleHTML.message(message))</p>"
            + "<p><a href=\"/console\">Back to the fleet</a></p>"
        return ConsoleHTML.response(ConsoleHTML.page(title: "\(status.code)", session: nil, body: body), status: status)
    }
}
