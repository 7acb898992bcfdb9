import Crypto
import Foundation
import Hummingbird
import NIOConcurrencyHelpers

/// The console's login sessions, in memory: a random id in an `HttpOnly`, `SameSite=Strict`
/// cookie, a CSRF token per session, an idle and an absolute expiry. A restart logs everyone out.
/// Only digests of the ids are kept, so the table never holds a usable cookie.
final class ConsoleSessions: Sendable {
    /// What a session may do.
    enum Role: String, Sendable { case admin, viewer }

    /// A logged-in operator.
    struct Session: Sendable {
        /// `admin` (pages and actions) or `viewer` (pages only).
        var role: Role
        /// The name the operator gave at login (or the role), for the audit log.
        var `operator`: String
        /// The audit actor: `console:<operator>@<token fingerprint>`.
        var actor: String
        /// The session's CSRF token, in every form as the field `csrf`.
        var csrf: String
        var created: Date
        var lastSeen: Date
    }

    /// The session cookie's name.
    static let cookieName = "tenantry_console"
    /// The login form's double-submit cookie (a CSRF token before there is a session).
    static let loginCookieName = "tenantry_console_login"

    let idleTimeout: TimeInterval
    let maximumAge: TimeInterval
    /// The most sessions kept per role; beyond it the least recently seen of that role goes (a
    /// flood of viewer logins never ends an admin's session).
    let capacity: Int
    /// The most live channels one session may hold open at once.
    static let streamsPerSession = 8
    private let sessions = NIOLockedValueBox([String: Session]())
    private let streams = NIOLockedValueBox([String: Int]())

    init(idleTimeout: TimeInterval, maximumAge: TimeInterval, capacity: Int = 500) {
        self.idleTimeout = idleTimeout
        self.maximumAge = maximumAge
        self.capacity = capacity
    }

    /// A new session; returns the cookie value.
    func create(role: Role, operator name: String, actor: String, now: Date = Date()) -> String {
        let id = Self.randomToken()
        let session = Session(role: role, operator: name, actor: actor, csrf: Self.randomToken(), created: now, lastSeen: now)
        sessions.withLockedValue { table in
            table = table.filter { !expired($0.value, now: now) }
            let sameRole = table.filter { $0.value.role == role }
            if sameRole.count >= capacity, let oldest = sameRole.min(by: { $0.value.lastSeen < $1.value.lastSeen })?.key {
                table[oldest] = nil
            }
            table[Self.digest(id)] = session
        }
        return id
    }

    /// The live session of `request`'s cookie (its last use now when `touch`: a live channel does
    /// not keep a session alive); `nil` when absent or expired.
    func session(for request: Request, touch: Bool = true, now: Date = Date()) -> Session? {
        guard let id = Self.cookie(Self.cookieName, in: request) else { return nil }
        let key = Self.digest(id)
        return sessions.withLockedValue { table in
            guard var session = table[key] else { return nil }
            if expired(session, now: now) {
                table[key] = nil
                return nil
            }
            if touch {
                session.lastSeen = now
                table[key] = session
            }
            return session
        }
    }

    /// Ends `request`'s session.
    func end(_ request: Request) {
        guard let id = Self.cookie(Self.cookieName, in: request) else { return }
        _ = sessions.withLockedValue { $0.removeValue(forKey: Self.digest(id)) }
    }

    /// Counts a live channel of `request`'s session; `false` (count unchanged) past
    /// ``streamsPerSession``.
    func beginStream(_ request: Request) -> Bool {
        guard let id = Self.cookie(Self.cookieName, in: request) else { return false }
        let key = Self.digest(id)
        return streams.withLockedValue { streams in
            guard streams[key, default: 0] < Self.streamsPerSession else { return false }
            streams[key, default: 0] += 1
            return true
        }
    }

    /// A live channel of `request`'s session ended.
    func endStream(_ request: Request) {
        guard let id = Self.cookie(Self.cookieName, in: request) else { return }
        let key = Self.digest(id)
        streams.withLockedValue { streams in
            let left = streams[key, default: 1] - 1
            streams[key] = left > 0 ? left : nil
        }
    }

    /// Sessions alive now.
    var count: Int { sessions.withLockedValue { $0.count } }

    private func expired(_ session: Session, now: Date) -> Bool {
        now.timeIntervalSince(session.lastSeen) > idleTimeout || now.timeIntervalSince(session.created) > maximumAge
    }

    // MARK: - Tokens and cookies

    /// 32 random bytes, base64url without padding.
    static func randomToken() -> String {
        let key = SymmetricKey(size: .bits256)
        let bytes = key.withUnsafeBytes { Data($0) }
        return bytes.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Whether two secrets are equal, in time independent of where they differ.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let left = Array(SHA256.hash(data: Data(a.utf8))), right = Array(SHA256.hash(data: Data(b.utf8)))
        var difference: UInt8 = 0
        for index in 0..<left.count { difference |= left[index] ^ right[index] }
        return difference == 0
    }

    static func digest(_ id: String) -> String {
        SHA256.hash(data: Data(id.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The value of cookie `name` in `request`, if sent.
    static func cookie(_ name: String, in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let pair = part.split(separator: "=", maxSplits: 1)
                if pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces) == name {
                    return pair[1].trimmingCharacters(in: .whitespaces)
                }
            }
        }
        return nil
    }

    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, path `/console`, `Secure` when asked;
    /// `maxAge` 0 deletes it.
    static func setCookie(_ name: String, _ value: String, secure: Bool, maxAge: Int? = nil) -> String {
        var cookie = "\(name)=\(value); Path=/console; HttpOnly; SameSite=Strict"
        if let maxAge { cookie += "; Max-Age=\(maxAge)" }
        if secure { cookie += "; Secure" }
        return cookie
    }
}
