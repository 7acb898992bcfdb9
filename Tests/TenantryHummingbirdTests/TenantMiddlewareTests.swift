import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import TenantryHummingbird
import TenantryCore
import Testing

@Suite("tenant middleware: header, subdomain, path prefix, JWT claim; shop_id rejected or stripped")
struct TenantMiddlewareTests {
    static let secret = Array("middleware-test-secret-0123456789".utf8)

    /// An app whose handlers echo the tenant and the body they received.
    func withApp(
        _ configure: (inout TenantIdentification.Configuration) -> Void, _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        var configuration = TenantIdentification.Configuration(sources: [])
        configure(&configuration)
        let router = Router(context: TenantTestContext.self)
        router.add(middleware: JSONErrorMiddleware(bodyLimit: 64 * 1024))
        let middleware = try TenantMiddleware<TenantTestContext>(configuration: configuration) { id in ["1", "2", "7"].contains(id.rawValue) }
        let echo: @Sendable (Request, TenantTestContext) async throws -> String = { request, context in
            let body = try await request.body.collect(upTo: 1 << 20)
            return "\(context.tenant?.rawValue ?? "-")|\(String(buffer: body))"
        }
        for group in [router.group().add(middleware: middleware), router.group("shops/:shop").add(middleware: middleware)] {
            group.get("customers", use: echo)
            group.post("customers", use: echo)
        }
        try await Application(router: router).test(.router) { client in try await body(client) }
    }

    @Test("X-Tenant-ID header: found, missing 400, invalid 400, unknown 404")
    func header() async throws {
        try await withApp({ $0.sources = [.header()] }) { client in
            #expect(try await client.call(.get, "/customers", token: nil, headers: ["X-Tenant-ID": "7"]).text == "7|")
            let missing = try await client.call(.get, "/customers", token: nil)
            #expect(missing.status == .badRequest && missing.errorCode == "tenant_required")
            let invalid = try await client.call(.get, "/customers", token: nil, headers: ["X-Tenant-ID": "7; drop"])
            #expect(invalid.status == .badRequest && invalid.errorCode == "invalid_tenant_id")
            let unknown = try await client.call(.get, "/customers", token: nil, headers: ["X-Tenant-ID": "99"])
            #expect(unknown.status == .notFound && unknown.errorCode == "tenant_not_found")
        }
    }

    @Test("subdomain and path prefix; sources that disagree are refused")
    func subdomainAndPath() async throws {
        try await withApp({ $0.sources = [.subdomain(of: "shops.example.com"), .pathPrefix("/shops"), .header()] }) { client in
            #expect(try await client.call(.get, "/customers", token: nil, headers: ["Host": "2.shops.example.com:8081"]).text == "2|")
            #expect(try await client.call(.get, "/shops/1/customers", token: nil).text == "1|")
            let unrelatedHost = try await client.call(.get, "/customers", token: nil, headers: ["Host": "2.other.example.com"])
            #expect(unrelatedHost.errorCode == "tenant_required")
            let mismatch = try await client.call(.get, "/shops/1/customers", token: nil, headers: ["X-Tenant-ID": "2"])
            #expect(mismatch.status == .badRequest && mismatch.errorCode == "tenant_mismatch")
            let unknown = try await client.call(.get, "/shops/5/customers", token: nil)
            #expect(unknown.status == .notFound)
        }
    }

