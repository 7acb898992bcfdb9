import Foundation

extension PerformanceMonitor {
    /// Unified database against tenant databases, side by side: the seed's "Performance Targets"
    /// before/after table, measured.
    public struct Comparison: Sendable, Codable, Equatable {
        /// The tenant compared, or `nil` for all tenants.
        public var tenant: String?
        /// Queries served by the unified database ("before").
        public var unified: PerformanceStats.Breakdown
        /// Queries served by tenant databases ("after").
        public var tenantDatabases: PerformanceStats.Breakdown
        /// Relative change from unified to tenant, in percent.
        public var change: Change

        /// `(tenant − unified) / unified × 100` for each figure; `nil` when either side has no
        /// queries or the unified figure is 0 (no baseline to compare with).
        public struct Change: Sendable, Codable, Equatable {
            /// Change of the median latency, in percent.
            public var p50: Double?
            /// Change of the 95th percentile latency, in percent.
            public var p95: Double?
            /// Change of the 99th percentile latency, in percent.
            public var p99: Double?
            /// Change of the error rate, in percent.
            public var errorRate: Double?

            /// The changes from `unified` to `tenant`.
            public init(unified: PerformanceStats.Breakdown, tenant: PerformanceStats.Breakdown) {
                func percent(_ before: Double, _ after: Double) -> Double? {
                    guard unified.count > 0, tenant.count > 0, before != 0 else { return nil }
                    return (after - before) / before * 100
                }
                p50 = percent(unified.p50Ms, tenant.p50Ms)
                p95 = percent(unified.p95Ms, tenant.p95Ms)
                p99 = percent(unified.p99Ms, tenant.p99Ms)
                errorRate = percent(unified.errorRate, tenant.errorRate)
            }
        }
    }

    /// Unified vs tenant databases for all tenants, or for one (a moving tenant is served by
    /// both while reads switch over). The numbers are those of `stats(tenant:).bySource`.
    public func compare(tenant: String? = nil) -> Comparison {
        let stats = stats(tenant: tenant)
        let unified = stats.bySource[QuerySource.unified.rawValue] ?? .empty
        let tenantSide = stats.bySource[QuerySource.tenant.rawValue] ?? .empty
        return Comparison(
            tenant: tenant, unified: unified, tenantDatabases: tenantSide,
            change: .init(unified: unified, tenant: tenantSide))
    }

    /// ``compare(tenant:)`` as a text table, like the seed's "Performance Targets":
    ///
    /// ```
    /// Performance: unified DB vs tenant DBs (all tenants)
    ///                 Unified DB   Tenant DBs     Change
    /// Queries             12,034        9,876
    /// P50 latency       41.20 ms     24.72 ms       -40%
    /// …
    /// ```
    public func comparisonTable(tenant: String? = nil) -> String {
        compare(tenant: tenant).table
    }
}

extension PerformanceMonitor.Comparison {
    /// This comparison as a text table (see ``PerformanceMonitor/comparisonTable(tenant:)``).
    public var table: String {
        func milliseconds(_ value: Double, _ count: Int) -> String {
            count == 0 ? "—" : String(format: "%.2f ms", value)
        }
        func rate(_ value: Double, _ count: Int) -> String {
            count == 0 ? "—" : String(format: "%.2f%%", value * 100)
        }
        func change(_ value: Double?) -> String {
            guard let value else { return "—" }
            return String(format: "%+.0f%%", value.rounded() == 0 ? 0 : value)
        }
        let u = unified
        let t = tenantDatabases
        let rows: [(String, String, String, String)] = [
            ("", "Unified DB", "Tenant DBs", "Change"),
            ("Queries", grouped(u.count), grouped(t.count), ""),
            ("P50 latency", milliseconds(u.p50Ms, u.count), milliseconds(t.p50Ms, t.count), change(self.change.p50)),
            ("P95 latency", milliseconds(u.p95Ms, u.count), milliseconds(t.p95Ms, t.count), change(self.change.p95)),
            ("P99 latency", milliseconds(u.p99Ms, u.count), milliseconds(t.p99Ms, t.count), change(self.change.p99)),
            ("Error rate", rate(u.errorRate, u.count), rate(t.errorRate, t.count), change(self.change.errorRate)),
        ]
        var lines = ["Performance: unified DB vs tenant DBs (\(tenant.map { "tenant \($0)" } ?? "all tenants"))"]
        for row in rows {
            lines.append(
                pad(row.0, 12, left: true) + pad(row.1, 13) + pad(row.2, 13) + pad(row.3, 10))
        }
        return lines.map { $0.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) }
            .joined(separator: "\n") + "\n"
    }

    private func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let padding = String(repeating: " ", count: Swift.max(0, width - text.count))
        return left ? text + padding : padding + text
    }

    private func grouped(_ count: Int) -> String {
        let digits = Array(String(count))
        var result = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(digit)
        }
        return result
    }
}
