import Foundation
import HandyShop
#if canImport(Glibc)
import Glibc
#endif

/// Closed-loop load: N tasks, each running one operation after another until the deadline.
enum Load {
    /// What a run measured.
    struct Result: Sendable {
        var operations = 0
        var errors = 0
        var seconds = 0.0
        /// Latencies of successful operations, microseconds.
        var latencies: [UInt32] = []

        var throughput: Double { seconds > 0 ? Double(operations) / seconds : 0 }

        /// Nearest-rank percentile in milliseconds.
        func percentileMs(_ p: Double) -> Double {
            let sorted = latencies.sorted()
            guard !sorted.isEmpty else { return 0 }
            let rank = max(1, Int((p / 100 * Double(sorted.count)).rounded(.up)))
            return Double(sorted[rank - 1]) / 1000
        }

        /// Two runs as one (same contestant, several rounds).
        static func + (lhs: Result, rhs: Result) -> Result {
            Result(
                operations: lhs.operations + rhs.operations, errors: lhs.errors + rhs.errors,
                seconds: lhs.seconds + rhs.seconds, latencies: lhs.latencies + rhs.latencies)
        }
    }

    /// Runs `operation(tenantIndex, key)` from `concurrency` tasks for `duration`; each picks a
    /// tenant with `pick` and a row key 1…`keys` at random (seeded per task: the same sequence for
    /// every contestant).
    static func run(
        concurrency: Int, duration: Duration, keys: Int, seed: UInt64,
        pick: @escaping @Sendable (inout SeededRandom) -> Int,
        _ operation: @escaping @Sendable (Int, Int) async throws -> Void
    ) async -> Result {
        let start = ContinuousClock.now
        let deadline = start + duration
        var total = await withTaskGroup(of: Result.self) { group in
            for task in 0..<concurrency {
                group.addTask {
                    var random = SeededRandom(seed: seed, stream: "task \(task)")
                    var result = Result()
                    result.latencies.reserveCapacity(65_536)
                    while ContinuousClock.now < deadline {
                        let tenant = pick(&random)
                        let key = Int(random.next() % UInt64(keys)) + 1
                        let began = ContinuousClock.now
                        do {
                            try await operation(tenant, key)
                            let elapsed = ContinuousClock.now - began
                            result.operations += 1
                            result.latencies.append(UInt32(min(UInt64(UInt32.max), elapsed.wholeMicroseconds)))
                        } catch {
                            result.errors += 1
                        }
                    }
                    return result
                }
            }
            return await group.reduce(Result()) { $0 + $1 }
        }
        let elapsed = ContinuousClock.now - start
        total.seconds = elapsed.totalSeconds
        return total
    }
}

/// This process's resident memory, from /proc/self/status (Linux), and the heap the allocator
/// has handed out (glibc's `malloc_info`).
enum ResidentMemory {
    /// One reading: resident bytes before and after `malloc_trim`, and the bytes in use on the heap.
    struct Sample {
        /// `VmRSS` as it was (freed heap memory not yet given back counts).
        var untrimmed: Int
        /// `VmRSS` after `malloc_trim(0)` gave freed heap pages back to the system.
        var trimmed: Int
        /// Bytes allocated and not freed (arenas less their free chunks, plus mmapped chunks).
        var heapInUse: Int

        init() {
            untrimmed = ResidentMemory.rss()
            ResidentMemory.trim()
            trimmed = ResidentMemory.rss()
            heapInUse = ResidentMemory.heapInUse()
        }
    }

    /// Resident bytes after giving freed heap memory back to the system (`malloc_trim`), so that
    /// transient allocations (query buffers) do not count as memory kept.
    static func bytes() -> Int {
        trim()
        return rss()
    }

    static func rss() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return kb * 1024
    }

    /// glibc's `malloc_trim(0)`, looked up at run time (the Glibc module does not export it).
    static func trim() {
        #if canImport(Glibc)
        typealias Trim = @convention(c) (Int) -> Int32
        if let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "malloc_trim") {
            _ = unsafeBitCast(symbol, to: Trim.self)(0)
        }
        #endif
    }

    /// Heap bytes in use, from the totals of glibc's `malloc_info` (0 where unavailable).
    static func heapInUse() -> Int {
        #if canImport(Glibc)
        typealias Info = @convention(c) (Int32, UnsafeMutablePointer<FILE>?) -> Int32
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "malloc_info") else { return 0 }
        var buffer: UnsafeMutablePointer<CChar>?
        var size = 0
        guard let file = open_memstream(&buffer, &size) else { return 0 }
        _ = unsafeBitCast(symbol, to: Info.self)(0, file)
        fclose(file)
        guard let buffer else { return 0 }
        defer { free(buffer) }
        let xml = String(cString: buffer)
        // The totals over all arenas follow the last </heap>.
        guard let range = xml.range(of: "</heap>", options: .backwards) else { return 0 }
        let totals = xml[range.upperBound...]
        func value(_ prefix: String) -> Int {
            guard let start = totals.range(of: prefix) else { return 0 }
            let rest = totals[start.upperBound...]
            guard let open = rest.range(of: "size=\"") else { return 0 }
            return Int(rest[open.upperBound...].prefix { $0.isNumber }) ?? 0
        }
        return value("<system type=\"current\"") - value("<total type=\"fast\"") - value("<total type=\"rest\"")
            + value("<total type=\"mmap\"")
        #else
        return 0
        #endif
    }
}
