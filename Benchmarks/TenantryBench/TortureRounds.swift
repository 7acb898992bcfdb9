import EmbeddedPostgres
import Foundation
import HandyShop
import Tenantry
import TenantryCore

extension TortureBench {
    /// The counts over all rounds.
    struct Tally: Sendable {
        var rounds = 0
        var kills = 0
        var restarts = 0
        /// Of those, restarts of the second server.
        var secondRestarts = 0
        /// Rounds whose `move start` was finished by `move cancel` instead.
        var cancelledStarts = 0
        var finishedFirst = 0
        /// Commands still running 30 s after a server restart (then killed).
        var hung = 0
        /// Rounds whose HandyShop load did not stop within a minute (an operation never ended).
        var hungLoads = 0
        var unrecoverable = 0
        var collisionsRemoved = 0
        var killsByOperation: [String: Int] = [:]
        var unrecoverableExamples: [String] = []
        var settleNotes: [String] = []
        var findings = TortureFindings()
    }

    func rounds(_ world: TortureWorld) async throws -> [String: any Sendable] {
        var random = SeededRandom(seed: seed, stream: "torture rounds")
        var tally = Tally()
        var cycle: [TortureOperation] = []
        for round in 1...rounds {
            let load = try HandyShopLoad(
                router: world.router, shops: world.bed.shops,
                options: .init(rate: 20, workers: 4, writeShare: 0.5, seed: seed &* 10_000 &+ UInt64(round)))
            world.loads.withLockedValue { $0.append(load) }
            let loadTask = Task { await load.run() }
            // Shops with an active server move write colliding ids too: their reverse dead letters
            // live in the move's other database, where `tenantry dlq` resolves them.
            var exempt: Set<TenantID> = []
            if noCollideWhileMoving {
                for shop in world.bed.shops where try await world.situation(shop).serverMove != nil { exempt.insert(shop) }
            }
            world.writers.setColliding(true, except: exempt)
            let writerTask = Task { await world.writers.run(round: round, workers: writers, pause: .milliseconds(40)) }
            // Colliding ids are written before the operation only, then removed by the operator
            // (what they did to unified stays for the checks): retire-legacy verifies first and
            // would refuse while the application keeps writing them.
            try await Task.sleep(for: .milliseconds(600))
            world.writers.setColliding(false)
            try await Task.sleep(for: .milliseconds(300))
            tally.collisionsRemoved += try await world.removeCollisions()
            _ = try await world.resolveDeadLetters()
            // The relay refuses what the colliding writes did to unified (a dead letter, paused
            // tenant) within moments: let it, and resolve those letters before the operation.
            _ = try await world.child.run(["sync", "run", "--until-caught-up", "--timeout", "60"])
            _ = try await world.resolveDeadLetters()

            if cycle.isEmpty { cycle = TortureOperation.allCases.shuffled(using: &random) }
            world.step("round \(round): picking an operation")
            guard let (operation, tenant) = try await pick(world, wanted: cycle.removeFirst(), random: &random) else {
                // Every shop left alone after unrecoverable rounds: the run ends with what it has.
                Bench.note("round \(round): no operation applies to a shop that is not left alone; stopping early")
                world.writers.stop()
                await writerTask.value
                _ = try await TortureWriters.within(.seconds(60)) { await load.stop() }
                world.loads.withLockedValue { $0.removeAll { $0 === load } }
                break
            }
            var archive = world.archives.withLockedValue { $0[tenant] }
            let before = try await world.situation(tenant)
            var faults: [String] = []
            for _ in 0..<(1 + random.int(0..<killsPerRound)) {
                let now = try await world.situation(tenant)
                guard operation.applies(to: now, archive: archive), !operation.reached(now) else { break }
                let restart = world.server != nil && random.unit() < restartShare
                let target = restart ? world.restartTarget(operation, now, draw: random.unit()) : nil
                let delay = random.unit() * world.estimate(operation)
                let fault = try await interrupt(
                    world, operation, tenant, situation: now, archive: archive, after: delay, restart: target, tally: &tally)
                faults.append(fault)
                if fault.hasPrefix("finished") { break }
            }
            var recovery: [String]
            world.step("round \(round): recovering \(operation.rawValue) of tenant \(tenant)")
            do {
                recovery = try await world.recover(operation, tenant, archive: &archive)
                if recovery.contains(where: { $0.hasPrefix("move start not finished") }) { tally.cancelledStarts += 1 }
            } catch {
                tally.unrecoverable += 1
                recovery = ["UNRECOVERABLE: \(error)"]
                if tally.unrecoverableExamples.count < 10 { tally.unrecoverableExamples.append("round \(round): \(error)") }
                world.quarantined.withLockedValue { _ = $0.insert(tenant) }
            }
            if operation == .retire, try await world.situation(tenant).phase == .retired {
                // The archive of *this* retirement, however it finished (a run that finished before
                // the kill, or a killed one that had finished): the newest complete one. Restoring
                // an older archive would put back stale rows (restore-legacy accepts it; see
                // docs/reliability.md).
                archive = world.newestArchive(tenant)
            }
            world.archives.withLockedValue { $0[tenant] = archive }

            try await Task.sleep(for: .milliseconds(300))
            world.step("round \(round): stopping the writers")
            world.writers.stop()
            await writerTask.value
            world.step("round \(round): stopping the HandyShop load")
            let stopped = try await TortureWriters.within(.seconds(60)) { await load.stop() } != nil
            if stopped {
                await loadTask.value
            } else {
                // An operation of the load never ended (a query on a connection a restart closed):
                // its writes cannot be checked (lostWrites refuses while it runs); counted.
                tally.hungLoads += 1
                world.loads.withLockedValue { $0.removeAll { $0 === load } }
            }
            world.step("round \(round): sync catching up")
            if let note = try await world.settle(), tally.settleNotes.count < 10 { tally.settleNotes.append("round \(round): \(note)") }
            let previous = tally.findings
            world.step("round \(round): checking")
            try await world.check(into: &tally.findings)
            tally.collisionsRemoved += try await world.removeCollisions()
            _ = try await world.resolveDeadLetters()
            tally.rounds = round
            let found = tally.findings
            Bench.note("""
                round \(round)/\(rounds): \(operation.rawValue) tenant \(tenant) (\(before) → \(try await world.situation(tenant)))
                  faults: \(faults.joined(separator: "; "))
                  recovery: \(recovery.joined(separator: "; "))
                  checks: lost +\(found.lost.count - previous.lost.count), duplicated +\(found.duplicated.count - previous.duplicated.count), \
                cross-tenant +\(found.crossTenant.count - previous.crossTenant.count), \
                copy differences +\(found.differences.count - previous.differences.count) \
                (acknowledged so far \(acknowledged(world)), kills \(tally.kills), restarts \(tally.restarts))
                """)
            for line in found.lost.subtracting(previous.lost).sorted().prefix(3) { Bench.note("    lost: \(line)") }
            for line in found.crossTenant.subtracting(previous.crossTenant).sorted().prefix(3) { Bench.note("    cross-tenant: \(line)") }
            for line in found.differences.subtracting(previous.differences).sorted().prefix(3) { Bench.note("    differs: \(line)") }
        }
        return fields(world, tally)
    }

