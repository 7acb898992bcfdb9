import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("console security: login, session cookie, CSRF, CSP, viewer, expiry, no secrets", .timeLimit(.minutes(3)))
struct ConsoleSecurityTests {
    @Test("no session → login; wrong token or no CSRF refused and audited; the cookie is HttpOnly, SameSite=Strict, Secure behind HTTPS")
    func login() async throws {
        let fixture = try await AdminFixture.make(shops: 2, rowsPerShop: 10)
        try await fixture.withConsole { client, _ in
            // Without a session a page sends the browser to the login form; the live channel says 401.
            let anonymous = try await client.browse(.get, "/console")
            #expect(anonymous.status == .seeOther && anonymous.headers[.location]?.hasPrefix("/console/login") == true, "\(anonymous.status)")
            let events = try await client.browse(.get, "/console/events")
            #expect(events.status == .ok && events.text.contains("event: expired"), "the page is told to log in: \(events.text)")
            #expect(try await client.browse(.get, "/console/tenants/1").status == .seeOther)

            let page = try await client.browse(.get, "/console/login")
            #expect(page.status == .ok && page.text.contains("id=\"login\"") && page.text.contains("name=\"token\""))
            let csp = try #require(page.headers[.contentSecurityPolicy])
            #expect(csp.contains("script-src 'self'") && csp.contains("default-src 'none'") && !csp.contains("unsafe-inline")
                    && csp.contains("frame-ancestors 'none'"), "\(csp)")
            #expect(page.headers[.xContentTypeOptions] == "nosniff" && page.headers[.cacheControl] == "no-store")
            #expect(!page.text.contains("<script>") && !page.text.contains("style=\""), "no inline script or style")
            let loginCookie = try #require(page.setCookies.first)
            #expect(loginCookie.contains("HttpOnly") && loginCookie.contains("SameSite=Strict") && !loginCookie.contains("Secure"), "\(loginCookie)")
            let pair = String(loginCookie.split(separator: ";")[0])
            let csrf = try #require(page.hiddenValue("csrf"))

            // The form's CSRF token must match its cookie.
            let forged = try await client.browse(.post, "/console/login", form: [("csrf", csrf), ("token", AdminFixture.token)])
            #expect(forged.status == .forbidden && forged.text.contains("CSRF"), "\(forged.status)")
            #expect(forged.setCookies.allSatisfy { !$0.hasPrefix("tenantry_console=") })

            let wrong = try await client.browse(.post, "/console/login", cookie: pair, form: [("csrf", csrf), ("token", "not-the-token-at-all")])
            #expect(wrong.status == .unauthorized && wrong.text.contains("class=\"error\""), "\(wrong.status)")
            #expect(wrong.setCookies.allSatisfy { !$0.hasPrefix("tenantry_console=") })
            #expect(!wrong.text.contains("not-the-token-at-all"), "the presented token is not echoed")

            // Behind a TLS proxy the session cookie is Secure.
            let answer = try await client.browse(
                .post, "/console/login", cookie: pair, form: [("csrf", csrf), ("token", AdminFixture.token), ("operator", "bob")],
                headers: ["X-Forwarded-Proto": "https"])
            #expect(answer.status == .seeOther && answer.headers[.location] == "/console")
            let session = try #require(answer.setCookies.first { $0.hasPrefix("tenantry_console=") })
            #expect(session.contains("HttpOnly") && session.contains("SameSite=Strict") && session.contains("Secure")
                    && session.contains("Path=/console"), "\(session)")

