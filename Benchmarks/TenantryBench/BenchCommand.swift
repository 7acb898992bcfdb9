import ArgumentParser

/// `tenantry-bench`: benchmarks against named anchors, in the same run, reported as ratios.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenantry-bench",
        abstract: "Benchmarks of Tenantry against named anchors, measured in the same run (see Benchmarks/README.md).",
        subcommands: [MigrateBench.self, ProvisionBench.self, RouterBench.self, CopyBench.self, CaptureBench.self, CutoverBench.self, ServerMoveBench.self, TortureBench.self, FleetQueryBench.self, BackupBench.self, ConsoleBench.self, CatalogBench.self, RetireBench.self, PgBouncerBench.self])
}
