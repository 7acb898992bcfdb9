import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import TenantryCore

extension Retirement {
    /// The archive's manifest, shared by the tenants retired at the same time: a tenant's entries
    /// are listed (the file rewritten atomically) just before its delete commits, and unlisted
    /// again when that fails. Every write happens under one lock, so the file always holds the
    /// entries of the tenants listed at that moment, whichever worker wrote it.
    final class ManifestBook: Sendable {
        let path: String?
        private let manifest: NIOLockedValueBox<Manifest>

        init(root: String?, discriminator: String) {
            path = root.map { ($0 as NSString).appendingPathComponent("manifest.json") }
            manifest = NIOLockedValueBox(Manifest(createdAt: Date(), discriminator: discriminator, tables: []))
        }

        /// Adds `entries` and writes the manifest.
        func list(_ entries: [Manifest.Table]) throws {
            guard let path else { return }
            try manifest.withLockedValue { manifest in
                manifest.tables += entries
                try ArchiveFiles.writeAtomically(try Retirement.encode(manifest), to: path)
            }
        }

        /// Takes `tenant`'s entries out and writes the manifest (best effort: the caller is failing already).
        func unlist(_ tenant: TenantID) {
            guard let path else { return }
            manifest.withLockedValue { manifest in
                manifest.tables.removeAll { $0.tenant == tenant.rawValue }
                try? ArchiveFiles.writeAtomically(try Retirement.encode(manifest), to: path)
            }
        }
    }

    /// Pauses, archives, deletes and checks `ids`, ``concurrency`` workers at a time, each taking
    /// up to ``batchSize`` tenants at once (fewer when that would leave a worker idle) into one
    /// transaction (``archiveAndDelete(_:archive:book:deletion:on:checker:)``; a worker holds two
    /// sessions of the unified database: the deletes' and the checker's), and returns the rows
    /// deleted in `ids`' order. A batch that fails is rolled back whole and its tenants retried one
    /// by one, each in a transaction of its own, so a tenant fails alone. After a tenant fails, no
    /// further tenant starts; one already running finishes (committed or rolled back), then the
    /// first failure is thrown.
    func retireEach(_ ids: [TenantID], archive: String?) async throws -> [TableRows] {
        let deletion = try await Database.withConnection(unifiedURL, logger: logger) { try await prepareDeletion(on: $0) }
        let book = ManifestBook(root: archive, discriminator: plan.discriminator)
        let queue = NIOLockedValueBox((next: 0, failure: (any Error)?.none))
        let done = NIOLockedValueBox<[TenantID: [TableRows]]>([:])
        let workers = min(max(concurrency, 1), ids.count)
        let batchSize = max(batchSize, 1)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    do {
                        try await Database.withConnection(unifiedURL, logger: logger) { unified in
                            try await Database.withConnection(unifiedURL, logger: logger) { checker in
                                while let batch = queue.withLockedValue({ queue -> [TenantID]? in
                                    guard queue.failure == nil, queue.next < ids.count else { return nil }
                                    let take = min(batchSize, max(1, (ids.count - queue.next) / workers))
                                    queue.next += take
                                    return Array(ids[(queue.next - take)..<queue.next])
                                }) {
                                    do {
                                        try await retireBatch(batch, archive: archive, book: book, deletion: deletion, on: unified,
                                                              checker: checker) { id, tables in done.withLockedValue { $0[id] = tables } }
                                    } catch {
                                        queue.withLockedValue { if $0.failure == nil { $0.failure = error } }
                                        return
                                    }
                                }
                            }
                        }
                    } catch {
                        queue.withLockedValue { if $0.failure == nil { $0.failure = error } }
                    }
                }
            }
        }
        if let failure = queue.withLockedValue({ $0.failure }) { throw failure }
        let deleted = done.withLockedValue { $0 }
        return ids.flatMap { deleted[$0] ?? [] }
    }

    /// A batch of tenants: reverse sync paused for each (all at once), their rows archived, deleted
    /// and checked in one transaction, each tenant's phase `retired`, audited (`retired` called per
    /// tenant). When the batch fails its tenants are retried one at a time; a tenant that fails
    /// resumes its stream and every later one's (when this run paused them) and the error is
    /// rethrown.
    private func retireBatch(
        _ ids: [TenantID], archive: String?, book: ManifestBook, deletion: Deletion, on unified: PostgresConnection,
        checker: PostgresConnection, retired: (TenantID, [TableRows]) -> Void
    ) async throws {
        // Reverse sync stops FIRST, and only then is the snapshot taken: a reverse batch applied
        // after the archive's snapshot but before the delete would put a row in unified that the
        // delete removes and the archive lacks (its change already consumed: lost on restore).
        let wasPaused = try await timed("pause") { try await pauseReverseStreams(ids) }
        func markRetired(_ group: [TenantID], _ tables: [TableRows]) async throws {
            try await timed("catalog") {
                for id in group {
                    let rows = tables.filter { $0.tenant == id }
                    try await catalog.setPhase(id, to: .retired)
                    try? await catalog.audit(
                        actor: actor, action: "retire-legacy", tenant: id, outcome: .ok,
                        detail: ["rows": "\(rows.reduce(0) { $0 + $1.rows })", "archive": archive ?? "none",
                                 "method": (deletion.setBased ? DeleteMethod.setBased : .rowTriggers).rawValue])
                    retired(id, rows)
                }
            }
        }
        if ids.count > 1 {
            // Only a batch that rolled back is retried (a catalog failure after its commit is not:
            // the re-run's finishInterrupted sets the phase from the unified database's marks).
            var committed: [TableRows]?
            do {
                committed = try await archiveAndDelete(ids, archive: archive, book: book, deletion: deletion, on: unified, checker: checker)
            } catch {
                logger.warning("retire-legacy: a batch of \(ids.count) tenants was rolled back (\(Database.oneLine(error))); retrying them one at a time")
            }
            if let committed { return try await markRetired(ids, committed) }
        }
        for (index, id) in ids.enumerated() {
            let tables: [TableRows]
            do {
                tables = try await archiveAndDelete([id], archive: archive, book: book, deletion: deletion, on: unified, checker: checker)
            } catch {
                for (other, paused) in zip(ids, wasPaused).dropFirst(index) where !paused { try? await resumeReverseStream(other) }
                throw error
            }
            try await markRetired([id], tables)
        }
    }

    /// Pauses each of `ids`' reverse streams (``pauseReverseStream(_:)``), all at once; returns
    /// whether each was paused already. When one fails, the ones this call paused are resumed.
    private func pauseReverseStreams(_ ids: [TenantID]) async throws -> [Bool] {
        let results = await withTaskGroup(of: (Int, Result<Bool, any Error>).self) { group in
            for (index, id) in ids.enumerated() {
                group.addTask {
                    do { return (index, .success(try await pauseReverseStream(id))) } catch { return (index, .failure(error)) }
                }
            }
            var collected: [(Int, Result<Bool, any Error>)] = []
            for await item in group { collected.append(item) }
            return collected.sorted { $0.0 < $1.0 }.map(\.1)
        }
        if let failure = results.first(where: { if case .failure = $0 { true } else { false } }), case .failure(let error) = failure {
            for (id, result) in zip(ids, results) { if case .success(false) = result { try? await resumeReverseStream(id) } }
            throw error
        }
        return results.map { (try? $0.get()) ?? true }
    }
}
