import Foundation
import TenantryCore

extension Operations {
    /// The catalog at a glance plus each captured tenant's capture state (`status --json`: the
    /// summary's fields at the top level, and `capture`, null when capture is not installed).
    public struct StatusReport: Sendable, Codable, Equatable {
        /// Tenants by status, placement and phase; servers; the read policy.
        public var summary: CatalogSummary
        /// Per captured tenant: capture, sync, queue depth, lag, dead letters (`nil`: not installed).
        public var capture: [Capture.State]?

        /// A report.
        public init(summary: CatalogSummary, capture: [Capture.State]?) {
            self.summary = summary
            self.capture = capture
        }

        enum Keys: String, CodingKey { case capture }

        public init(from decoder: any Decoder) throws {
            summary = try CatalogSummary(from: decoder)
            capture = try decoder.container(keyedBy: Keys.self).decodeIfPresent([Capture.State].self, forKey: .capture)
        }

        public func encode(to encoder: any Encoder) throws {
            try summary.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(capture, forKey: .capture)
        }
    }

    /// The migration status (the seeds' status overview; `tenantry status`).
    public func status() async throws -> StatusReport {
        let summary = try await catalog.summary()
        let unifiedURL = try servers.adminURL(server: nil, database: databaseURL.database)
        let capture = Capture(unifiedURL: unifiedURL, discriminator: configuration.naming.discriminator, logger: logger)
        let states = try await capture.isInstalled() ? try await capture.states() : nil
        return StatusReport(summary: summary, capture: states)
    }
}
