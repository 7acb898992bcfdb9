import Foundation
import Hummingbird

/// The settings of ``TenantMiddleware``: where a request names its tenant, and what happens to a
/// client-sent discriminator.
public enum TenantIdentification {
    /// Where a request names its tenant.
    public struct Source: Sendable, Equatable {
        enum Base: Sendable, Equatable {
            case header(String)
            case subdomain(String)
            case pathPrefix(String)
            case jwtClaim(String)
        }
        let base: Base

        /// A header (default `X-Tenant-ID`).
        public static func header(_ name: String = "X-Tenant-ID") -> Source { Source(base: .header(name)) }
        /// The first label of the host under `domain`: `7.shops.example.com` with `shops.example.com` is `7`.
        public static func subdomain(of domain: String) -> Source { Source(base: .subdomain(domain)) }
        /// The path segment after `prefix`: `/shops/7/customers` with `/shops` is `7`.
        public static func pathPrefix(_ prefix: String = "/shops") -> Source { Source(base: .pathPrefix(prefix)) }
        /// A claim of the HS256 JWT in `Authorization: Bearer …` (default `shop_id`); needs
        /// ``Configuration/jwtSecret``.
        public static func jwtClaim(_ claim: String = "shop_id") -> Source { Source(base: .jwtClaim(claim)) }

        /// The prefix of a ``pathPrefix(_:)`` source (`nil` for the others): an application mounts
        /// its tenant routes under `prefix/:tenant` too.
        public var routePrefix: String? {
            if case .pathPrefix(let prefix) = base { return prefix }
            return nil
        }

        /// How error messages name the source.
        var name: String {
            switch base {
            case .header(let name): "\(name) header"
            case .subdomain: "subdomain"
            case .pathPrefix(let prefix): "path prefix \(prefix)/"
            case .jwtClaim(let claim): "token claim \(claim)"
            }
        }
    }

    /// What to do with the discriminator (``Configuration/discriminator``, e.g. `shop_id`) in a
    /// JSON request body.
    public struct DiscriminatorPolicy: Sendable, Equatable {
        enum Base: Sendable, Equatable { case reject, strip, allow }
        let base: Base
        /// 400 `discriminator_not_allowed` (the default).
        public static let reject = DiscriminatorPolicy(base: .reject)
        /// Removed from the body before the handler sees it.
        public static let strip = DiscriminatorPolicy(base: .strip)
        /// Left alone (the handler must ignore it).
        public static let allow = DiscriminatorPolicy(base: .allow)
    }

    /// Middleware settings.
    public struct Configuration: Sendable {
        /// The sources, all consulted; those that name a tenant must agree. Default: the `X-Tenant-ID` header.
        public var sources: [Source] = [.header()]
        /// The HS256 secret for ``Source/jwtClaim(_:)`` (at least 32 bytes). With a secret, every
        /// request needs a valid token: its claim is the tenant, other sources may only agree with it.
        public var jwtSecret: [UInt8]?
        /// The audience a token's `aud` must name (`nil`: not checked).
        public var jwtAudience: String?
        /// The issuer a token's `iss` must be (`nil`: not checked).
        public var jwtIssuer: String?
        /// The tenant key that must not come from a body (`TENANTRY_DISCRIMINATOR`, default `shop_id`).
        public var discriminator = "shop_id"
        /// What to do with it (default: reject).
        public var discriminatorPolicy: DiscriminatorPolicy = .reject
        /// The largest body inspected (larger is a 413).
        public var bodyLimit = 64 * 1024
        /// How long a tenant found to exist is remembered.
        public var knownTenantTTL: Duration = .seconds(30)

        /// The defaults.
        public init(sources: [Source] = [.header()]) {
            self.sources = sources
        }
    }
}
