import Foundation
import TenantryCore

/// A rebalance or drain plan with the measures it was made from (`tenantry rebalance --plan`).
public struct RebalancePlanReport: Sendable, Codable, Equatable {
    /// The moves, why, and each server before and after.
    public var plan: RebalancePlanner.Plan
    /// The measures.
    public var measure: FleetMeasure
    /// The server being drained, for a drain.
    public var draining: String?
}

/// What applying a plan did (`tenantry rebalance --apply`, `servers drain`).
public struct RebalanceApplyReport: Sendable, Codable, Equatable {
    /// One tenant moved.
    public struct Moved: Sendable, Codable, Equatable {
        /// The tenant.
        public var tenant: TenantID
        /// The server it left.
        public var from: String
        /// The server it is on now.
        public var to: String
        /// Why it moved.
        public var reason: String
        /// Its write pause at the switch, in milliseconds, when the engine reports one.
        public var pauseMilliseconds: Double?
    }

    /// The moves that finished, in completion order.
    public var moved: [Moved]
    /// Tenant id → why its move failed (it stays on, or went back to, its server).
    public var failed: [String: String]
    /// What the plan could not fix.
    public var unresolved: [String]
    /// How long it took.
    public var seconds: Double
    /// The longest write pause of all the switches, in milliseconds.
    public var longestPauseMilliseconds: Double? { moved.compactMap(\.pauseMilliseconds).max() }
}

extension Operations {
    /// Measures the fleet (``FleetMeasure``; the default server's cap is the pool's per-server cap).
    public func measureFleet(sample: Duration = .seconds(1)) async throws -> FleetMeasure {
        try await FleetMeasure.measure(
            catalog: catalog, directory: servers, defaultMaxConnections: configuration.pool.maxPerServer, sample: sample, logger: logger)
    }

    /// The rebalance plan for the fleet as measured now (nothing changes).
    public func rebalancePlan(
        options: RebalancePlanner.Options = RebalancePlanner.Options(), sample: Duration = .seconds(1)
    ) async throws -> RebalancePlanReport {
        let measure = try await measureFleet(sample: sample)
        let input = measure.planner()
        return RebalancePlanReport(
            plan: RebalancePlanner(options: options).plan(servers: input.servers, tenants: input.tenants), measure: measure)
    }

    /// The plan that moves every tenant off `server` to the servers with room (nothing changes);
    /// one clear error, naming each tenant that has nowhere to go, when the others lack room.
    public func drainPlan(_ server: String, sample: Duration = .seconds(1)) async throws -> RebalancePlanReport {
        let measure = try await measureFleet(sample: sample)
        guard measure.servers.contains(where: { $0.name == server }) else {
            throw TenantryError(code: .invalidArgument, message: "server '\(server)' is not registered (tenantry servers list)")
        }
        let input = measure.planner(draining: [server])
        let plan = RebalancePlanner(options: .drainOnly).plan(servers: input.servers, tenants: input.tenants)
        guard plan.unresolved.isEmpty else {
            throw TenantryError(
                code: .conflict,
                message: "cannot drain server \(server), nothing was moved: " + plan.unresolved.joined(separator: "; "))
        }
        return RebalancePlanReport(plan: plan, measure: measure, draining: server)
    }

    /// Runs `report`'s moves as server moves (start, catch up, verify, switch, complete; see
    /// ``ServerMoves``), `concurrency` at a time. A move that fails is reported and the others go
    /// on; the failed tenant stays where the engine leaves it (its source, unless it switched).
    public func applyRebalance(
        _ report: RebalancePlanReport, concurrency: Int = 1, maxPause: Duration = .milliseconds(500),
        archiveDirectory: String? = nil, progress: ProgressHandler? = nil
    ) async throws -> RebalanceApplyReport {
        guard (1...64).contains(concurrency) else {
            throw TenantryError(code: .invalidArgument, message: "concurrency must be from 1 to 64 (got \(concurrency))")
        }
        let started = ContinuousClock.now
        let moves = report.plan.moves
        var result = RebalanceApplyReport(moved: [], failed: [:], unresolved: report.plan.unresolved, seconds: 0)
        if !moves.isEmpty {
            let total = moves.count
            try await withServerMover(maxPause: maxPause, archiveDirectory: archiveDirectory, progress: progress, total: total) { mover in
                try await forEachConcurrently(moves, concurrency: concurrency, mover) { index, outcome, done in
                    let move = moves[index]
                    switch outcome {
                    case .success(let pause):
                        result.moved.append(RebalanceApplyReport.Moved(
                            tenant: move.tenant, from: move.from, to: move.to, reason: move.reason, pauseMilliseconds: pause))
                        let paused = pause.map { String(format: ", writes paused %.1f ms", $0) } ?? ""
                        progress?(OperationProgress(
                            done: done, total: moves.count, tenant: move.tenant, message: "moved \(move.from) → \(move.to)\(paused)"))
                    case .failure(let error):
                        result.failed[move.tenant.rawValue] = Database.oneLine(error)
                        progress?(OperationProgress(
                            done: done, total: moves.count, tenant: move.tenant, failed: true,
                            message: "FAILED \(move.from) → \(move.to): \(Database.oneLine(error))"))
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        result.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        try await catalog.audit(
            actor: actor, action: report.draining == nil ? "rebalance.apply" : "servers.drain",
            outcome: result.failed.isEmpty ? .ok : .failed,
            detail: ["moves": "\(moves.count)", "moved": "\(result.moved.count)", "failed": "\(result.failed.count)"]
                .merging(report.draining.map { ["server": $0] } ?? [:]) { a, _ in a })
        return result
    }
}
