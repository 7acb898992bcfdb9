import Foundation
import Logging
import TenantryCore

/// The move components over the unified database: capture, copier, relay, dead letters, and the
/// move phases as operations (``migrateData(_:concurrency:captureTimeout:pauseSync:rows:progress:)``,
/// ``verify(_:chunkSize:progress:)``, ``cutover(_:maxPause:progress:)``, …). Made by ``Operations/move()``.
public struct MoveOperations: Sendable {
    /// The catalog, servers, configuration and actor.
    public let operations: Operations
    /// The unified database as an admin login.
    public let unifiedURL: PostgresURL
    /// The tenant tables and how they move.
    public let plan: MovePlan

    /// The catalog.
    public var catalog: Catalog { operations.catalog }
    /// The logger.
    public var logger: Logger { operations.logger }

    /// Change capture in the unified database; turning it on waits up to `timeout` for older transactions.
    public func capture(timeout: Duration = .seconds(30)) -> Capture {
        Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, enableTimeout: timeout, logger: logger)
    }

    /// Fails with one clear line when capture is not installed.
    public func requireCapture() async throws {
        guard try await capture().isInstalled() else {
            throw TenantryError(
                code: .conflict, message: "capture is not installed in the unified database: run 'tenantry capture install' first")
        }
    }

    /// The snapshot copier.
    public func copier(captureTimeout: Duration = .seconds(30)) -> Copier {
        Copier(
            catalog: catalog, servers: operations.servers, unifiedURL: unifiedURL, plan: plan,
            capture: capture(timeout: captureTimeout), actor: operations.actor, logger: logger)
    }

    /// A relay (close it, or run it, when done).
    public func relay(_ configuration: Relay.Configuration = Relay.Configuration()) -> Relay {
        Relay(configuration: configuration, catalog: catalog, servers: operations.servers, unifiedURL: unifiedURL, plan: plan, logger: logger)
    }

    /// The dead letter queue.
    public func deadLetters() -> DeadLetters {
        DeadLetters(unifiedURL: unifiedURL, tenantURL: { [self] tenant in try await reverseStreamURL(tenant) }, logger: logger)
    }

    /// The database whose stream carries `tenant`'s changes to unified (where its reverse dead
    /// letters live): its own database, or — while it moves between servers — the follower, which
    /// forwards to unified (docs/server-moves.md).
    public func reverseStreamURL(_ tenant: TenantID) async throws -> PostgresURL {
        if let move = try await catalog.activeServerMove(tenant), move.phase == .moving || move.phase == .switched {
            return try operations.servers.adminURL(server: move.followerServer, database: move.followerDatabase)
        }
        return try await tenantURL(tenant)
    }

    /// Cutover and rollback over `relay`.
    public func cutover(relay: Relay) -> Cutover {
        Cutover(
            catalog: catalog, servers: operations.servers, unifiedURL: unifiedURL, plan: plan, relay: relay,
            actor: operations.actor, logger: logger)
    }

    /// The tenant database URL (admin login) of a provisioned tenant.
    public func tenantURL(_ tenant: TenantID) async throws -> PostgresURL {
        try operations.servers.adminURL(of: try await catalog.requireTenant(tenant))
    }

    /// The tenants of `selection`: `all` is every tenant in `phases` (default: every provisioned tenant).
    public func select(_ selection: TenantSelection, phases: [MovePhase]? = nil) async throws -> [TenantID] {
        switch selection {
        case .tenants(let ids): return ids
        case .all:
            if let phases { return try await catalog.tenants(inPhases: phases) }
            return try await operations.provisionedTenants()
        }
    }

    /// Applies everything captured so far for `selection` (`all`: every syncing tenant) with a relay
    /// of its own, closed afterwards (`tenantry sync run --until-caught-up`). Throws
    /// ``TenantryError/Code/timeout`` naming the tenants still behind after `timeout`.
    public func catchUp(
        _ selection: TenantSelection, configuration: Relay.Configuration = Relay.Configuration(), timeout: Duration = .seconds(600)
    ) async throws -> Relay.CatchUpReport {
        try await requireCapture()
        return try await withRelay(configuration) { relay in
            switch selection {
            case .all: try await relay.catchUp(nil, timeout: timeout)
            case .tenants(let ids): try await relay.catchUp(ids, timeout: timeout)
            }
        }
    }

    /// Runs `body` with a relay, closing it afterwards whatever happens.
    func withRelay<Result: Sendable>(
        _ configuration: Relay.Configuration = Relay.Configuration(), _ body: (Relay) async throws -> Result
    ) async throws -> Result {
        let relay = relay(configuration)
        do {
            let result = try await body(relay)
            await relay.close()
            return result
        } catch {
            await relay.close()
            throw error
        }
    }
}

/// Runs `work` for each of `ids`, `concurrency` at a time; a tenant's failure is recorded, not
/// thrown. `finished` is called in completion order, with the count done so far.
func forEachTenant<Value: Sendable>(
    _ ids: [TenantID], concurrency: Int,
    _ work: @escaping @Sendable (TenantID) async throws -> Value,
    finished: (TenantID, Result<Value, any Error>, Int) -> Void
) async throws {
    try await forEachConcurrently(ids, concurrency: concurrency, work) { index, result, done in
        finished(ids[index], result, done)
    }
}

extension Double {
    /// Two decimals, for progress lines.
    var twoDecimals: String { String(format: "%.2f", self) }
}
