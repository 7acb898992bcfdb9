import Foundation

/// A parsed `postgres://user:password@host:port/database?sslmode=…` URL.
///
/// `description` hides the password; use the fields to connect.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    /// TLS use, from `sslmode` (libpq's meanings; the default is `prefer`).
    public enum TLSMode: String, Sendable {
        /// No TLS.
        case disable
        /// TLS when the server offers it, else plain (the default; `allow` reads as this too).
        /// The certificate is not checked: this protects against passive listening only.
        case prefer
        /// TLS or no connection; the certificate is not checked.
        case require
        /// TLS, with the server's certificate chain verified (system roots, or `sslrootcert`).
        case verifyCA = "verify-ca"
        /// TLS, with the chain verified and the certificate's name matching the host.
        case verifyFull = "verify-full"
    }

    /// The user name.
    public var user: String
    /// The password, if any. Never print it.
    public var password: String?
    /// The host name or address (or, with `?host=/dir`, a unix socket directory).
    public var host: String
    /// The TCP port.
    public var port: Int
    /// The database name.
    public var database: String
    /// TLS use.
    public var tls: TLSMode
    /// `sslrootcert`: a PEM file of the certificate authorities trusted for `verify-ca` and
    /// `verify-full` (default: the system's).
    public var rootCertificate: String?

    /// Creates a URL value from parts.
    public init(
        user: String, password: String?, host: String, port: Int = 5432, database: String, tls: TLSMode = .prefer,
        rootCertificate: String? = nil
    ) {
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.database = database
        self.tls = tls
        self.rootCertificate = rootCertificate
    }

    /// Parses `text`; `variable` names the source in the error (`DATABASE_URL must be …`).
    public init(_ text: String, variable: String = "DATABASE_URL") throws(TenantryError) {
        let failure = TenantryError(
            code: .configuration,
            message: "\(variable) must be a PostgreSQL URL like postgres://user:password@host:5432/database")
        guard let components = URLComponents(string: text),
              let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme) else { throw failure }
        let queryHost = components.queryItems?.first { $0.name == "host" }?.value
        guard let host = queryHost ?? components.host, !host.isEmpty else { throw failure }
        guard let user = components.user.flatMap({ $0.removingPercentEncoding }) ?? components.user, !user.isEmpty else {
            throw TenantryError(code: .configuration, message: "\(variable) must name a user (postgres://user@host/db)")
        }
        if let port = components.port, !(1...65535).contains(port) { throw failure }
        var database = components.path
        if database.hasPrefix("/") { database.removeFirst() }
        database = database.removingPercentEncoding ?? database
        let mode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "prefer"
        let tls: TLSMode
        switch mode {
        case "allow": tls = .prefer
        default:
            guard let known = TLSMode(rawValue: mode) else {
                throw TenantryError(
                    code: .configuration,
                    message: "\(variable) has sslmode=\(mode.prefix(20)); use disable, prefer, require, verify-ca or verify-full")
            }
            tls = known
        }
        let rootCertificate = components.queryItems?.first { $0.name == "sslrootcert" }?.value
        self.init(
            user: user, password: components.password.flatMap { $0.removingPercentEncoding } ?? components.password,
            host: host, port: components.port ?? 5432, database: database.isEmpty ? user : database, tls: tls,
            rootCertificate: rootCertificate.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// The same server and credentials, another database.
    public func with(database: String) -> PostgresURL {
        var copy = self
        copy.database = database
        return copy
    }

    /// The same server, other credentials.
    public func with(user: String, password: String?) -> PostgresURL {
        var copy = self
        copy.user = user
        copy.password = password
        return copy
    }

    /// Whether `host` is a unix socket directory.
    public var isUnixSocket: Bool { host.hasPrefix("/") }

    /// The URL with the password, for handing to `psql` or `pg_dump` through the environment.
    public var urlStringWithPassword: String { render(password: password) }

    /// The URL with the password replaced by `***`.
    public var description: String { render(password: password == nil ? nil : "***") }

    private func render(password: String?) -> String {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
        var text = "postgres://" + (user.addingPercentEncoding(withAllowedCharacters: allowed) ?? user)
        if let password { text += ":" + (password == "***" ? password : password.addingPercentEncoding(withAllowedCharacters: allowed) ?? "") }
        let hostPart = isUnixSocket ? "" : (host.contains(":") ? "[\(host)]" : host)
        text += "@\(hostPart):\(port)/" + (database.addingPercentEncoding(withAllowedCharacters: allowed) ?? database)
        var query: [String] = []
        if isUnixSocket { query.append("host=\(host)") }
        if tls != .prefer { query.append("sslmode=\(tls.rawValue)") }
        if let rootCertificate { query.append("sslrootcert=\(rootCertificate.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")") }
        return query.isEmpty ? text : text + "?" + query.joined(separator: "&")
    }
}
