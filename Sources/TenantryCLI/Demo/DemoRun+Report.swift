import Foundation
import Synchronization

extension DemoRun {
    /// One phase and how long it took.
    struct Phase: Codable, Sendable {
        var name: String
        var seconds: Double
        var detail: String
    }

    /// The report; `--json` prints it as one object.
    struct Report: Codable, Sendable {
        var verified: Bool
        var lostRows: Int
        var loadErrors: Int
        var p50MsUnified: Double?
        var p95MsUnified: Double?
        var p99MsUnified: Double?
        var p50MsTenant: Double?
        var p95MsTenant: Double?
        var p99MsTenant: Double?
        var shops: Int
        var rowsMoved: Int
        var writesDuringMove: Int
        var loadOperations: Int
        var loadThroughput: Double
        var cutoverPauseMsMax: Double
        var cutoverPauseMsP50: Double
        var cutoverRetries: Int
        var rowsRetired: Int
        var archive: String?
        var phases: [Phase]
        var lost: [String]
        var errorSamples: [String]
        var differences: [String]

        enum CodingKeys: String, CodingKey {
            case verified, shops, phases, lost, archive, differences
            case lostRows = "lost_rows", loadErrors = "load_errors"
            case p50MsUnified = "p50_ms_unified", p95MsUnified = "p95_ms_unified", p99MsUnified = "p99_ms_unified"
            case p50MsTenant = "p50_ms_tenant", p95MsTenant = "p95_ms_tenant", p99MsTenant = "p99_ms_tenant"
            case rowsMoved = "rows_moved", writesDuringMove = "writes_during_move", loadOperations = "load_operations"
            case loadThroughput = "load_throughput", cutoverPauseMsMax = "cutover_pause_ms_max"
            case cutoverPauseMsP50 = "cutover_pause_ms_p50", cutoverRetries = "cutover_retries", rowsRetired = "rows_retired"
            case errorSamples = "error_samples"
        }
    }

    /// The phases run so far, with their durations; prints each as it starts and ends.
    final class PhaseLog: Sendable {
        private let recorded = Mutex<[Phase]>([])
        var phases: [Phase] { recorded.withLock { $0 } }

        func run<T>(_ name: String, _ body: () async throws -> (T, String)) async throws -> T {
            Output.note("▶ \(name)")
            let start = ContinuousClock.now
            let (value, detail) = try await body()
            let (whole, fraction) = (ContinuousClock.now - start).components
            let seconds = ((Double(whole) + Double(fraction) / 1e18) * 100).rounded() / 100
            recorded.withLock { $0.append(Phase(name: name, seconds: seconds, detail: detail)) }
            Output.note("✓ \(name) (\(String(format: "%.2f", seconds)) s)\(detail.isEmpty ? "" : ": \(detail)")")
            return value
        }
    }
}
