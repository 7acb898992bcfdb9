import Foundation

/// A parsed `postgres://user:password@host:port/database?sslmode=…` URL.
///
/// `description` hides the password; use the fields to connect.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    /// TLS use, from `sslmode`.
    public enum TLSMode: String, Sendable { case disable, prefer, require }

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

    /// Creates a URL value from parts.
    public init(user: String, password: String?, host: String, port: Int = 5432, database: String, tls: TLSMode = .disable) {
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.database = database
        self.tls = tls
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
        let mode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        let tls: TLSMode
        switch mode {
        case "disable", "allow": tls = .disable
        case "prefer": tls = .prefer
        case "require", "verify-ca", "verify-full": tls = .require
        default:
            throw TenantryError(
                code: .configuration, message: "\(variable) has sslmode=\(mode.prefix(20)); use disable, prefer or require")
        }
        self.init(
            user: user, password: components.password.flatMap { $0.removingPercentEncoding } ?? components.password,
            host: host, port: components.port ?? 5432, database: database.isEmpty ? user : database, tls: tls)
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
        if tls != .disable { query.append("sslmode=\(tls.rawValue)") }
        return query.isEmpty ? text : text + "?" + query.joined(separator: "&")
    }
}
