import Foundation
import Hummingbird
import Tenantry

extension Console {
    /// `GET /console/login`: the form (the admin or viewer token, and a name for the audit log),
    /// with a double-submit CSRF token in a cookie of its own.
    func loginPage(_ request: Request, error: String? = nil, status: HTTPResponse.Status = .ok) -> Response {
        if error == nil, sessions.session(for: request) != nil { return ConsoleHTML.redirect("/console") }
        let token = ConsoleSessions.randomToken()
        let next = Self.safeNext(request.uri.queryParameters.get("next").map { String($0) })
        var body = "<section class=\"login\"><h1>Tenantry console</h1>"
        if let error { body += "<p class=\"error\">\(ConsoleHTML.escape(error))</p>" }
        body += """
            <form id="login" method="post" action="/console/login">
            <input type="hidden" name="csrf" value="\(token)">
            <input type="hidden" name="next" value="\(ConsoleHTML.escape(next))">
            <label>Token <input type="password" name="token" id="token" autocomplete="current-password" required autofocus></label>
            <label>Your name, for the audit log (optional) <input type="text" name="operator" id="operator" maxlength="40" pattern="[A-Za-z0-9._@\\-]*"></label>
            <button type="submit" id="login-submit">Log in</button>
            </form>
            <p class="hint">The admin token (TENANTRY_ADMIN_TOKEN) may act; the viewer token (TENANTRY_VIEWER_TOKEN) may only look.</p>
            </section>
            """
        var headers = HTTPFields()
        headers[.setCookie] = ConsoleSessions.setCookie(ConsoleSessions.loginCookieName, token, secure: secure(request), maxAge: 3600)
        return ConsoleHTML.response(ConsoleHTML.page(title: "Log in", session: nil, body: body), status: status, headers: headers)
    }

    /// `POST /console/login`: the form's CSRF token must match its cookie; the admin token starts
    /// an admin session, the viewer token a read-only one; anything else is refused (and audited).
    func login<Context: ActorRequestContext>(_ request: Request, _ context: Context) async throws -> Response {
        let form = try await ConsoleForm.read(request)
        guard let sent = form.first("csrf"), let cookie = ConsoleSessions.cookie(ConsoleSessions.loginCookieName, in: request),
              ConsoleSessions.constantTimeEqual(sent, cookie) else {
            throw ConsoleError(.forbidden, "the login form's CSRF token is missing or invalid: reload the login page")
        }
        let presented = (form.first("token") ?? "").trimmingCharacters(in: .whitespaces)
        let role: ConsoleSessions.Role
        if !presented.isEmpty, ConsoleSessions.constantTimeEqual(presented, configuration.adminToken) {
            role = .admin
        } else if !presented.isEmpty, let viewer = configuration.viewerToken, ConsoleSessions.constantTimeEqual(presented, viewer) {
            role = .viewer
        } else {
            // Audited and slowed, up to a rate: beyond it a flood of wrong tokens is answered 429
            // without touching the catalog.
            guard refusedLogins.take() else {
                throw ConsoleError(.tooManyRequests, "too many refused logins: wait a few seconds and try again")
            }
            try? await api.operations.catalog.audit(actor: "console:unknown", action: "console.login", outcome: .refused)
            try await Task.sleep(for: .milliseconds(300))  // slows guessing; the token has ≥ 16 characters anyway
            return loginPage(request, error: "The token is not valid.", status: .unauthorized)
        }
        let name = Self.operatorName(form.first("operator")) ?? role.rawValue
        let fingerprint = role == .admin ? adminFingerprint : "viewer"
        let actor = "console:\(name)@\(fingerprint)"
        let id = sessions.create(role: role, operator: name, actor: actor)
        try? await api.operations.catalog.audit(actor: actor, action: "console.login", outcome: .ok, detail: ["role": role.rawValue])
        var headers = HTTPFields()
        let secure = secure(request)
        headers.append(.init(name: .setCookie, value: ConsoleSessions.setCookie(ConsoleSessions.cookieName, id, secure: secure)))
        headers.append(.init(name: .setCookie, value: ConsoleSessions.setCookie(ConsoleSessions.loginCookieName, "", secure: secure, maxAge: 0)))
        return ConsoleHTML.redirect(Self.safeNext(form.first("next")), headers: headers)
    }

    /// `POST /console/logout` (with the session's CSRF token): ends the session.
    func logout(_ request: Request) async throws -> Response {
        let form = try await ConsoleForm.read(request)
        if let session = sessions.session(for: request) {
            try requireCSRF(form, session)
            sessions.end(request)
            try? await api.operations.catalog.audit(actor: session.actor, action: "console.logout", outcome: .ok)
        }
        var headers = HTTPFields()
        headers[.setCookie] = ConsoleSessions.setCookie(ConsoleSessions.cookieName, "", secure: secure(request), maxAge: 0)
        return ConsoleHTML.redirect("/console/login", headers: headers)
    }

    /// A form's CSRF token must be the session's (403 otherwise).
    func requireCSRF(_ form: ConsoleForm, _ session: ConsoleSessions.Session) throws {
        guard let sent = form.first("csrf"), ConsoleSessions.constantTimeEqual(sent, session.csrf) else {
            throw ConsoleError(.forbidden, "the CSRF token is missing or invalid: reload the page and try again")
        }
    }

    /// A path inside the console to go to after login; anything else (another host, `//…`) is `/console`.
    static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/console"), !next.hasPrefix("//"), !next.contains("\\"),
              next.allSatisfy({ $0.isASCII && !$0.isWhitespace }), !next.hasPrefix("/console/login") else { return "/console" }
        return next
    }

    /// The operator's name for the audit log: letters, digits, `._@-`, at most 40; `nil` otherwise.
    static func operatorName(_ text: String?) -> String? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty, text.count <= 40,
              text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._@-".contains($0)) }) else { return nil }
        return text
    }
}

/// A submitted `application/x-www-form-urlencoded` form: every value of every field, in order.
struct ConsoleForm: Sendable {
    var fields: [(name: String, value: String)]

    /// The form in `request`'s body (at most 64 KiB).
    static func read(_ request: Request) async throws -> ConsoleForm {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: AdminRequestContext.bodyLimit)
        } catch {
            throw ConsoleError(.contentTooLarge, "the form is larger than 64 KiB")
        }
        return ConsoleForm(String(buffer: buffer))
    }

    init(_ text: String) {
        fields = text.split(separator: "&").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(parts[0]) else { return nil }
            return (name, parts.count > 1 ? Self.decode(parts[1]) ?? "" : "")
        }
    }

    /// The first value of `name`.
    func first(_ name: String) -> String? { fields.first { $0.name == name }?.value }

    /// Every value of `name`.
    func all(_ name: String) -> [String] { fields.filter { $0.name == name }.map(\.value) }

    private static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }
}
