import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

extension AdminFixture {
    static let viewerToken = "test-viewer-token-9876543210"

    /// Runs `body` with a client of `tenantry serve`'s router: the admin API and the console.
    func withConsole<T: Sendable>(
        _ adjust: @escaping @Sendable (inout Console.Configuration) -> Void = { _ in },
        _ body: @escaping @Sendable (any TestClientProtocol, Console) async throws -> T
    ) async throws -> T {
        let configuration = configuration, directory = directory
        return try await Operations.with(configuration: configuration, databaseURL: url, actor: "test", logger: Self.logger) { operations in
            var settings = AdminAPI.Configuration(token: Self.token)
            settings.archiveDirectory = directory + "/archives"
            let api = AdminAPI(
                configuration: settings, operations: operations, metrics: nil,
                monitor: PerformanceMonitor(configuration: .init(configuration.monitor)), logger: Self.logger)
            var consoleSettings = Console.Configuration(adminToken: Self.token, viewerToken: Self.viewerToken)
            consoleSettings.streamLifetime = 2.5
            adjust(&consoleSettings)
            let console = Console(configuration: consoleSettings, api: api)
            let app = Application(router: api.makeRouter(console: console), services: [api.jobs], logger: Self.logger)
            return try await app.test(.router) { client in try await body(client, console) }
        }
    }
}

/// A browser's session with the console: its cookie and CSRF token.
struct ConsoleBrowser: Sendable {
    var cookie: String
    var csrf: String
}

extension TestClientProtocol {
    /// A request as a browser sends it: `cookie` and, for a form, `application/x-www-form-urlencoded`.
    func browse(
        _ method: HTTPRequest.Method, _ uri: String, cookie: String? = nil, form: [(String, String)]? = nil,
        headers extra: [String: String] = [:]
    ) async throws -> Answer {
        var headers = HTTPFields()
        if let cookie { headers[.cookie] = cookie }
        var body: ByteBuffer?
        if let form {
            headers[.contentType] = "application/x-www-form-urlencoded"
            let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
            body = ByteBuffer(string: form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&"))
        }
        for (name, value) in extra { if let field = HTTPField.Name(name) { headers[field] = value } }
        return try await execute(uri: uri, method: method, headers: headers, body: body) { response in
            Answer(status: response.status, headers: response.headers, text: String(buffer: response.body))
        }
    }

    /// Logs in with `token` (as the form does: its CSRF cookie and field), returns the session.
    func logIn(_ token: String = AdminFixture.token, operator name: String = "alice") async throws -> ConsoleBrowser {
        let page = try await browse(.get, "/console/login")
        let loginCookie = try #require(page.setCookies.first { $0.hasPrefix("tenantry_console_login=") })
        let pair = String(loginCookie.split(separator: ";")[0])
        let csrf = try #require(page.hiddenValue("csrf"))
        let answer = try await browse(.post, "/console/login", cookie: pair, form: [("csrf", csrf), ("token", token), ("operator", name)])
        try #require(answer.status == .seeOther, "\(answer.status) \(answer.text)")
        let session = try #require(answer.setCookies.first { $0.hasPrefix("tenantry_console=") })
        let cookie = String(session.split(separator: ";")[0])
        let fleet = try await browse(.get, "/console", cookie: cookie)
        try #require(fleet.status == .ok, "\(fleet.status) \(fleet.text)")
        return ConsoleBrowser(cookie: cookie, csrf: try #require(fleet.hiddenValue("csrf")))
    }

    /// Runs a console action through its confirmation; returns the job id it went to.
    func runAction(_ name: String, tenants: [String], as browser: ConsoleBrowser, extra: [(String, String)] = []) async throws -> String {
        let fields = [("csrf", browser.csrf)] + tenants.map { ("tenants", $0) } + extra
        let confirm = try await browse(.post, "/console/actions/\(name)", cookie: browser.cookie, form: fields)
        try #require(confirm.status == .ok && confirm.text.contains("id=\"confirm\""), "\(confirm.status) \(confirm.text)")
        let done = try await browse(.post, "/console/actions/\(name)", cookie: browser.cookie, form: fields + [("confirm", "yes")])
        try #require(done.status == .seeOther, "\(done.status) \(done.text)")
        let location = try #require(done.headers[.location])
        try #require(location.hasPrefix("/console/jobs/"))
        return String(location.dropFirst("/console/jobs/".count))
    }
}

extension Answer {
    /// Every `Set-Cookie` value.
    var setCookies: [String] { headers[values: .setCookie] }

    /// The value of the first hidden input named `name`.
    func hiddenValue(_ name: String) -> String? {
        guard let range = text.range(of: "name=\"\(name)\" value=\"") else { return nil }
        return String(text[range.upperBound...].prefix { $0 != "\"" })
    }

    /// The text of the element with `id` (up to its first `<`).
    func element(_ id: String) -> String? {
        guard let start = text.range(of: "id=\"\(id)\"") else { return nil }
        guard let close = text[start.upperBound...].firstIndex(of: ">") else { return nil }
        return String(text[text.index(after: close)...].prefix { $0 != "<" })
    }
}
