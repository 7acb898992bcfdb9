import Foundation
import TenantryCore

extension MoveOperations {
    /// Runs `body` with the server-move operations over a relay of their own (closed afterwards).
    /// A relay service running elsewhere (`tenantry sync run`, `tenantry serve`) keeps the moves'
    /// streams going between calls.
    public func withServerMoves<Result: Sendable>(
        _ configuration: Relay.Configuration = Relay.Configuration(), _ body: (ServerMoves) async throws -> Result
    ) async throws -> Result {
        try await requireCapture()
        return try await withRelay(configuration) { relay in
            try await body(ServerMoves(operations: operations, unifiedURL: unifiedURL, plan: plan, relay: relay))
        }
    }
}

extension ServerMoves {
    /// What ``run(_:to:reason:maxPause:switchAttempts:archiveDirectory:progress:)`` did.
    public struct RunReport: Sendable, Codable, Equatable {
        /// The start (copy).
        public var start: StartReport
        /// The switch.
        public var switched: SwitchReport
        /// The end (source dropped).
        public var completed: EndReport
        /// Switch attempts that aborted (pause over the limit) before the one that succeeded.
        public var abortedSwitches: Int
    }

    /// One whole move of `tenant` to `server` (what `rebalance --apply` and `servers drain` run):
    /// start, catch up, verify (refuses to switch unless equal), switch (up to `switchAttempts`
    /// times when the pause would exceed `maxPause`), complete. A move that is already under way
    /// for `server` continues from where it is.
    public func run(
        _ tenant: TenantID, to server: String, reason: String? = nil, maxPause: Duration = .milliseconds(500),
        switchAttempts: Int = 5, archiveDirectory: String? = nil, progress: @Sendable (String) -> Void = { _ in }
    ) async throws -> RunReport {
        progress("copying")
        let start = try await start(tenant, to: server, reason: reason)
        var phase = try await catalog.activeServerMove(tenant)?.phase
        var switched = SwitchReport(tenant: tenant, from: start.sourceServer, to: server, pauseMilliseconds: 0, drained: 0)
        var aborted = 0
        if phase == .moving {
            progress("catching up")
            try await catchUp(tenant)
            progress("verifying")
            let report = try await verify(tenant)
            guard report.equal else {
                let differing = report.tables.flatMap(\.differences).prefix(5).map(\.description).joined(separator: "; ")
                throw TenantryError(
                    code: .conflict, message: "tenant \(tenant)'s databases differ (\(differing)); not switched (tenantry move verify)",
                    tenant: tenant.rawValue)
            }
            progress("switching")
            while true {
                do {
                    switched = try await switchTraffic(tenant, maxPause: maxPause)
                    break
                } catch let error as TenantryError where error.code == .timeout && aborted + 1 < max(1, switchAttempts) {
                    aborted += 1
                    try await catchUp(tenant)
                }
            }
            phase = .switched
        }
        guard phase == .switched else {
            throw TenantryError(
                code: .conflict, message: "the move of tenant \(tenant) is \(phase?.rawValue ?? "gone"): cannot complete it",
                tenant: tenant.rawValue)
        }
        progress("completing")
        let completed = try await complete(tenant, archiveDirectory: archiveDirectory)
        return RunReport(start: start, switched: switched, completed: completed, abortedSwitches: aborted)
    }
}
