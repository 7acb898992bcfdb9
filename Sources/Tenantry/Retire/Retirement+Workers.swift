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

    /// Pauses, archives, deletes and checks `ids`, ``concurrency`` tenants at a time (each in one
    /// transaction of its own; a worker holds two sessions of the unified database: the deletes'
    /// and the checker's), and returns the rows deleted in `ids`' order. After a tenant fails, no
    /// further tenant starts; one already running finishes (committed or rolled back), then the
    /// first failure is thrown.
    func retireEach(_ ids: [TenantID], archive: String?) async throws -> [TableRows] {
        let deletion = try await Database.withConnection(unifiedURL, logger: logger) { try await prepareDeletion(on: $0) }
        let book = ManifestBook(root: archive, discriminator: plan.discriminator)
        let queue = NIOLockedValueBox((next: 0, failure: (any Error)?.none))
        let done = NIOLockedValueBox<[TenantID: [TableRows]]>([:])
        let workers = min(max(concurrency, 1), ids.count)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    do {
                        try await Database.withConnection(unifiedURL, logger: logger) { unified in
                            try await Database.withConnection(unifiedURL, logger: logger) { checker in
                                while let id = queue.withLockedValue({ queue -> TenantID? in
                                    guard queue.failure == nil, queue.next < ids.count else { return nil }
                                    queue.next += 1
                                    return ids[queue.next - 1]
                                }) {
                                    do {
                                        let tables = try await retireOne(id, archive: archive, book: book, deletion: deletion,
                                                                         on: unified, checker: checker)
                                        done.withLockedValue { $0[id] = tables }
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

    /// One tenant: reverse sync paused, rows archived, deleted and checked in one transaction, phase
    /// `retired`, audited. A failure resumes the stream (when this run paused it) and is rethrown.
    private func retireOne(
        _ id: TenantID, archive: String?, book: ManifestBook, deletion: Deletion, on unified: PostgresConnection,
        checker: PostgresConnection
    ) async throws -> [TableRows] {
        // Reverse sync stops FIRST, and only then is the snapshot taken: a reverse batch applied
        // after the archive's snapshot but before the delete would put a row in unified that the
        // delete removes and the archive lacks (its change already consumed: lost on restore).
        let wasPaused = try await pauseReverseStream(id)
        let tables: [TableRows]
        do {
            (tables, _) = try await archiveAndDelete(id, archive: archive, book: book, deletion: deletion, on: unified, checker: checker)
        } catch {
            if !wasPaused { try? await resumeReverseStream(id) }
            throw error
        }
        try await catalog.setPhase(id, to: .retired)
        try? await catalog.audit(
            actor: actor, action: "retire-legacy", tenant: id, outcome: .ok,
            detail: ["rows": "\(tables.reduce(0) { $0 + $1.rows })", "archive": archive ?? "none",
                     "method": (deletion.setBased ? DeleteMethod.setBased : .rowTriggers).rawValue])
        return tables
    }
}