    /// Starts the operation and, after `delay` seconds, kills it or restarts the server under it.
    private func interrupt(
        _ world: TortureWorld, _ operation: TortureOperation, _ tenant: TenantID, situation: TortureOperation.Situation,
        archive: String?, after delay: Double, restart: (name: String, server: EmbeddedPostgres)?, tally: inout Tally
    ) async throws -> String {
        let delayText = String(format: "%.2f s", delay)
        let running = try world.child.start(operation.arguments(tenant, situation: situation, archive: archive, directory: world.directory))
        if await running.wait(timeout: .milliseconds(Int64(delay * 1000))) != nil {
            let outcome = await running.finish()
            world.record(operation, outcome)
            tally.finishedFirst += 1
            return "finished before \(delayText) (exit \(outcome.status))"
        }
        if let (name, server) = restart {
            world.step("restarting PostgreSQL (\(name)) under \(operation.rawValue)")
            try await server.restart(mode: .immediate)
            world.step("waiting for \(operation.rawValue) after the restart")
            tally.restarts += 1
            if name != ServerDirectory.defaultServerName { tally.secondRestarts += 1 }
            // An operator gives a command half a minute after the server is back, then kills it.
            let hung = await running.wait(timeout: .seconds(30)) == nil
            if hung {
                running.kill()
                tally.hung += 1
            }
            let outcome = await running.finish()
            return "PostgreSQL \(name) restarted (immediate) at \(delayText): the command "
                + (hung ? "hung, killed after 30 s" : "exited \(outcome.status)")
        }
        running.kill()
        let outcome = await running.finish()
        guard outcome.killed else { return "finished at \(delayText), as the kill came (exit \(outcome.status))" }
        tally.kills += 1
        tally.killsByOperation[operation.rawValue, default: 0] += 1
        return "SIGKILL at \(delayText)"
    }

