import Foundation
import Logging
import TenantryCore

/// One setup check of ``Operations/doctor(sample:environment:)``: what was checked, its outcome,
/// and why, in one line that never holds a secret.
public struct DoctorCheck: Sendable, Codable, Equatable {
    /// A check's outcome.
    public enum Status: String, Sendable, Codable, Equatable {
        /// Fine.
        case pass
        /// Works, but worth a look (e.g. tenant roles can reach databases Tenantry does not own).
        case warn
        /// Broken: the doctor exits non-zero.
        case fail
    }

    /// The area: `environment`, `application database`, `tenant configuration`, `tenant databases`, `data routing`.
    public var group: String
    /// The check's name within its group (`connection`, `credentials`, `isolation`, …).
    public var name: String
    /// The outcome.
    public var status: Status
    /// Why, in one line.
    public var detail: String

    /// Whether the check did not fail (a warning passes).
    public var passed: Bool { status != .fail }

    /// A check.
    public init(group: String, name: String, status: Status, detail: String) {
        self.group = group
        self.name = name
        self.status = status
        self.detail = detail
    }

    /// A check that passes when `passed`, else fails.
    public init(group: String, name: String, passed: Bool, detail: String) {
        self.init(group: group, name: name, status: passed ? .pass : .fail, detail: detail)
    }

    private enum CodingKeys: String, CodingKey { case group, name, status, passed, detail }

    /// Decodes a check (`passed` is derived from `status`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        group = try container.decode(String.self, forKey: .group)
        name = try container.decode(String.self, forKey: .name)
        status = try container.decode(Status.self, forKey: .status)
        detail = try container.decode(String.self, forKey: .detail)
    }

    /// Encodes `group`, `name`, `status`, `passed` (for readers of the older format) and `detail`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(group, forKey: .group)
        try container.encode(name, forKey: .name)
        try container.encode(status, forKey: .status)
        try container.encode(passed, forKey: .passed)
        try container.encode(detail, forKey: .detail)
    }
}

/// Every check of a doctor run, in order (`tenantry doctor --json`, `GET /api/superadmin/doctor`).
public struct DoctorReport: Sendable, Codable, Equatable {
    /// The checks, in the order they ran.
    public var checks: [DoctorCheck]

    /// The checks.
    public init(checks: [DoctorCheck]) { self.checks = checks }

    /// Checks that did not fail.
    public var passed: Int { checks.filter(\.passed).count }
    /// Checks that failed.
    public var failed: Int { checks.count - passed }
    /// Checks that passed with a warning.
    public var warnings: Int { checks.filter { $0.status == .warn }.count }
    /// Whether no check failed.
    public var healthy: Bool { failed == 0 }

    private enum CodingKeys: String, CodingKey { case passed, failed, warnings, checks }

    /// Decodes a report (the counts are derived from the checks).
    public init(from decoder: any Decoder) throws {
        checks = try decoder.container(keyedBy: CodingKeys.self).decode([DoctorCheck].self, forKey: .checks)
    }

    /// Encodes the counts, then the checks.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(passed, forKey: .passed)
        try container.encode(failed, forKey: .failed)
        try container.encode(warnings, forKey: .warnings)
        try container.encode(checks, forKey: .checks)
    }

    /// The checks of the configuration itself (it parsed; what is set), without a secret. The
    /// configuration check passes by construction: a bad value never makes a configuration.
    public static func configurationChecks(_ configuration: TenantryConfiguration) -> [DoctorCheck] {
        [
            DoctorCheck(
                group: "environment", name: "configuration", passed: true,
                detail: "every TENANTRY_/TENANT_/ENABLE_ variable parses"),
            DoctorCheck(
                group: "environment", name: "DATABASE_URL", passed: true,
                detail: configuration.databaseURL == nil ? "not set: the embedded PostgreSQL under .tenantry/ is used" : "set"),
            DoctorCheck(
                group: "environment", name: "TENANT_ENCRYPTION_KEY", passed: configuration.keyring != nil,
                detail: configuration.keyring == nil
                    ? "not set: provisioning and tenant logins need it ('tenantry keys generate')" : "set (key not shown)"),
        ]
    }

    /// The unified database's checks: it answers, and its PostgreSQL is 13 or newer. The
    /// connection check fails (with the reason) when it cannot be reached.
    public static func databaseChecks(_ url: PostgresURL, logger: Logger) async -> [DoctorCheck] {
        do {
            let version = try await Database.withConnection(url, logger: logger) { connection in
                try await connection.query("SHOW server_version_num", logger: logger).decode(String.self).first(where: { _ in true }) ?? "0"
            }
            let major = (Int(version) ?? 0) / 10_000
            return [
                DoctorCheck(group: "application database", name: "connection", passed: true, detail: "\(url.host):\(url.port)/\(url.database)"),
                DoctorCheck(
                    group: "application database", name: "server version", passed: major >= 13,
                    detail: "PostgreSQL \(major)\(major >= 13 ? "" : ": 13 or newer needed")"),
            ]
        } catch {
            return [DoctorCheck(group: "application database", name: "connection", passed: false, detail: Database.oneLine(error))]
        }
    }
}
