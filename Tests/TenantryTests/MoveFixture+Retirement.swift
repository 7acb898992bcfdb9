import Foundation
@testable import Tenantry

extension MoveFixture {
    /// Copies and cuts over every provisioned tenant of the fixture (dedicated), then runs `body`
    /// with the relay, the catalog and a retirement over them (`concurrency` workers, batches of
    /// `batchSize` tenants; `nil`: the defaults).
    func withDedicatedTenants(
        concurrency: Int? = nil, batchSize: Int? = nil,
        _ body: @Sendable (Relay, Catalog, Retirement) async throws -> Void
    ) async throws {
        let fixture = self
        try await withMover { copier, relay, catalog in
            for id in fixture.ids { _ = try await copier.copy(id) }
            let cutover = Cutover(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: Self.logger)
            for id in fixture.ids { _ = try await cutover.cutover(id, maxPause: .seconds(30)) }
            var retirement = Retirement(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                actor: "test", logger: Self.logger)
            if let concurrency { retirement.concurrency = concurrency }
            if let batchSize { retirement.batchSize = batchSize }
            try await body(relay, catalog, retirement)
        }
    }
}
