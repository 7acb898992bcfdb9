import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

/// A phase command of the `tenantry` CLI that the torture kills, and how an operator finishes it
/// afterwards (docs/reliability.md).
enum TortureOperation: String, CaseIterable, Sendable {
    case provision, deprovision, migrateData = "migrate-data", sync, cutover, rollback, retire, restore
    /// Server moves (issue #14): `tenantry move start|switch|reverse|complete|cancel`.
    case moveStart = "move-start", moveSwitch = "move-switch", moveReverse = "move-reverse"
    case moveComplete = "move-complete", moveCancel = "move-cancel"

    /// Where a tenant stands, as `tenantry status` and `tenantry move status` show it.
    struct Situation: Sendable, CustomStringConvertible {
        var provisioned: Bool
        var phase: MovePhase
        var placement: TenantRecord.Placement
        /// The server the catalog places its database on (the live one during a server move).
        var server: String
        /// Its database there.
        var databaseName: String?
        /// Its active server move (phase starting, moving or switched), if any.
        var serverMove: ServerMoveRecord?

        var movePhase: ServerMoveRecord.Phase? { serverMove?.phase }

        /// The server a `move start` sends it to: the active move's target, else the other server.
        var moveTarget: String {
            serverMove?.targetServer ?? (server == ServerDirectory.defaultServerName ? TortureWorld.secondServer : ServerDirectory.defaultServerName)
        }

        var description: String {
            let base = provisioned ? "\(phase)@\(server)" : "unprovisioned/\(phase)"
            guard let move = serverMove else { return base }
            return base + " [move \(move.sourceServer)→\(move.targetServer) \(move.phase.rawValue)]"
        }
    }

    /// Whether this is a server-move verb.
    var isServerMove: Bool { rawValue.hasPrefix("move-") }

    /// Whether the operation makes sense for a tenant in `situation`. The shared → dedicated verbs
    /// are left alone while a server move is active (an operator finishes the server move first).
    func applies(to situation: Situation, archive: String?) -> Bool {
        let phase = situation.phase
        let moving = situation.serverMove != nil
        switch self {
        case .provision: return !situation.provisioned
        case .deprovision: return situation.provisioned && (phase == .shared || phase == .provisioned) && !moving
        case .migrateData: return situation.provisioned && [.shared, .provisioned, .copying].contains(phase) && !moving
        case .sync: return [.syncing, .readsSwitched, .dedicated].contains(phase) || moving
        case .cutover: return [.syncing, .readsSwitched, .cutover].contains(phase) && !moving
        case .rollback: return [.copying, .syncing, .readsSwitched, .cutover, .dedicated].contains(phase) && !moving
        case .retire: return phase == .dedicated && !moving
        case .restore: return phase == .retired && archive != nil && !moving
        case .moveStart:
            return situation.provisioned && situation.placement == .dedicated && [.dedicated, .retired].contains(phase)
                && (situation.serverMove == nil || situation.movePhase == .starting)
        case .moveSwitch: return situation.movePhase == .moving
        case .moveReverse, .moveComplete: return situation.movePhase == .switched
        case .moveCancel: return situation.movePhase == .starting || situation.movePhase == .moving
        }
    }

    /// Whether the operation's work is done for the tenant (`sync` is judged by its exit status).
    func reached(_ situation: Situation) -> Bool {
        switch self {
        case .provision: return situation.provisioned
        case .deprovision: return !situation.provisioned
        case .migrateData: return situation.phase == .syncing
        case .sync: return false
        case .cutover, .restore: return situation.phase == .dedicated && situation.placement == .dedicated
        case .rollback: return situation.phase == .shared && situation.placement == .shared
        case .retire: return situation.phase == .retired
        case .moveStart: return situation.movePhase == .moving || situation.movePhase == .switched
        case .moveSwitch: return situation.movePhase == .switched
        case .moveReverse: return situation.movePhase == .moving
        case .moveComplete, .moveCancel: return situation.serverMove == nil
        }
    }

    /// The command line (run in the torture's working directory).
    func arguments(_ tenant: TenantID, situation: Situation, archive: String?, directory: String) -> [String] {
        let id = tenant.rawValue
        // Absolute: `deprovision` runs pg_dump in another working directory (see docs/reliability.md).
        let archives = directory + "/archives"
        switch self {
        case .provision: return ["provision", id]
        case .deprovision: return ["deprovision", id, "--yes", "--archive-dir", archives + "/deprovisioned"]
        case .migrateData: return ["migrate-data", "--tenant", id]
        case .sync: return ["sync", "run", "--until-caught-up", "--timeout", "120"]
        case .cutover: return ["cutover", "--tenant", id, "--max-pause", "2s"]
        case .rollback: return ["rollback", "--tenant", id]
        case .retire: return ["retire-legacy", "--tenant", id, "--yes", "--archive-dir", archives + "/\(id)", "--json"]
        case .restore: return ["restore-legacy", "--archive-dir", archive ?? "-"]
        case .moveStart: return ["move", "start", "--tenant", id, "--to", situation.moveTarget]
        case .moveSwitch: return ["move", "switch", "--tenant", id, "--max-pause", "2s"]
        case .moveReverse: return ["move", "reverse", "--tenant", id, "--max-pause", "2s"]
        case .moveComplete: return ["move", "complete", "--tenant", id]
        case .moveCancel: return ["move", "cancel", "--tenant", id]
        }
    }

    /// The usual duration of a whole run, seconds (the first guess of the kill delay's range, for
    /// commands the setup did not run; replaced by measured runs).
    var firstEstimate: Double {
        switch self {
        case .provision, .deprovision, .migrateData, .restore: return 0.5
        case .cutover, .rollback: return 0.4
        case .sync: return 0.3
        case .retire: return 0.6
        case .moveStart: return 1.0
        case .moveSwitch, .moveReverse, .moveComplete, .moveCancel: return 0.5
        }
    }
}

