import Foundation

extension PerformanceMonitor {
    /// When ``PerformanceMonitor/alerts()`` fires.
    public struct AlertThresholds: Sendable, Equatable, Codable {
        /// A p99 latency above this fires. Default 1 s (the seed's unified p99 is 500–850 ms).
        public var p99Latency: Duration
        /// An error rate (0…1) above this fires. Default 0.01 (1%; the seed's unified DB runs at
        /// 0.3–0.5%).
        public var errorRate: Double
        /// A scope with fewer recent queries than this never fires: three slow queries out of
        /// five say nothing. Default 100.
        public var minimumQueries: Int

        /// Thresholds with documented defaults.
        public init(p99Latency: Duration = .milliseconds(1000), errorRate: Double = 0.01, minimumQueries: Int = 100) {
            self.p99Latency = p99Latency
            self.errorRate = errorRate
            self.minimumQueries = Swift.max(1, minimumQueries)
        }
    }

    /// A threshold currently exceeded.
    public struct Alert: Sendable, Hashable, Codable, CustomStringConvertible {
        /// What is over its limit.
        public enum Condition: String, Sendable, Hashable, Codable {
            /// The 99th percentile latency (`value` and `threshold` in milliseconds).
            case p99Latency
            /// The error rate (`value` and `threshold` as fractions, 0…1).
            case errorRate
        }

        /// Which queries.
        public enum Scope: Sendable, Hashable, Codable, CustomStringConvertible {
            /// The queries served by one source.
            case source(QuerySource)
            /// One tenant's queries, from either source.
            case tenant(String)

            /// `source unified`, `tenant 42`.
            public var description: String {
                switch self {
                case .source(let source): "source \(source.rawValue)"
                case .tenant(let tenant): "tenant \(tenant)"
                }
            }
        }

        /// Identifies an alert across evaluations, whatever its current value.
        public struct Key: Sendable, Hashable, Codable {
            /// What is over its limit.
            public var condition: Condition
            /// Which queries.
            public var scope: Scope

            /// The key of `condition` over `scope`.
            public init(condition: Condition, scope: Scope) {
                self.condition = condition
                self.scope = scope
            }
        }

        /// What is over its limit.
        public var condition: Condition
        /// Which queries.
        public var scope: Scope
        /// The measured value (milliseconds or a fraction).
        public var value: Double
        /// The limit it exceeds (same unit).
        public var threshold: Double
        /// Recent queries the value was measured over.
        public var samples: Int

        /// The alert's identity.
        public var key: Key { Key(condition: condition, scope: scope) }

        /// One line: `p99 latency of source unified is 1203.00 ms, over the 1000.00 ms limit (2000 recent queries)`.
        public var description: String {
            switch condition {
            case .p99Latency:
                "p99 latency of \(scope) is \(Self.format(value)) ms, over the \(Self.format(threshold)) ms limit "
                    + "(\(samples) recent queries)"
            case .errorRate:
                "error rate of \(scope) is \(Self.format(value * 100))%, over the \(Self.format(threshold * 100))% limit "
                    + "(\(samples) recent queries)"
            }
        }

        private static func format(_ value: Double) -> String { String(format: "%.2f", value) }
    }

    /// The alerts firing now, sorted by scope then condition.
    ///
    /// Evaluated over the retained raw samples (the newest ``Configuration/maxRetention``
    /// queries), so an alert stops firing once the problem is over rather than being diluted or
    /// kept alive by history: per source and per tenant, the p99 latency (nearest rank, exact)
    /// against ``AlertThresholds/p99Latency`` and the error rate against
    /// ``AlertThresholds/errorRate``, for scopes with at least ``AlertThresholds/minimumQueries``.
    /// Alerts that were not firing at the previous call go to `onAlert`.
    public func alerts() -> [Alert] {
        let samples = self.samples()
        let thresholds = configuration.alertThresholds
        var groups: [Alert.Scope: (durations: [UInt64], errors: Int)] = [:]
        for metric in samples {
            for scope in [Alert.Scope.source(metric.source), .tenant(metric.tenant)] {
                groups[scope, default: ([], 0)].durations.append(metric.duration.wholeMicroseconds)
                if !metric.success { groups[scope, default: ([], 0)].errors += 1 }
            }
        }
        let p99Limit = Double(thresholds.p99Latency.wholeMicroseconds) / 1000
        var firing: [Alert] = []
        for (scope, group) in groups where group.durations.count >= thresholds.minimumQueries {
            let count = group.durations.count
            let sorted = group.durations.sorted()
            let p99 = Double(sorted[LatencySeries.nearestRankIndex(percentile: 99, count: count)]) / 1000
            if p99 > p99Limit {
                firing.append(Alert(condition: .p99Latency, scope: scope, value: p99, threshold: p99Limit, samples: count))
            }
            let rate = Double(group.errors) / Double(count)
            if rate > thresholds.errorRate {
                firing.append(
                    Alert(condition: .errorRate, scope: scope, value: rate, threshold: thresholds.errorRate, samples: count))
            }
        }
        firing.sort { ($0.scope.description, $0.condition.rawValue) < ($1.scope.description, $1.condition.rawValue) }
        let started = state.withLockedValue { state in
            let keys = Set(firing.map(\.key))
            defer { state.firing = keys }
            return firing.filter { !state.firing.contains($0.key) }
        }
        if let onAlert { started.forEach(onAlert) }
        return firing
    }
}