    @Test("JWT claim: signed token with exp gives the shop; forged, expired or unsigned tokens are 401")
    func jwt() async throws {
        try await withApp({ $0.sources = [.jwtClaim("shop_id"), .header()]; $0.jwtSecret = Self.secret }) { client in
            let exp = JSONValue.number(Date().timeIntervalSince1970 + 300)
            let token = try JWTVerifier.sign(["shop_id": .integer(2), "exp": exp], secret: Self.secret)
            #expect(try await client.call(.get, "/customers", token: token).text == "2|")
            let stringClaim = try JWTVerifier.sign(["shop_id": .string("7"), "exp": exp], secret: Self.secret)
            #expect(try await client.call(.get, "/customers", token: stringClaim).text == "7|")
            let expired = try JWTVerifier.sign(["shop_id": .integer(2), "exp": .integer(100)], secret: Self.secret)
            let answer = try await client.call(.get, "/customers", token: expired)
            #expect(answer.status == .unauthorized && answer.errorCode == "invalid_token")
            let forged = try JWTVerifier.sign(["shop_id": .integer(2), "exp": exp], secret: Array("attacker-secret".utf8))
            #expect(try await client.call(.get, "/customers", token: forged).status == .unauthorized)
            // A header naming another shop than the token is refused.
            let other = try await client.call(.get, "/customers", token: token, headers: ["X-Tenant-ID": "1"])
            #expect(other.errorCode == "tenant_mismatch")
            // With a JWT source, a header alone is not enough: the token is required.
            let headerOnly = try await client.call(.get, "/customers", token: nil, headers: ["X-Tenant-ID": "2"])
            #expect(headerOnly.status == .unauthorized && headerOnly.errorCode == "token_required", "\(headerOnly.text)")
            let basic = try await client.call(.get, "/customers", token: nil, headers: ["X-Tenant-ID": "2", "Authorization": "Basic eDp5"])
            #expect(basic.status == .unauthorized && basic.errorCode == "invalid_token")
        }
        try await withApp({
            $0.sources = [.jwtClaim("shop_id")]; $0.jwtSecret = Self.secret; $0.jwtAudience = "handyshop"; $0.jwtIssuer = "https://id.example"
        }) { client in
            let exp = JSONValue.number(Date().timeIntervalSince1970 + 300)
            let good = try JWTVerifier.sign(
                ["shop_id": .integer(2), "exp": exp, "aud": .array([.string("x"), .string("handyshop")]), "iss": .string("https://id.example")],
                secret: Self.secret)
            #expect(try await client.call(.get, "/customers", token: good).text == "2|")
            for claims: [String: JSONValue] in [
                ["shop_id": .integer(2), "exp": exp, "iss": .string("https://id.example")],
                ["shop_id": .integer(2), "exp": exp, "aud": .string("other"), "iss": .string("https://id.example")],
                ["shop_id": .integer(2), "exp": exp, "aud": .string("handyshop")],
                ["shop_id": .integer(2), "exp": exp, "aud": .string("handyshop"), "iss": .string("https://evil.example")],
            ] {
                let answer = try await client.call(.get, "/customers", token: try JWTVerifier.sign(claims, secret: Self.secret))
                #expect(answer.status == .unauthorized && answer.errorCode == "invalid_token", "\(claims): \(answer.text)")
            }
        }
    }

    @Test("shop_id in a JSON body: rejected by default, stripped when configured")
    func shopIDInBody() async throws {
        try await withApp({ $0.sources = [.header()] }) { client in
            let rejected = try await client.call(
                .post, "/customers", token: nil, body: #"{"first_name": "Ada", "shop_id": 2}"#, headers: ["X-Tenant-ID": "1"])
            #expect(rejected.status == .badRequest && rejected.errorCode == "discriminator_not_allowed", "\(rejected.text)")
            let inArray = try await client.call(.post, "/customers", token: nil, body: #"[{"shop_id": 2}]"#, headers: ["X-Tenant-ID": "1"])
            #expect(inArray.errorCode == "discriminator_not_allowed")
            let clean = try await client.call(.post, "/customers", token: nil, body: #"{"first_name": "Ada"}"#, headers: ["X-Tenant-ID": "1"])
            #expect(clean.text == #"1|{"first_name": "Ada"}"#)
        }
        try await withApp({ $0.sources = [.header()]; $0.discriminatorPolicy = .strip }) { client in
            let stripped = try await client.call(
                .post, "/customers", token: nil, body: #"{"first_name": "Ada", "shop_id": 2}"#, headers: ["X-Tenant-ID": "1"])
            #expect(stripped.status == .ok)
            #expect(stripped.text == #"1|{"first_name":"Ada"}"#, "\(stripped.text)")
        }
    }
}

/// A host application's own request context: all ``TenantMiddleware`` needs is a `tenant`.
struct TenantTestContext: TenantRequestContext {
    var coreContext: CoreRequestContextStorage
    var tenant: TenantID?

    init(source: Source) {
        self.coreContext = .init(source: source)
    }
}
