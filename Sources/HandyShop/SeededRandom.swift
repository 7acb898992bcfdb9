import Foundation

/// SplitMix64: a small, fast, seedable generator. Same seed, same sequence, on every platform.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator for `seed`, mixed with `stream` (e.g. a table name) so that every table has its
    /// own independent sequence and generating one table never shifts another.
    public init(seed: UInt64, stream: String = "") {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a, stable (unlike Hasher)
        for byte in stream.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        state = seed ^ hash
        _ = next()
    }

    public mutating func next() -> UInt64 {
        state = state &+ 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// A uniform integer in `range` (which must not be empty).
    public mutating func int(_ range: ClosedRange<Int>) -> Int {
        let width = UInt64(range.upperBound - range.lowerBound) &+ 1
        if width == 0 { return Int(truncatingIfNeeded: next()) }
        return range.lowerBound + Int(next() % width)
    }

    /// A uniform integer in `range` (which must not be empty).
    public mutating func int(_ range: Range<Int>) -> Int { int(range.lowerBound...(range.upperBound - 1)) }

    /// A uniform double in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// True with probability `p`.
    mutating func chance(_ p: Double) -> Bool { unit() < p }

    /// One element of a non-empty array.
    mutating func pick<T>(_ items: [T]) -> T { items[int(0..<items.count)] }

    /// `count` random bytes.
    mutating func bytes(_ count: Int) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        while result.count < count {
            var word = next()
            for _ in 0..<min(8, count - result.count) {
                result.append(UInt8(truncatingIfNeeded: word))
                word >>= 8
            }
        }
        return result
    }

    /// Lower-case hex of `count` random bytes.
    mutating func hex(_ count: Int) -> String { Hex.encode(bytes(count)) }

    /// Fisher–Yates shuffle.
    mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) {
            items.swapAt(i, int(0...i))
        }
    }
}

/// Lower-case hexadecimal encoding.
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        append(bytes, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func append(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
    }
}

/// Zipf-distributed ranks 0..<count: rank k has weight 1 / (k + 1)^exponent (0: uniform). Used by
/// the load generator and the benchmarks to make a few tenants busy and the rest a long tail.
public struct Zipf: Sendable {
    /// The cumulative share of each rank.
    public let cumulative: [Double]

    public init(count: Int, exponent: Double) {
        var sum = 0.0
        var cumulative: [Double] = []
        cumulative.reserveCapacity(count)
        for rank in 1...max(1, count) {
            sum += 1 / pow(Double(rank), exponent)
            cumulative.append(sum)
        }
        self.cumulative = cumulative.map { $0 / sum }
    }

    /// A rank drawn from `random`.
    public func sample(_ random: inout SeededRandom) -> Int {
        let u = random.unit()
        var (low, high) = (0, cumulative.count - 1)
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] < u { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The share of draws the hottest `top` ranks get.
    public func share(top: Int) -> Double { cumulative[min(top, cumulative.count) - 1] }
}
