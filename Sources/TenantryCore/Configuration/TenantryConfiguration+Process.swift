import Foundation

extension TenantryConfiguration {
    /// A swift-log level by name (`TENANTRY_LOG_LEVEL`); TenantryCore does not depend on swift-log,
    /// so the CLI maps the name to `Logger.Level`.
    public struct LogLevel: Sendable, Equatable, CustomStringConvertible {
        /// The level's name, as swift-log spells it.
        public let name: String

        /// Every level, most verbose first.
        public static let names = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
        /// The default.
        public static let warning = LogLevel(checked: "warning")

        private init(checked name: String) { self.name = name }

        /// The level named `name` (case-insensitive), or `nil` for an unknown name.
        public init?(_ name: String) {
            let lowered = name.lowercased()
            guard Self.names.contains(lowered) else { return nil }
            self.name = lowered
        }

        /// The name.
        public var description: String { name }
    }

    /// The HandyShop example service's settings (`tenantry handyshop serve`).
    public struct HandyShop: Sendable, Equatable {
        /// The shortest `HANDYSHOP_JWT_SECRET` accepted: an HS256 key as long as the hash (RFC 7518 §3.2).
        public static let minimumSecretLength = 32
        /// `HANDYSHOP_JWT_SECRET` (at least 32 bytes): every request needs an HS256 bearer token. Never print it.
        public var jwtSecret: [UInt8]?
        /// `HANDYSHOP_JWT_AUDIENCE`: the token's `aud` must match when set.
        public var jwtAudience: String?
        /// `HANDYSHOP_JWT_ISSUER`: the token's `iss` must match when set.
        public var jwtIssuer: String?
        /// Defaults: no JWT.
        public init() {}
    }

    /// The settings of the process rather than of the move: logging, binaries, the HandyShop example.
    mutating func readProcessSettings(_ reader: EnvironmentReader) throws(TenantryError) {
        if let name = reader.string("TENANTRY_LOG_LEVEL") {
            guard let level = LogLevel(name.trimmingCharacters(in: .whitespaces)) else {
                throw TenantryError(
                    code: .configuration, message: "TENANTRY_LOG_LEVEL must be one of \(LogLevel.names.joined(separator: ", "))")
            }
            logLevel = level
        }
        postgresBinDirectory = reader.string("TENANTRY_PG_BIN")
        try tracing.read(reader)
        serverURL = try reader.url("TENANTRY_SERVER_URL")
        if let secret = reader.string("HANDYSHOP_JWT_SECRET") {
            guard secret.utf8.count >= HandyShop.minimumSecretLength else {
                throw TenantryError(
                    code: .configuration, message: "HANDYSHOP_JWT_SECRET must be at least \(HandyShop.minimumSecretLength) bytes")
            }
            handyShop.jwtSecret = Array(secret.utf8)
            handyShop.jwtAudience = reader.string("HANDYSHOP_JWT_AUDIENCE")
            handyShop.jwtIssuer = reader.string("HANDYSHOP_JWT_ISSUER")
        } else if reader.string("HANDYSHOP_JWT_AUDIENCE") != nil || reader.string("HANDYSHOP_JWT_ISSUER") != nil {
            throw TenantryError(
                code: .configuration,
                message: "HANDYSHOP_JWT_AUDIENCE and HANDYSHOP_JWT_ISSUER need HANDYSHOP_JWT_SECRET (at least 32 bytes)")
        }
    }
}
