import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// `tenantry performance`: measures query latency on the unified database and on the tenant
/// databases through the router, and prints the seed's before/after table with measured numbers.
struct PerformanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "performance",
        abstract: "Measure reads on the unified database and on tenant databases, through the router.",
        discussion: """
            Runs a sample workload for --duration seconds: for each provisioned tenant, the same reads \
            of its rows (count and first 20 rows of up to 5 tables present on both sides) on the unified \
            database (filtered by TENANTRY_DISCRIMINATOR) and on its own database, alternating. Every \
            query is recorded by the performance monitor; --compare prints unified vs tenant side by side.
            """)

    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Unified DB vs tenant DBs side by side (the seed's before/after table).") var compare = false
    @Option(help: "Seconds to run the sample workload.") var duration: Double = 10
    @Option(help: "Only these tenants (comma-separated ids); default every provisioned tenant.") var tenants: String?
    @Option(help: "Concurrent workers.") var concurrency = 4

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            guard duration > 0, duration <= 3600 else {
                throw TenantryError(code: .invalidArgument, message: "--duration must be from 0 to 3600 seconds (got \(duration))")
            }
            guard (1...64).contains(concurrency) else {
                throw TenantryError(code: .invalidArgument, message: "--concurrency must be from 1 to 64 (got \(concurrency))")
            }
            _ = try context.configuration.requireKeyring()
            let only = try tenants.map { try parseTenantIDs([$0]) }
            let monitor = PerformanceMonitor(configuration: .init(context.configuration.monitor))
            let (duration, concurrency) = (Duration.milliseconds(Int64(duration * 1000)), concurrency)
            if !json { Output.note("measuring for \(Self.seconds(duration))…") }
            let report = try await Services.with(context) { services in
                try await services.operations.measurePerformance(
                    tenants: only, duration: duration, concurrency: concurrency, monitor: monitor)
            }
            try show(report, monitor: monitor)
        }
    }

    private func show(_ report: ComparisonWorkload.Report, monitor: PerformanceMonitor) throws {
        struct JSONReport: Encodable {
            var workload: ComparisonWorkload.Report
            var stats: PerformanceStats?
            var comparison: PerformanceMonitor.Comparison?
        }
        if json {
            try Output.json(JSONReport(
                workload: report, stats: compare ? nil : monitor.stats(), comparison: compare ? monitor.compare() : nil))
            return
        }
        Output.line(
            "sample workload: \(report.tenants.count) tenant(s), tables \(report.tables.joined(separator: ", ")), "
                + "\(report.queriesPerSide) reads per side in \(String(format: "%.1f", report.seconds)) s "
                + "(\(report.concurrency) workers)")
        if compare {
            Output.line(String(monitor.comparisonTable().dropLast()))
            return
        }
        let stats = monitor.stats()
        func line(_ label: String, _ b: PerformanceStats.Breakdown) -> String {
            "  " + label.padding(toLength: max(label.count, 22), withPad: " ", startingAt: 0) + String(
                format: " %7d queries  p50 %8.2f ms  p95 %8.2f ms  p99 %8.2f ms  errors %.2f%%",
                b.count, b.p50Ms, b.p95Ms, b.p99Ms, b.errorRate * 100)
        }
        Output.line(String(
            format: "%d queries, %.0f/s, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, errors %.2f%%, slow %d",
            stats.totalQueries, stats.queriesPerSecond, stats.p50LatencyMs, stats.p95LatencyMs, stats.p99LatencyMs,
            stats.errorRate * 100, stats.slowQueries))
        Output.line("by source:")
        for (name, breakdown) in stats.bySource.sorted(by: { $0.key > $1.key }) { Output.line(line(name, breakdown)) }
        Output.line("by table:")
        for (name, breakdown) in stats.byTable.sorted(by: { $0.key < $1.key }) { Output.line(line(name, breakdown)) }
    }

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.1f s", duration.totalSeconds)
    }
}
