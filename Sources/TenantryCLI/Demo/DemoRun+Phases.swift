import Foundation
import HandyShop
import Tenantry
import TenantryCore

extension DemoRun {
    /// The phases of the move under load, each one the library operation its CLI command runs.
    struct Steps: Sendable {
        let run: DemoRun
        let log: PhaseLog
        let operations: Operations
        let move: MoveOperations
        /// The relay running as a service (what 'tenantry sync run' runs).
        let relay: Relay
        let load: HandyShopLoad
        let shops: [TenantID]
        /// The fleet migrations directory, as 'tenantry schema derive' writes it.
        let migrations: String

        private var options: Options { run.options }
        private func pause() async throws { try await Task.sleep(for: .seconds(options.phaseSeconds)) }
        /// Per-tenant progress lines, as the CLI commands print them.
        private var progress: ProgressHandler? { Output.progress(quiet: false) }

        // swiftlint:disable:next function_body_length
        func phasesUnderLoad() async throws -> Report {
            _ = try await log.run("load on the unified database") {
                try await pause(); try await pause()
                let report = load.report()
                return ((), "\(report.operations) operations, \(report.errors) errors")
            }
            _ = try await log.run("provision") {
                let report = try await operations.provision(
                    .tenants(shops), concurrency: 4, migrationsDirectory: migrations, progress: progress)
                try Self.requireNoFailure(report.failed, "provision")
                return ((), "\(shops.count) tenant databases, each with its own role")
            }
            let writesBefore = load.acknowledgedWrites
            let rowsMoved = try await log.run("migrate-data") {
                let report = try await move.migrateData(.tenants(shops), concurrency: 2, captureTimeout: .seconds(60), progress: progress)
                try Self.requireNoFailure(report.failed, "migrate-data")
                let rows = report.copied.reduce(0) { $0 + $1.rows }
                return (rows, "\(rows) rows copied in one snapshot per shop; capture on, tenants syncing")
            }
            _ = try await log.run("dual-write") {
                try await pause()
                // The relay service applies captured writes; wait until it has caught up.
                let caughtUp = try await relay.catchUp(shops, timeout: .seconds(120))
                guard caughtUp.paused.isEmpty else {
                    throw TenantryError(code: .conflict, message: "sync paused for \(caughtUp.paused.keys.sorted()) (dead letters)")
                }
                return ((), "\(relay.statistics.applied) captured changes applied by the relay, 0 dead letters")
            }
            let firstCheck = try await log.run("verify-sync") {
                let report = try await move.verify(.tenants(shops), progress: progress)
                return (report.tenants, "\(report.tenants.filter(\.equal).count)/\(report.tenants.count) shops equal, "
                    + "row by row (checksummed chunks)")
            }
            try await switchReads()

            let cutover = try await log.run("cutover") {
                let report = try await move.cutover(.tenants(shops), maxPause: .milliseconds(500), retries: 5, progress: progress)
                try Self.requireNoFailure(report.failed, "cutover")
                let maximum = report.cutover.map(\.pauseMilliseconds).max() ?? 0
                return (report, "\(shops.count) shops dedicated; longest write pause \(String(format: "%.1f", maximum)) ms"
                    + (report.retries > 0 ? ", \(report.retries) retried" : ""))
            }
            let writesAtCutover = load.acknowledgedWrites

            _ = try await log.run("load on tenant databases") {
                try await pause(); try await pause()
                let report = load.report()
                return ((), "\(report.writesBySource["tenant"] ?? 0) writes served by tenant databases so far")
            }
            let secondCheck = try await log.run("verify (reverse sync)") {
                let report = try await move.verify(.tenants(shops), progress: progress)
                return (report.tenants, "\(report.tenants.filter(\.equal).count)/\(report.tenants.count) shops: "
                    + "unified still equal to each tenant database")
            }

            let archive = run.archiveDirectory
            let retired = try await log.run("retire-legacy") {
                let report = try await move.retire(nil, archiveDirectory: archive, dryRun: false)
                let rows = report.tables.reduce(0) { $0 + $1.rows }
                return (report, "\(rows) rows archived to \(report.archive ?? "-") and deleted from unified")
            }

            _ = try await log.run("load after retirement") {
                try await pause()
                return ((), "")
            }
            await load.stop()
            let lost = try await log.run("final check") {
                let lost = try await load.lostWrites()
                return (lost, "\(load.acknowledgedWrites) acknowledged writes looked up row by row: \(lost.count) missing or different")
            }
            return report(
                rowsMoved: rowsMoved, writesDuringMove: writesAtCutover - writesBefore, checks: firstCheck + secondCheck,
                cutover: cutover, retired: retired, lost: lost)
        }

        /// Reads: canary → percentage 50 → tenant, with fallback on, as 'tenantry reads' sets them.
        private func switchReads() async throws {
            var canary = Operations.ReadPolicyChange(strategy: .canary)
            canary.canaryIDs = [shops[0]]
            canary.enableFallback = true
            var percentage = Operations.ReadPolicyChange(strategy: .percentage)
            percentage.percentage = 50
            for (name, change) in [
                ("reads canary", canary), ("reads percentage 50", percentage), ("reads tenant", .init(strategy: .tenant)),
            ] {
                _ = try await log.run(name) {
                    _ = try await operations.setReads(change)
                    try await pause()
                    let report = load.report()
                    return ((), "tenant reads so far \(report.tenant?.count ?? 0), load errors \(report.errors)")
                }
            }
        }

        /// Throws the first tenant's failure; `CancellationError` when the failures are a signal's doing.
        private static func requireNoFailure(_ failed: [String: String], _ phase: String) throws {
            try Task.checkCancellation()
            guard let (tenant, reason) = failed.sorted(by: { $0.key < $1.key }).first else { return }
            throw TenantryError(code: .conflict, message: "\(phase) failed for shop \(tenant): \(reason)", tenant: tenant)
        }

        private func report(
            rowsMoved: Int, writesDuringMove: Int, checks: [Verifier.Report], cutover: MoveOperations.CutoverReport,
            retired: Retirement.Report, lost: [String]
        ) -> Report {
            let loadReport = load.report()
            let differences = checks.filter { !$0.equal }.flatMap { report in
                report.tables.flatMap { $0.differences.map { "shop \(report.tenant): \($0)" } }
            }
            let verified = checks.count == 2 * shops.count && checks.allSatisfy(\.equal) && lost.isEmpty
            let pauses = cutover.cutover.map(\.pauseMilliseconds).sorted()
            return Report(
                verified: verified, lostRows: lost.count + differences.count, loadErrors: loadReport.errors,
                p50MsUnified: loadReport.unified?.p50, p95MsUnified: loadReport.unified?.p95, p99MsUnified: loadReport.unified?.p99,
                p50MsTenant: loadReport.tenant?.p50, p95MsTenant: loadReport.tenant?.p95, p99MsTenant: loadReport.tenant?.p99,
                shops: shops.count, rowsMoved: rowsMoved, writesDuringMove: writesDuringMove,
                loadOperations: loadReport.operations, loadThroughput: loadReport.throughput,
                cutoverPauseMsMax: ((pauses.last ?? 0) * 10).rounded() / 10,
                cutoverPauseMsP50: ((pauses.isEmpty ? 0 : pauses[pauses.count / 2]) * 10).rounded() / 10,
                cutoverRetries: cutover.retries, rowsRetired: retired.tables.reduce(0) { $0 + $1.rows }, archive: retired.archive,
                phases: [], lost: Array(lost.prefix(20)), errorSamples: loadReport.errorSamples, differences: Array(differences.prefix(20)))
        }
    }
}
