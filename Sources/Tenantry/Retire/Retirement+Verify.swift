import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import TenantryCore

extension Retirement {
    /// Verifies every one of `ids` before anything is deleted (``verifyFirst``); refuses the whole
    /// run, naming each differing tenant and table, when one differs.
    ///
    /// Per tenant, one fingerprint statement per side (every table's row count and sum of row
    /// hashes, ``Verifier/verifyByFingerprint(_:unified:unifiedURL:tenantURL:settle:)``), both
    /// sides at once; only a tenant whose fingerprints differ is compared chunk by chunk (settling
    /// the relay and re-checking, as verify-sync does) to name its rows or find they were in
    /// flight. ``concurrency`` workers, each with one unified connection for all its tenants.
    func verifyAll(_ ids: [TenantID]) async throws {
        let verifier = Verifier(plan: plan, logger: logger)
        let relay = relay
        let unifiedURL = unifiedURL
        let reports = try await timed("verify") {
            try await eachWithUnifiedConnection(ids, prepare: { try await verifier.prepareForFingerprints($0) }) { id, unified in
                try await verifier.verifyByFingerprint(
                    id, unified: unified, unifiedURL: unifiedURL, tenantURL: try await tenantURL(id),
                    settle: { _ = try await relay.catchUp([id], timeout: .seconds(60)) })
            }
        }
        var differing: [String] = []
        for (id, report) in zip(ids, reports) where !report.equal {
            let tables = report.tables.filter { $0.differenceCount > 0 }.map { "\($0.table): \($0.differenceCount) row(s)" }
            differing.append("tenant \(id) (\(tables.joined(separator: ", ")))")
        }
        guard differing.isEmpty else {
            throw TenantryError(
                code: .conflict,
                message: "retire-legacy refused: \(differing.joined(separator: "; ")) differ between unified and the tenant database; "
                    + "nothing was deleted (see tenantry verify-sync)")
        }
    }

    /// Runs `work` for each of `ids` on ``concurrency`` workers, each holding one connection to the
    /// unified database (`prepare`d once) for all the tenants it takes, in `ids`' order of start;
    /// returns the results in `ids`' order. After one fails no further tenant starts; the first
    /// failure is thrown once the running ones have finished.
    func eachWithUnifiedConnection<Value: Sendable>(
        _ ids: [TenantID], prepare: @escaping @Sendable (PostgresConnection) async throws -> Void = { _ in },
        _ work: @escaping @Sendable (TenantID, PostgresConnection) async throws -> Value
    ) async throws -> [Value] {
        let queue = NIOLockedValueBox((next: 0, failure: (any Error)?.none))
        let done = NIOLockedValueBox<[Int: Value]>([:])
        let workers = min(max(concurrency, 1), ids.count)
        let unifiedURL = unifiedURL
        let logger = logger
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    do {
                        try await Database.withConnection(unifiedURL, logger: logger) { unified in
                            try await prepare(unified)
                            while let index = queue.withLockedValue({ queue -> Int? in
                                guard queue.failure == nil, queue.next < ids.count else { return nil }
                                queue.next += 1
                                return queue.next - 1
                            }) {
                                let value = try await work(ids[index], unified)
                                done.withLockedValue { $0[index] = value }
                            }
                        }
                    } catch {
                        queue.withLockedValue { if $0.failure == nil { $0.failure = error } }
                    }
                }
            }
        }
        if let failure = queue.withLockedValue({ $0.failure }) { throw failure }
        let results = done.withLockedValue { $0 }
        return ids.indices.compactMap { results[$0] }
    }
}
