import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import TenantryCore

/// A request context that carries the tenant the ``TenantMiddleware`` identified.
public protocol TenantRequestContext: RequestContext {
    /// The request's tenant, once identified.
    var tenant: TenantID? { get set }
}

/// Identifies the tenant of a request (the seeds' tenant resolution for web apps) from the
/// configured sources — the `X-Tenant-ID` header, a subdomain, a path prefix, a claim of an HS256
/// JWT — and refuses the request when it cannot. With a JWT source the token is the identity: a
/// request without a valid token is 401 (`token_required`, `invalid_token`) whatever else it
/// sends, and the other sources may only agree with the claim. No tenant → 400 `tenant_required`, an invalid id
/// → 400 `invalid_tenant_id`, sources that disagree → 400 `tenant_mismatch`, a bad or expired token
/// → 401 `invalid_token`, an unknown tenant → 404 `tenant_not_found`. A `shop_id` (the
/// discriminator) in a JSON body is rejected (400 `discriminator_not_allowed`) or stripped: the tenant
/// comes from the request's identity, never from its payload (the seeds' API sanitization).
public struct TenantMiddleware<Context: TenantRequestContext>: RouterMiddleware {
    /// Where a request names its tenant.
    public typealias Source = TenantIdentification.Source
    /// What to do with a client-sent discriminator.
    public typealias DiscriminatorPolicy = TenantIdentification.DiscriminatorPolicy
    /// Middleware settings.
    public typealias Configuration = TenantIdentification.Configuration

    /// The settings.
    public let configuration: Configuration
    private let exists: @Sendable (TenantID) async throws -> Bool
    private let verifier: JWTVerifier?
    private let known = NIOLockedValueBox([TenantID: ContinuousClock.Instant]())

    /// A middleware; `exists` says whether a tenant is known (e.g. in the catalog). Positive
    /// answers are cached for ``Configuration/knownTenantTTL``. Throws a `configuration` error when
    /// a JWT secret is shorter than 32 bytes, or a JWT source and a secret do not come together.
    public init(configuration: Configuration, exists: @escaping @Sendable (TenantID) async throws -> Bool) throws(TenantryError) {
        let jwtSources = configuration.sources.filter { if case .jwtClaim = $0.base { true } else { false } }
        if let secret = configuration.jwtSecret {
            guard jwtSources.count == 1 else {
                throw TenantryError(code: .configuration, message: "a JWT secret needs exactly one JWT claim source (the token names the tenant)")
            }
            do {
                self.verifier = try JWTVerifier(secret: secret, audience: configuration.jwtAudience, issuer: configuration.jwtIssuer)
            } catch {
                throw TenantryError(code: .configuration, message: error.description)
            }
        } else {
            guard jwtSources.isEmpty else { throw TenantryError(code: .configuration, message: "a JWT claim source needs a JWT secret") }
            self.verifier = nil
        }
        self.configuration = configuration
        self.exists = exists
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let tenant = try resolve(request)
        try await requireKnown(tenant)
        var request = request
        try await sanitizeBody(&request)
        var context = context
        context.tenant = tenant
        context.logger[metadataKey: LogMetadataKey.tenant] = "\(tenant)"
        return try await next(request, context)
    }

    /// The tenant named by the request's sources; all sources that name one must agree. With a
    /// JWT source the token is required and comes first: the others may only agree with it.
    func resolve(_ request: Request) throws -> TenantID {
        var found: [(source: String, value: String)] = []
        for source in configuration.sources {
            let value = try candidate(source, request)
            guard case .jwtClaim = source.base else {
                if let value { found.append((source.name, value)) }
                continue
            }
            guard let value else {
                throw AdminError(.unauthorized, code: "token_required", "a bearer token is required (Authorization: Bearer <JWT>)")
            }
            found.insert((source.name, value), at: 0)
        }
        guard let first = found.first else {
            let names = configuration.sources.map(\.name).joined(separator: ", ")
            throw AdminError(.badRequest, code: "tenant_required", "no tenant in the request (looked at: \(names))")
        }
        if let other = found.first(where: { $0.value != first.value }) {
            throw AdminError(.badRequest, code: "tenant_mismatch", "the \(first.source) and the \(other.source) name different tenants")
        }
        do {
            return try TenantID(first.value)
        } catch {
            throw AdminError(.badRequest, code: "invalid_tenant_id", error.message)
        }
    }