    /// The operation wanted this round for a tenant it applies to; else any that applies.
    private func pick(
        _ world: TortureWorld, wanted: TortureOperation, random: inout SeededRandom
    ) async throws -> (TortureOperation, TenantID)? {
        var pairs: [(TortureOperation, TenantID)] = []
        for shop in world.bed.shops where !world.quarantined.withLockedValue({ $0.contains(shop) }) {
            let situation = try await world.situation(shop)
            let archive = world.archives.withLockedValue { $0[shop] }
            for operation in TortureOperation.allCases where operation.applies(to: situation, archive: archive) {
                pairs.append((operation, shop))
            }
        }
        let matching = pairs.filter { $0.0 == wanted }
        let choices = matching.isEmpty ? pairs : matching
        guard !choices.isEmpty else { return nil }
        return choices[random.int(0..<choices.count)]
    }

    private func acknowledged(_ world: TortureWorld) -> Int {
        world.writers.counters.acknowledged.values.reduce(0, +) + world.loads.withLockedValue { $0.reduce(0) { $0 + $1.acknowledgedWrites } }
    }

    private func fields(_ world: TortureWorld, _ tally: Tally) -> [String: any Sendable] {
        let counters = world.writers.counters
        let found = tally.findings
        return [
            "rounds": tally.rounds,
            "kills": tally.kills,
            "server_restarts": tally.restarts,
            "second_server_restarts": tally.secondRestarts,
            "move_starts_cancelled": tally.cancelledStarts,
            "move_verifies": world.verifiedMoves.withLockedValue { $0 },
            "acknowledged_writes": acknowledged(world),
            "lost_writes": found.lost.count,
            "duplicated_rows": found.duplicated.count,
            "cross_tenant_changes": found.crossTenant.count,
            "unrecoverable_rounds": tally.unrecoverable,
            "copy_differences": found.differences.count,
            "kills_by_operation": tally.killsByOperation,
            "finished_before_fault": tally.finishedFirst,
            "hung_after_restart": tally.hung,
            "hung_loads": tally.hungLoads,
            "stuck_transactions": counters.stuck,
            "acknowledged_by_isolation": Dictionary(uniqueKeysWithValues: counters.acknowledged.map { ($0.key.rawValue, $0.value) }),
            "handyshop_writes": world.loads.withLockedValue { $0.reduce(0) { $0 + $1.acknowledgedWrites } },
            "writer_retries": counters.retries,
            "writes_given_up": counters.gaveUp,
            "colliding_writes": counters.collisions,
            "collisions_removed": tally.collisionsRemoved,
            "cross_tenant_letters_discarded": world.discardedLetters.withLockedValue { $0 },
            "in_doubt_commits": found.inDoubt,
            "lost_examples": Array(found.lost.sorted().prefix(10)),
            "duplicated_examples": Array(found.duplicated.sorted().prefix(5)),
            "cross_tenant_examples": Array(found.crossTenant.sorted().prefix(10)),
            "copy_difference_examples": Array(found.differences.sorted().prefix(10)),
            "unrecoverable_examples": tally.unrecoverableExamples,
            "settle_notes": tally.settleNotes,
            "writer_errors": counters.firstErrors,
            "seed": Int(truncatingIfNeeded: seed),
            "shops": world.bed.shops.count,
            "quarantined_shops": world.quarantined.withLockedValue { $0.map(\.rawValue).sorted() },
        ]
    }
}
