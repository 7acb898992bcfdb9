import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import Tenantry

/// Long admin operations as jobs: submitted (state `queued`), run one at a time in submission
/// order by ``run()`` (a `Service`), observable with progress until they end (`succeeded` or
/// `failed`, with a result or an error). The newest ``retention`` jobs are kept in memory.
public final class AdminJobs: Service, Sendable {
    /// A job's state.
    public enum State: String, Sendable, Codable { case queued, running, succeeded, failed }

    /// Progress of a running job.
    public struct Progress: Sendable, Codable, Equatable {
        /// Units (tenants) done.
        public var done: Int
        /// Units in all (0 until known).
        public var total: Int
        /// The latest event, one line.
        public var message: String
    }

    /// What a job's work returns: its result, and the failure when the result reports one (e.g.
    /// tenants that failed, tables that differ).
    public struct Outcome: Sendable {
        /// The result, as JSON.
        public var result: JSONValue
        /// The failure (code and message), if the operation did not fully succeed.
        public var failure: AdminError?

        /// An outcome.
        public init(result: JSONValue, failure: AdminError? = nil) {
            self.result = result
            self.failure = failure
        }
    }

    /// A job as the API reports it.
    public struct Snapshot: Sendable, Codable, Equatable {
        /// The job id.
        public var id: String
        /// The operation (`migrate-data`, `verify-sync`, …).
        public var kind: String
        /// Who submitted it.
        public var actor: String
        /// `queued`, `running`, `succeeded` or `failed`.
        public var state: State
        /// When it was submitted, started, finished.
        public var createdAt: Date
        public var startedAt: Date?
        public var finishedAt: Date?
        /// Progress so far.
        public var progress: Progress
        /// The result, once finished (also when it failed with a report).
        public var result: JSONValue?
        /// The error, when it failed.
        public var error: AdminError.Body.Detail?
    }

    /// Reports progress from inside a job.
    public struct Reporter: Sendable {
        let jobs: AdminJobs
        let id: String

        /// Records progress.
        public func update(done: Int, total: Int, message: String) {
            jobs.update(id) { $0.progress = Progress(done: done, total: total, message: String(message.prefix(300))) }
        }

        /// Records a tenant-level progress event.
        public func update(_ event: OperationProgress) {
            let tenant = event.tenant.map { "tenant \($0): " } ?? ""
            update(done: event.done, total: event.total, message: tenant + event.message)
        }

        /// Records a message, keeping the counts.
        public func note(_ message: String) {
            jobs.update(id) { $0.progress.message = String(message.prefix(300)) }
        }
    }

    typealias Work = @Sendable (Reporter) async throws -> Outcome

    private struct Entry { var snapshot: Snapshot; var work: Work? }
    private struct Store {
        var entries: [String: Entry] = [:]
        var order: [String] = []
    }

    /// How many finished jobs are kept.
    public let retention: Int
    private let store = NIOLockedValueBox(Store())
    private let queue: AsyncStream<String>
    private let queueInput: AsyncStream<String>.Continuation
    private let logger: Logger
    /// Called when a job ends (e.g. to audit it).
    private let onFinish: @Sendable (Snapshot) async -> Void

    /// A job runner keeping the newest `retention` jobs; `onFinish` is called after each job ends.
    public init(retention: Int = 500, logger: Logger, onFinish: @escaping @Sendable (Snapshot) async -> Void = { _ in }) {
        self.retention = retention
        self.logger = logger
        self.onFinish = onFinish
        (queue, queueInput) = AsyncStream.makeStream(of: String.self)
    }

    /// Queues `work` as a job of `kind` and returns it (state `queued`).
    public func submit(
        kind: String, actor: String, _ work: @escaping @Sendable (Reporter) async throws -> Outcome
    ) -> Snapshot {
        let snapshot = Snapshot(
            id: UUID().uuidString.lowercased(), kind: kind, actor: actor, state: .queued, createdAt: Date(),
            progress: Progress(done: 0, total: 0, message: "queued"))
        store.withLockedValue { store in
            store.entries[snapshot.id] = Entry(snapshot: snapshot, work: work)
            store.order.append(snapshot.id)
            // Forget the oldest finished jobs beyond the retention.
            while store.order.count > retention, let index = store.order.firstIndex(where: {
                guard let state = store.entries[$0]?.snapshot.state else { return true }
                return state == .succeeded || state == .failed
            }) {
                store.entries[store.order.remove(at: index)] = nil
            }
        }
        queueInput.yield(snapshot.id)
        return snapshot
    }

    /// The job with `id`, if known.
    public func job(_ id: String) -> Snapshot? {
        store.withLockedValue { $0.entries[id]?.snapshot }
    }

    /// Every known job, newest first.
    public func all() -> [Snapshot] {
        store.withLockedValue { store in store.order.reversed().compactMap { store.entries[$0]?.snapshot } }
    }

    /// Runs queued jobs one at a time until shut down gracefully or cancelled. A job still
    /// running then is cancelled; queued ones are marked failed.
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            for await id in self.queue {
                if Task.isCancelled { break }
                await self.execute(id)
            }
        }
        queueInput.finish()
        let abandoned: [String] = store.withLockedValue { store in
            store.order.filter { store.entries[$0]?.snapshot.state == .queued }
        }
        for id in abandoned {
            finish(id, outcome: nil, error: AdminError(.serviceUnavailable, code: "shutdown", "the service stopped before the job ran"))
        }
    }

    private func execute(_ id: String) async {
        guard let work = store.withLockedValue({ store -> Work? in
            guard var entry = store.entries[id], entry.snapshot.state == .queued, let work = entry.work else { return nil }
            entry.snapshot.state = .running
            entry.snapshot.startedAt = Date()
            entry.snapshot.progress.message = "running"
            entry.work = nil
            store.entries[id] = entry
            return work
        }) else { return }
        logger.info("job started", metadata: ["job.id": "\(id)"])
        do {
            let outcome = try await work(Reporter(jobs: self, id: id))
            finish(id, outcome: outcome, error: outcome.failure)
        } catch {
            finish(id, outcome: nil, error: AdminError.from(error, bodyLimit: AdminRequestContext.bodyLimit))
        }
        if let snapshot = job(id) {
            logger.info("job finished", metadata: ["job.id": "\(id)", "job.state": "\(snapshot.state.rawValue)"])
            await onFinish(snapshot)
        }
    }

    private func finish(_ id: String, outcome: Outcome?, error: AdminError?) {
        update(id) { snapshot in
            snapshot.finishedAt = Date()
            snapshot.result = outcome?.result
            if let error {
                snapshot.state = .failed
                snapshot.error = .init(code: error.code, message: error.message)
                snapshot.progress.message = "failed: \(error.message.prefix(200))"
            } else {
                snapshot.state = .succeeded
                snapshot.progress.message = "done"
            }
        }
    }

    private func update(_ id: String, _ change: (inout Snapshot) -> Void) {
        store.withLockedValue { store in
            guard var entry = store.entries[id] else { return }
            change(&entry.snapshot)
            store.entries[id] = entry
        }
    }
}