    private func candidate(_ source: Source, _ request: Request) throws -> String? {
        switch source.base {
        case .header(let name):
            guard let field = HTTPField.Name(name) else { return nil }
            return request.headers[field]?.trimmingCharacters(in: .whitespaces)
        case .subdomain(let domain):
            guard let host = HTTPField.Name("Host").flatMap({ request.headers[$0] }) ?? request.head.authority else { return nil }
            let hostname = String(host.split(separator: ":").first ?? "").lowercased()
            let suffix = "." + domain.lowercased()
            guard hostname.hasSuffix(suffix), hostname.count > suffix.count else { return nil }
            let label = String(hostname.dropLast(suffix.count))
            return label.contains(".") ? nil : label
        case .pathPrefix(let prefix):
            let path = request.uri.path
            guard path.hasPrefix(prefix + "/") else { return nil }
            return path.dropFirst(prefix.count + 1).split(separator: "/", omittingEmptySubsequences: false).first.map(String.init)
        case .jwtClaim(let claim):
            guard let header = request.headers[.authorization] else { return nil }
            guard header.lowercased().hasPrefix("bearer "), let verifier else {
                throw AdminError(.unauthorized, code: "invalid_token", "the Authorization header must be 'Bearer <JWT>'")
            }
            let claims: [String: JSONValue]
            do {
                claims = try verifier.verify(String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces))
            } catch {
                throw AdminError(.unauthorized, code: "invalid_token", error.description)
            }
            switch claims[claim] {
            case .string(let value): return value
            case .integer(let value): return String(value)
            case nil, .null: throw AdminError(.unauthorized, code: "invalid_token", "the token has no '\(claim)' claim")
            default: throw AdminError(.unauthorized, code: "invalid_token", "the token's '\(claim)' claim must be a string or an integer")
            }
        }
    }

    private func requireKnown(_ tenant: TenantID) async throws {
        let now = ContinuousClock.now
        if let until = known.withLockedValue({ $0[tenant] }), until > now { return }
        guard try await exists(tenant) else { throw AdminError.tenantNotFound(tenant) }
        known.withLockedValue { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[tenant] = now + configuration.knownTenantTTL
        }
    }

    /// Rejects or strips the discriminator in a JSON body (top-level object, or objects of a
    /// top-level array).
    private func sanitizeBody(_ request: inout Request) async throws {
        guard configuration.discriminatorPolicy != .allow, [.post, .put, .patch].contains(request.method) else { return }
        let buffer = try await request.collectBody(upTo: configuration.bodyLimit)
        guard buffer.readableBytes > 0,
              let value = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))
        else { return }
        let key = configuration.discriminator
        func has(_ value: JSONValue) -> Bool { value.object?[key] != nil }
        let found: Bool
        switch value {
        case .object: found = has(value)
        case .array(let items): found = items.contains(where: has)
        default: found = false
        }
        guard found else { return }
        if configuration.discriminatorPolicy == .reject {
            throw AdminError(
                .badRequest, code: "discriminator_not_allowed",
                "'\(key)' must not be sent: the tenant comes from the request (\(configuration.sources.map(\.name).joined(separator: ", ")))")
        }
        func strip(_ value: JSONValue) -> JSONValue {
            guard var members = value.object else { return value }
            members[key] = nil
            return .object(members)
        }
        let stripped: JSONValue
        if case .array(let items) = value { stripped = .array(items.map(strip)) } else { stripped = strip(value) }
        request.body = RequestBody(buffer: ByteBuffer(bytes: try JSONEncoder().encode(stripped)))
    }
}