            let refused = try await fixture.audit(action: "console.login")
            #expect(refused.contains { $0.outcome == .refused && $0.actor == "console:unknown" })
            #expect(refused.contains { $0.outcome == .ok && $0.actor.hasPrefix("console:bob@") })
        }
    }

    @Test("an action without or with a wrong CSRF token is refused 403 and starts nothing; a viewer may look, not act; logout ends it")
    func csrfAndViewer() async throws {
        let fixture = try await AdminFixture.make(shops: 2, rowsPerShop: 10)
        try await fixture.withConsole { client, console in
            let provision = try await client.runJob("provision-all", body: #"{"all": true}"#)
            try #require(provision.job["state"] as? String == "succeeded", "\(provision.job)")
            let admin = try await client.logIn()
            for form in [[("tenants", "1")], [("tenants", "1"), ("csrf", "forged"), ("confirm", "yes")]] {
                let answer = try await client.browse(.post, "/console/actions/verify", cookie: admin.cookie, form: form)
                #expect(answer.status == .forbidden && answer.text.contains("CSRF token is missing or invalid"), "\(answer.status) \(answer.text)")
                #expect(answer.headers[.contentSecurityPolicy] != nil)
            }
            // Another session's token does not do either.
            let other = try await client.logIn(operator: "carol")
            let crossed = try await client.browse(
                .post, "/console/actions/verify", cookie: admin.cookie, form: [("csrf", other.csrf), ("tenants", "1"), ("confirm", "yes")])
            #expect(crossed.status == .forbidden)
            #expect((try await client.call(.get, "/api/superadmin/jobs").json["jobs"] as? [Any])?.count == 1, "no job but provision-all")

            // Bad input: an invalid id, an unknown tenant, an unknown action: one clear page each.
            let bad = try await client.browse(.post, "/console/actions/verify", cookie: admin.cookie, form: [("csrf", admin.csrf), ("tenants", "1;drop")])
            #expect(bad.status == .badRequest && bad.text.contains("class=\"error\""), "\(bad.status)")
            let unknown = try await client.browse(.post, "/console/actions/verify", cookie: admin.cookie, form: [("csrf", admin.csrf), ("tenants", "99")])
            #expect(unknown.status == .notFound && unknown.text.contains("tenant 99 is not in the catalog"), "\(unknown.text)")
            let action = try await client.browse(.post, "/console/actions/drop-everything", cookie: admin.cookie, form: [("csrf", admin.csrf), ("tenants", "1")])
            #expect(action.status == .notFound)
            #expect(try await client.browse(.get, "/console/tenants/..%2Fa", cookie: admin.cookie).status == .badRequest)

            // A viewer sees the pages, without action forms, and may not act.
            let viewer = try await client.logIn(AdminFixture.viewerToken, operator: "dave")
            let fleet = try await client.browse(.get, "/console", cookie: viewer.cookie)
            #expect(fleet.status == .ok && fleet.text.contains("id=\"tenants\"") && !fleet.text.contains("/console/actions/"))
            let acted = try await client.browse(
                .post, "/console/actions/verify", cookie: viewer.cookie, form: [("csrf", viewer.csrf), ("tenants", "1"), ("confirm", "yes")])
            #expect(acted.status == .forbidden && acted.text.contains("read-only"), "\(acted.status)")

            // No secret in any page.
            let secrets = [AdminFixture.token, AdminFixture.viewerToken, fixture.url.password ?? "\u{0}"]
            for path in ["/console", "/console/tenants/1", "/console/performance", "/console/jobs", "/console/login"] {
                let answer = try await client.browse(.get, path, cookie: admin.cookie)
                #expect(answer.status == .ok || answer.status == .seeOther, "\(path): \(answer.status)")
                for secret in secrets where !secret.isEmpty { #expect(!answer.text.contains(secret), "\(path) shows a secret") }
            }
            #expect(console.sessions.count == 3)

            // Logout (with the CSRF token) ends the session.
            let out = try await client.browse(.post, "/console/logout", cookie: admin.cookie, form: [("csrf", admin.csrf)])
            #expect(out.status == .seeOther)
            #expect(try await client.browse(.get, "/console", cookie: admin.cookie).status == .seeOther)
        }
    }

    @Test("a session ends after its idle timeout (pages send the browser to the login, the live channel says 401)")
    func expiry() async throws {
        let fixture = try await AdminFixture.make(shops: 1, rowsPerShop: 10)
        try await fixture.withConsole({ $0.idleTimeout = 2 }) { client, console in
            _ = try await client.logIn()  // it loaded the fleet page with its new session
            #expect(console.sessions.count == 1)
            try await Task.sleep(for: .milliseconds(2_500))
            let admin = try await client.logIn()
            let stale = ConsoleBrowser(cookie: "tenantry_console=" + String(repeating: "x", count: 43), csrf: admin.csrf)
            #expect(try await client.browse(.get, "/console", cookie: stale.cookie).status == .seeOther)
            // The first session, idle past its timeout, is gone: only the new one is left.
            #expect(console.sessions.count == 1)
            try await Task.sleep(for: .milliseconds(2_500))
            let expired = try await client.browse(.get, "/console", cookie: admin.cookie)
            #expect(expired.status == .seeOther && expired.headers[.location]?.hasPrefix("/console/login") == true)
            #expect(try await client.browse(.get, "/console/events", cookie: admin.cookie).text.contains("event: expired"))
        }
    }
}

@Suite("console limits: refused logins, live pages per session, sessions per role, connection URLs")
struct ConsoleLimitTests {
    @Test("a flood of wrong tokens: at most 10 refusals at once are audited and slowed, the rest answered 429")
    func refusedLogins() async throws {
        let fixture = try await AdminFixture.make(shops: 1, rowsPerShop: 10)
        try await fixture.withConsole { client, _ in
            let page = try await client.browse(.get, "/console/login")
            let pair = String(try #require(page.setCookies.first).split(separator: ";")[0])
            let csrf = try #require(page.hiddenValue("csrf"))
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<16 {
                    group.addTask {
                        try await client.browse(.post, "/console/login", cookie: pair, form: [("csrf", csrf), ("token", "wrong-token-wrong-token")]).status
                    }
                }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            let refused = statuses.filter { $0 == .unauthorized }.count, limited = statuses.filter { $0 == .tooManyRequests }.count
            #expect(refused + limited == 16 && (10...12).contains(refused) && limited >= 4, "\(statuses)")
            #expect((10...12).contains(try await fixture.audit(action: "console.login").count))
            // The admin token still logs in.
            _ = try await client.logIn()
        }
    }

    @Test("at most 8 live pages per session; a viewer's logins never end an admin's session")
    func streamsAndSessions() async throws {
        let fixture = try await AdminFixture.make(shops: 1, rowsPerShop: 10)
        try await fixture.withConsole { client, _ in
            let admin = try await client.logIn()
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<10 { group.addTask { try await client.browse(.get, "/console/events", cookie: admin.cookie).status } }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .ok }.count == 8 && statuses.filter { $0 == .tooManyRequests }.count == 2, "\(statuses)")
            // All ended: the session may open live pages again.
            #expect(try await client.browse(.get, "/console/events", cookie: admin.cookie).status == .ok)
        }

        let sessions = ConsoleSessions(idleTimeout: 60, maximumAge: 600, capacity: 2)
        _ = sessions.create(role: .admin, operator: "a", actor: "console:a")
        for index in 0..<5 { _ = sessions.create(role: .viewer, operator: "v\(index)", actor: "console:v") }
        #expect(sessions.count == 3, "two viewers and the admin")
    }

    @Test("connection URLs are replaced before a page shows an error")
    func sanitize() {
        let text = "cannot connect to postgres://tenantry_admin:***@10.0.3.7:5432/tenant_7: connection refused; postgresql://u@h/db, x"
        #expect(ConsoleHTML.sanitize(text) == "cannot connect to postgres://…: connection refused; postgres://…, x")
        #expect(ConsoleHTML.message("<b>postgres://a@b/c</b>") == "&lt;b&gt;postgres://…&lt;/b&gt;")
    }
}

extension AdminFixture {
    /// The audit entries of `action`, newest first.
    func audit(action: String) async throws -> [AuditEntry] {
        try await Catalog.withCatalog(url, logger: Self.logger) { catalog in
            try await catalog.auditLog(limit: 500).filter { $0.action == action }
        }
    }
}
