import Foundation
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The router's cache misses (a route, a credential) run on the catalog's own few long-lived lookup
/// connections, not on a pool lease (whose timers stay allocated for a minute): a burst of misses
/// stays on at most four connections, a connection the server closed is replaced and the lookup
/// run again, and the connections close with the catalog.
@Suite("catalog lookups: long-lived connections for the router's cache misses", .timeLimit(.minutes(3)))
struct CatalogLookupTests {
    @Test("a burst of misses runs on at most 4 lookup connections; lookup backends terminated between resolutions are replaced; all close with the catalog")
    func betweenResolutions() async throws {
        let fixture = try await ProvisioningFixture.make()
        let tenants = try [TenantID("1"), TenantID("2")]
        _ = try await fixture.withProvisioner { provisioner in for id in tenants { _ = try await provisioner.provision(id) } }
        try await Catalog.withCatalog(fixture.catalogURL, logger: TestPostgres.logger) { catalog in
            let (router, registry) = Self.router(fixture, catalog)
            let lookups = try #require(catalog.lookups)
            // 400 misses from 16 tasks.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<16 {
                    group.addTask {
                        for round in 0..<25 {
                            let id = tenants[(task + round) % 2]
                            router.invalidateRoutes(id)
                            await registry.invalidate(id)
                            let route = try await router.route(for: id)
                            let credentials = try await registry.credentials(for: id)
                            #expect(route.database != nil && !credentials.database.isEmpty)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let opened = await lookups.opened
            #expect(opened >= 1 && opened <= CatalogLookups.defaultSize)
            #expect(try await Self.lookupBackends(fixture) == opened)

            // Terminated, then resolved at once (the close may not have reached the client yet),
            // and again once the client has seen the close.
            for wait in [Duration.zero, .milliseconds(300)] {
                let terminated = try await Self.terminateLookupBackends(fixture)
                #expect(terminated >= 1)
                if wait > .zero { try await Task.sleep(for: wait) }
                for id in tenants {
                    router.invalidateRoutes(id)
                    await registry.invalidate(id)
                    #expect(try await router.route(for: id).database != nil)
                    #expect(try await registry.credentials(for: id).username.isEmpty == false)
                }
            }
            #expect(await lookups.opened > opened)
            #expect(try await Self.lookupBackends(fixture) >= 1)
        }
        try await eventually("the lookup connections close with the catalog", within: .seconds(5)) {
            try await Self.lookupBackends(fixture) == 0
        }
    }

    @Test("lookup backends terminated again and again during a burst of misses: every lookup succeeds or fails with one clear connection error, and the next succeeds")
    func duringResolutions() async throws {
        let fixture = try await ProvisioningFixture.make()
        let tenants = try [TenantID("1"), TenantID("2")]
        _ = try await fixture.withProvisioner { provisioner in for id in tenants { _ = try await provisioner.provision(id) } }
        try await Catalog.withCatalog(fixture.catalogURL, logger: TestPostgres.logger) { catalog in
            let (router, registry) = Self.router(fixture, catalog)
            let killer = Task {
                var kills = 0
                for _ in 0..<8 {
                    try await Task.sleep(for: .milliseconds(60))
                    kills += try await Self.terminateLookupBackends(fixture)
                }
                return kills
            }
            let outcomes = try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
                for task in 0..<8 {
                    group.addTask {
                        var (succeeded, failures) = (0, [String]())
                        let deadline = ContinuousClock.now + .milliseconds(700)
                        var round = 0
                        while ContinuousClock.now < deadline {
                            let id = tenants[(task + round) % 2]
                            round += 1
                            router.invalidateRoutes(id)
                            await registry.invalidate(id)
                            do {
                                _ = try await router.route(for: id)
                                _ = try await registry.credentials(for: id)
                                succeeded += 1
                            } catch let error as TenantryError where error.code == .connectionFailed
                                && error.message.contains("catalog lookup failed") {
                                failures.append(error.message)
                            } catch {
                                failures.append("unexpected: \(error)")
                            }
                        }
                        return (succeeded, failures)
                    }
                }
                var total = (0, [String]())
                for try await (succeeded, failures) in group { total.0 += succeeded; total.1 += failures }
                return total
            }
            let kills = try await killer.value
            #expect(kills >= 4)
            #expect(outcomes.0 > 0)
            #expect(outcomes.1.allSatisfy { !$0.hasPrefix("unexpected") }, "\(outcomes.1)")
            // Losing the connection twice in a row is rare: most lookups hit by a kill ran again.
            #expect(outcomes.1.count * 10 <= outcomes.0, "\(outcomes.1.count) failed, \(outcomes.0) succeeded")
            for id in tenants {
                router.invalidateRoutes(id)
                await registry.invalidate(id)
                #expect(try await router.route(for: id).database != nil)
                #expect(try await registry.credentials(for: id).database.isEmpty == false)
            }
        }
    }

    static func router(_ fixture: ProvisioningFixture, _ catalog: Catalog) -> (TenantRouter, CredentialRegistry) {
        let registry = CredentialRegistry(catalog: catalog, keyring: fixture.keyring)
        let router = TenantRouter(
            configuration: .init(unifiedURL: fixture.catalogURL, pool: TenantPool.Configuration()), catalog: catalog, registry: registry,
            servers: ServerDirectory(databaseURL: fixture.catalogURL, superuser: nil, superuserPassword: nil, servers: [], keyring: nil),
            logger: TestPostgres.logger)
        return (router, registry)
    }

    static func lookupBackends(_ fixture: ProvisioningFixture) async throws -> Int {
        let rows = try await TestPostgres.strings(fixture.catalogURL, """
            SELECT count(*)::text FROM pg_stat_activity
            WHERE application_name = '\(CatalogLookups.applicationName)' AND datname = current_database()
            """)
        return Int(rows.first.flatMap { $0 } ?? "0") ?? 0
    }

    /// Terminates the catalog database's lookup backends; returns how many.
    static func terminateLookupBackends(_ fixture: ProvisioningFixture) async throws -> Int {
        let rows = try await TestPostgres.strings(fixture.catalogURL, """
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::text FROM pg_stat_activity
            WHERE application_name = '\(CatalogLookups.applicationName)' AND datname = current_database()
            """)
        return Int(rows.first.flatMap { $0 } ?? "0") ?? 0
    }
}