extension TortureWorld {
    /// A tenant's situation from the catalog (retried across a server restart).
    func situation(_ tenant: TenantID) async throws -> TortureOperation.Situation {
        var lastError: (any Error)?
        for _ in 0..<30 {
            do {
                let record = try await catalog.tenant(tenant)
                let phase = try await catalog.move(tenant)?.phase ?? .shared
                return .init(
                    provisioned: record?.status == .active && record?.databaseName != nil, phase: phase,
                    placement: record?.placement ?? .shared, server: record?.serverName ?? ServerDirectory.defaultServerName,
                    databaseName: record?.databaseName, serverMove: try await catalog.activeServerMove(tenant))
            } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(500))
            }
        }
        throw lastError ?? TortureError("catalog unreachable")
    }

    /// The newest complete retire-legacy archive of `tenant` (what an operator looks for after a
    /// killed retire-legacy that may have finished).
    func newestArchive(_ tenant: TenantID) -> String? {
        let base = directory + "/archives/\(tenant.rawValue)"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []
        return entries.filter { $0.hasPrefix("retire-") && FileManager.default.fileExists(atPath: "\(base)/\($0)/manifest.json") }
            .sorted().last.map { "\(base)/\($0)" }
    }

    /// Finishes `operation` for `tenant` after a kill or a server restart, as the runbook says:
    /// look at `tenantry status`; re-run the same command (every phase command is resumable, and
    /// `rollback` works from every phase); a dead letter is listed, replayed, and sync re-run; an
    /// aborted cutover or switch is retried; a `move start` that three re-runs did not finish is
    /// cancelled (`move cancel`). Returns the steps taken, or throws when the operation could not
    /// be finished (an unrecoverable round).
    func recover(_ operation: TortureOperation, _ tenant: TenantID, archive: inout String?) async throws -> [String] {
        var steps: [String] = []
        for attempt in 0..<6 {
            let now = try await situation(tenant)
            if operation.reached(now) {
                steps.append("status: \(now)")
                return steps
            }
            if operation == .moveStart, attempt >= 3, now.movePhase == .starting {
                let outcome = try await child.run(TortureOperation.moveCancel.arguments(tenant, situation: now, archive: nil, directory: directory))
                steps.append("move start not finished: move cancel: exit \(outcome.status): \(outcome.lastLine)")
                if try await situation(tenant).serverMove == nil { return steps }
                continue
            }
            let outcome = try await child.run(operation.arguments(tenant, situation: now, archive: archive, directory: directory))
            record(operation, outcome)
            let after = try await situation(tenant)
            if operation == .sync ? outcome.succeeded : operation.reached(after) {
                steps.append("re-ran \(operation.rawValue): ok (\(String(format: "%.1f", outcome.seconds)) s)")
                if operation == .retire { archive = Self.archive(in: outcome.output) ?? newestArchive(tenant) }
                return steps
            }
            steps.append("re-ran \(operation.rawValue): exit \(outcome.status): \(outcome.lastLine)")
            if operation == .retire, after.phase == .retired {
                archive = newestArchive(tenant)
                return steps
            }
            let text = outcome.output
            if operation == .retire, text.contains("differ"), !writers.collisions.isEmpty {
                // Runbook: verify names the differing rows; rows with another shop's ids are the
                // application's error, removed from the tenant database by the operator.
                steps.append("removed \(try await removeCollisions()) colliding row(s) verify named")
                _ = try await child.run(["sync", "run", "--until-caught-up", "--timeout", "60"])
            }
            if text.contains("dead letter") || text.contains("paused") || text.contains("could not be") {
                // Runbook, "A dead letter": list, fix the cause, replay, let sync catch up.
                let (discarded, replayed) = try await resolveDeadLetters()
                _ = try await child.run(["sync", "run", "--until-caught-up", "--timeout", "60"])
                steps.append("dead letters: \(discarded) cross-tenant discarded, \(replayed) replayed; sync run --until-caught-up")
            }
            try await Task.sleep(for: .milliseconds(300 * (attempt + 1)))
        }
        var evidence = ""
        if try await situation(tenant).serverMove != nil {
            // What an operator looks at next (and what a bug report needs).
            let status = try await child.run(["move", "status", "--tenant", tenant.rawValue])
            let letters = try await child.run(["dlq", "list"])
            evidence = "; move status: \(status.output.split(separator: "\n").prefix(4).joined(separator: " | "))"
                + "; dlq list: \(letters.output.split(separator: "\n").prefix(3).joined(separator: " | "))"
        }
        throw TortureError("\(operation.rawValue) of tenant \(tenant) not finished after the runbook's steps: \(steps.suffix(2))\(evidence)")
    }

    /// The archive path in retire-legacy's JSON report.
    static func archive(in output: String) -> String? {
        for line in output.split(separator: "\n").reversed() where line.hasPrefix("{") {
            if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
               let archive = object["archive"] as? String {
                return archive
            }
        }
        return nil
    }

    /// Remembers how long a whole run took (the next kill delays are drawn up to it).
    func record(_ operation: TortureOperation, _ outcome: TenantryChild.Outcome) {
        guard outcome.succeeded, !outcome.killed else { return }
        estimates.withLockedValue { estimates in
            let seconds = outcome.seconds
            estimates[operation] = max(0.2, estimates[operation].map { $0 * 0.5 + seconds * 0.5 } ?? seconds)
        }
    }

    func estimate(_ operation: TortureOperation) -> Double {
        estimates.withLockedValue { $0[operation] ?? operation.firstEstimate }
    }
}
