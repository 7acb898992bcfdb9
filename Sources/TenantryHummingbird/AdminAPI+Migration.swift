import Foundation
import Hummingbird
import Tenantry
import TenantryCore

extension AdminAPI {
    /// The seeds' `/api/superadmin/migration/*` endpoints.
    func addMigrationRoutes<Context: ActorRequestContext>(to group: RouterGroup<Context>) {
        let limit = AdminRequestContext.bodyLimit
        group.get("status") { _, context in
            let operations = try await operations(for: context)
            var status = try JSONValue(encoding: try await operations.status()).object ?? [:]
            status["relay"] = try relay.map { try JSONValue(encoding: $0.statistics) } ?? .null
            status["jobs"] = .object(Dictionary(grouping: jobs.all(), by: \.state.rawValue).mapValues { .integer(Int64($0.count)) })
            return try Self.json(JSONValue.object(status))
        }

        group.post("provision-all") { request, context in
            try await audited(context, "provision-all") {
                var request = request
                let body = try await request.decodeAdminBody(ProvisionRequest.self, limit: limit)
                let concurrency = try checked(body.concurrency, "concurrency", in: 1...64, default: 4)
                let ids = try body.selection()
                let operations = try await operations(for: context)
                // Fails now, not in the job, when the key or the migrations are missing.
                _ = try operations.provisioner(migrationsDirectory: configuration.migrationsDirectory)
                if let ids {
                    let known = Set(try await operations.unifiedTenants())
                    if let unknown = ids.first(where: { !known.contains($0) }) { throw AdminError.tenantNotFound(unknown) }
                }
                let (server, directory) = (body.server, configuration.migrationsDirectory)
                return try await accepted(context, kind: "provision-all", detail: ["tenants": Self.describe(ids)]) { reporter in
                    let report = try await operations.provision(
                        ids.map { .tenants($0) } ?? .all, concurrency: concurrency, server: server, migrationsDirectory: directory,
                        progress: reporter.update)
                    return AdminJobs.Outcome(result: try JSONValue(encoding: report), failure: Self.partialFailure(report.failed))
                }
            }
        }

        group.post("migrate-data") { request, context in
            try await audited(context, "migrate-data") {
                var request = request
                let body = try await request.decodeAdminBody(MigrateDataRequest.self, limit: limit)
                let concurrency = try checked(body.concurrency, "concurrency", in: 1...32, default: 2)
                let timeout = try checked(body.captureTimeoutSeconds, "captureTimeoutSeconds", in: 1...3600, default: 30)
                let ids = try body.selection()
                let operations = try await operations(for: context)
                try await requireKnown(ids, operations)
                let move = try await operations.move()
                try await move.requireCapture()
                let pause = configuration.pauseSyncAfterCopy
                return try await accepted(
                    context, kind: "migrate-data", detail: ["tenants": Self.describe(ids)],
                    AdminJobs.migrateData(
                        move, ids.map { .tenants($0) } ?? .all, concurrency: concurrency, captureTimeout: .seconds(timeout), pauseSync: pause))
            }
        }

        group.post("enable-dual-write") { request, context in
            try await audited(context, "enable-dual-write") {
                var request = request
                let body = try await request.decodeAdminBody(DualWriteRequest.self, limit: limit)
                let ids = try body.selection()
                let enabled = body.enabled ?? true
                let operations = try await operations(for: context)
                try await requireKnown(ids, operations)
                let changed = try await operations.move().setDualWrite(ids.map { .tenants($0) } ?? .all, enabled: enabled)
                await audit(context, "enable-dual-write", outcome: .ok, ["enabled": "\(enabled)", "tenants": Self.describe(changed)])
                return try Self.json(DualWriteResponse(enabled: enabled, tenants: changed))
            }
        }

        group.post("verify-sync") { request, context in
            try await audited(context, "verify-sync") {
                var request = request
                let body = try await request.decodeAdminBody(VerifySyncRequest.self, limit: limit)
                let chunkSize = try checked(body.chunkSize, "chunkSize", in: 2...10_000_000, default: 10_000)
                let ids = try body.selection()
                let operations = try await operations(for: context)
                try await requireKnown(ids, operations)
                let move = try await operations.move()
                return try await accepted(
                    context, kind: "verify-sync", detail: ["tenants": Self.describe(ids)],
                    AdminJobs.verify(move, ids.map { .tenants($0) } ?? .all, chunkSize: chunkSize))
            }
        }

        group.post("activate-reads") { request, context in
            try await audited(context, "activate-reads") {
                var request = request
                let body = try await request.decodeAdminBody(ActivateReadsRequest.self, limit: limit)
                guard let strategy = ReadPolicy.Strategy(body.strategy) else {
                    throw AdminError(
                        .badRequest, code: "invalid_argument",
                        "unknown strategy '\(body.strategy.prefix(40))': use one of "
                            + ReadPolicy.Strategy.all.map(\.rawValue).joined(separator: ", "))
                }
                var change = Operations.ReadPolicyChange(strategy: strategy)
                change.percentage = body.percentage
                change.shopIDs = try parseTenants(body.shops, field: "shops")
                change.canaryIDs = try parseTenants(body.canary, field: "canary")
                change.enableFallback = body.enableFallback
                change.verifyConsistency = body.verifyConsistency
                change.verifySampleRate = body.sampleRate
                let operations = try await operations(for: context)
                try await requireKnown((change.shopIDs ?? []) + (change.canaryIDs ?? []), operations)
                return try Self.json(try await operations.setReads(change))
            }
        }

        group.post("rollback-reads") { request, context in
            try await audited(context, "rollback-reads") {
                var request = request
                _ = try await request.decodeAdminBody(EmptyRequest.self, limit: limit)
                return try Self.json(try await operations(for: context).rollbackReads())
            }
        }

        group.get("performance") { request, context in
            try await audited(context, "performance") {
                let seconds = try Self.queryInteger(request, "measureSeconds", in: 0...configuration.maxMeasureSeconds) ?? 0
                let tenants = try parseTenants(request.uri.queryParameters.get("tenant").map { $0.split(separator: ",").map(String.init) })
                let operations = try await operations(for: context)
                try await requireKnown(tenants, operations)
                var workload: ComparisonWorkload.Report?
                if seconds > 0 {
                    workload = try await operations.measurePerformance(tenants: tenants, duration: .seconds(seconds), monitor: monitor)
                    await audit(context, "performance", outcome: .ok, ["measureSeconds": "\(seconds)"])
                }
                return try Self.json(PerformanceResponse(stats: monitor.stats(), comparison: monitor.compare(), workload: workload))
            }
        }

        group.get("dead-letters") { request, context in
            let tenants = try parseTenants(request.uri.queryParameters.get("tenant").map { $0.split(separator: ",").map(String.init) })
            let operations = try await operations(for: context)
            try await requireKnown(tenants, operations)
            let move = try await operations.move()
            try await move.requireCapture()
            return try Self.json(DeadLettersResponse(deadLetters: try await move.deadLetters().list(tenants: tenants)))
        }

        group.post("retire-legacy") { request, context in
            try await audited(context, "retire-legacy") {
                var request = request
                let body = try await request.decodeAdminBody(RetireRequest.self, limit: limit)
                // A dry run unless the request says otherwise, and a real one only with confirm.
                let dryRun = body.dryRun ?? true
                guard dryRun || body.confirm == true else {
                    throw AdminError(
                        .badRequest, code: "confirmation_required",
                        "\"dryRun\": false deletes rows from the unified database: send \"confirm\": true with it")
                }
                let ids = try body.selection()
                let operations = try await operations(for: context)
                try await requireKnown(ids, operations)
                let move = try await operations.move()
                let archive = configuration.archiveDirectory
                return try await accepted(
                    context, kind: "retire-legacy", detail: ["tenants": Self.describe(ids), "dryRun": "\(dryRun)"],
                    AdminJobs.retire(move, ids, archiveDirectory: archive, dryRun: dryRun))
            }
        }

        group.post("cutover") { request, context in
            try await audited(context, "cutover") {
                var request = request
                let body = try await request.decodeAdminBody(CutoverRequest.self, limit: limit)
                let pause = try checked(body.maxPauseMs, "maxPauseMs", in: 1...600_000, default: 500)
                let ids = try body.selection()
                let operations = try await operations(for: context)
                try await requireKnown(ids, operations)
                let move = try await operations.move()
                return try await accepted(
                    context, kind: "cutover", detail: ["tenants": Self.describe(ids)],
                    AdminJobs.cutover(move, ids.map { .tenants($0) } ?? .all, maxPause: .milliseconds(pause)))
            }
        }

        group.post("rollback") { request, context in
            try await audited(context, "rollback") {
                var request = request
                let body = try await request.decodeAdminBody(RollbackRequest.self, limit: limit)
                let pause = try checked(body.maxPauseMs, "maxPauseMs", in: 1...600_000, default: 5_000)
                guard let ids = try parseTenants(body.tenants) else {
                    throw AdminError(.badRequest, code: "invalid_argument", "rollback needs \"tenants\": [ids]")
                }
                let operations = try await operations(for: context)
                try await requireKnown(ids, operations)
                let move = try await operations.move()
                return try await accepted(
                    context, kind: "rollback", detail: ["tenants": Self.describe(ids)],
                    AdminJobs.rollback(move, ids, maxPause: .milliseconds(pause)))
            }
        }
    }

    /// A job failure naming the tenants that failed, or `nil` when none did.
    static func partialFailure(_ failed: [String: String]) -> AdminError? {
        guard !failed.isEmpty else { return nil }
        let names = failed.keys.sorted().prefix(20).joined(separator: ", ")
        return AdminError(.conflict, code: "partial_failure", "\(failed.count) tenant(s) failed: \(names) (see result.failed)")
    }

    /// `all` or the ids, for the audit log.
    static func describe(_ ids: [TenantID]?) -> String {
        guard let ids else { return "all" }
        let shown = ids.prefix(50).map(\.rawValue).joined(separator: ",")
        return ids.count > 50 ? shown + ",… (\(ids.count))" : shown
    }

    /// An integer query parameter in `range` (400 otherwise), `nil` when absent.
    static func queryInteger(_ request: Request, _ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = request.uri.queryParameters.get(name) else { return nil }
        guard let value = Int(String(text)), range.contains(value) else {
            throw AdminError(.badRequest, code: "invalid_argument", "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }
}

/// A body with no fields (`rollback-reads`).
struct EmptyRequest: AdminRequestBody {
    static let fields: Set<String> = []
}
