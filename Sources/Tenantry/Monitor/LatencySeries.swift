import Histogram

/// Counts and latency distribution of one slice of the queries (a tenant, a table, a kind, …),
/// cumulative since the monitor started or was reset.
///
/// Latencies are microseconds. A series keeps its first ``exactLimit`` values as they are (a few
/// KB, exact percentiles) and moves to an HdrHistogram (3 significant digits: relative error below
/// 0.1%) when it grows past that. A histogram is 16–190 KB (it grows with the largest value), so
/// the many small slices (a tenant's rarely used table) stay cheap while busy ones cost a bounded
/// amount whatever their count.
struct LatencySeries: Sendable {
    /// Values kept exactly before switching to a histogram.
    static let exactLimit = 512
    /// The largest latency tracked: one hour. Longer ones are recorded as one hour.
    static let maxMicroseconds: UInt64 = 3_600_000_000

    private(set) var count = 0
    private(set) var errors = 0
    private(set) var slow = 0
    private(set) var totalMicroseconds: UInt64 = 0
    private var exact: [UInt32] = []
    private var histogram: Histogram<UInt64>?

    mutating func record(microseconds: UInt64, success: Bool, slow isSlow: Bool) {
        let value = Swift.min(microseconds, Self.maxMicroseconds)
        count += 1
        totalMicroseconds &+= value
        if !success { errors += 1 }
        if isSlow { slow += 1 }
        if histogram != nil {
            histogram?.record(value)
        } else if exact.count < Self.exactLimit {
            exact.append(UInt32(value))
        } else {
            // Auto-resizing: the counts array only grows as far as the largest value seen.
            var promoted = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
            for old in exact { promoted.record(UInt64(old)) }
            promoted.record(value)
            histogram = promoted
            exact = []
        }
    }

    /// The values at `percentiles` (0…100), in microseconds, by nearest rank: the smallest value
    /// with at least `p`% of the values at or below it (HdrHistogram's definition; a histogram
    /// answers with the highest value equivalent to it). 0 when empty.
    func values(atPercentiles percentiles: [Double]) -> [UInt64] {
        guard count > 0 else { return percentiles.map { _ in 0 } }
        if let histogram {
            return percentiles.map { histogram.valueAtPercentile($0) }
        }
        let sorted = exact.sorted()
        return percentiles.map { UInt64(sorted[Self.nearestRankIndex(percentile: $0, count: sorted.count)]) }
    }

    /// The index into `count` sorted values of the value at `percentile`, exactly as
    /// HdrHistogram's `valueAtPercentile` counts.
    static func nearestRankIndex(percentile: Double, count: Int) -> Int {
        guard percentile > 0 else { return 0 }
        guard percentile < 100 else { return count - 1 }
        let requested = Swift.min(Swift.max(percentile.nextDown, 0), 100)
        let rank = Swift.max(1, Int(((requested * Double(count)) / 100).rounded(.up)))
        return Swift.min(rank, count) - 1
    }

    /// Mean latency in microseconds (exact: kept as a running sum).
    var meanMicroseconds: Double { count == 0 ? 0 : Double(totalMicroseconds) / Double(count) }

    /// Failed fraction, 0…1.
    var errorRate: Double { count == 0 ? 0 : Double(errors) / Double(count) }
}

/// A fixed-capacity ring buffer: appending past capacity overwrites the oldest element.
struct RingBuffer<Element: Sendable>: Sendable {
    let capacity: Int
    private var storage: [Element] = []
    private var head = 0  // index of the oldest element once full

    init(capacity: Int) { self.capacity = Swift.max(1, capacity) }

    var count: Int { storage.count }

    mutating func append(_ element: Element) {
        if storage.count < capacity {
            storage.append(element)
        } else {
            storage[head] = element
            head = (head + 1) % capacity
        }
    }

    /// Calls `body` on every element, in storage order (not oldest first).
    func forEach(_ body: (Element) -> Void) { storage.forEach(body) }

    /// Oldest first.
    var elements: [Element] { Array(storage[head...] + storage[..<head]) }

    mutating func removeAll() {
        storage = []
        head = 0
    }
}
