import ArgumentParser
import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

extension RouterBench {
    /// Scenario 2: Zipf-distributed tenants over many databases behind a small cap.
    func zipf(_ fleet: BenchFleet, _ catalog: Catalog) async throws -> [String: any Sendable] {
        let ids = Array(fleet.ids.prefix(zipfTenants))
        let distribution = Zipf(count: ids.count, exponent: zipfExponent)
        let router = fleet.makeRouter(catalog: catalog, cap: zipfCap, perTenant: TenantPool.Configuration().maxPerKey)
        let (tasks, quiet) = (concurrency, json)
        let duration = Duration.milliseconds(Int64(zipfSeconds * 1000))
        let operation = BenchFleet.pointSelect(router, ids)
        let pick: @Sendable (inout SeededRandom) -> Int = { distribution.sample(&$0) }
        let (result, before, after) = try await router.running {
            if !quiet { Bench.note("zipf: \(ids.count) tenants, cap \(zipfCap), warming up…") }
            _ = await Load.run(concurrency: tasks, duration: .seconds(2), keys: BenchFleet.rows, seed: 7, pick: pick, operation)
            let before = try await Self.defaultPool(router)
            if !quiet { Bench.note("zipf: measuring for \(zipfSeconds) s…") }
            let result = await Load.run(concurrency: tasks, duration: duration, keys: BenchFleet.rows, seed: 8, pick: pick, operation)
            let after = try await Self.defaultPool(router)
            return (result, before, after)
        }
        return [
            "zipf_tenants": ids.count, "zipf_cap": zipfCap, "zipf_exponent": zipfExponent, "zipf_seconds": zipfSeconds,
            "zipf_top10_share": Bench.round(distribution.share(top: 10)),
            "zipf_qps": Bench.round(result.throughput, 0),
            "zipf_p50_ms": Bench.round(result.percentileMs(50)),
            "zipf_p99_ms": Bench.round(result.percentileMs(99)),
            "zipf_errors": result.errors,
            "zipf_connects_per_s": Bench.round(Double(after.connects - before.connects) / result.seconds, 1),
            "zipf_evictions_per_s": Bench.round(Double(after.evictions - before.evictions) / result.seconds, 1),
            "zipf_lease_timeouts": after.leaseTimeouts - before.leaseTimeouts,
            "zipf_peak_open": after.peakOpen,
            "zipf_mean_lease_wait_ms": Bench.round(
                (after.leaseWaitTotalMs - before.leaseWaitTotalMs) / Double(max(1, after.leases - before.leases))),
        ]
    }

    static func defaultPool(_ router: TenantRouter) async throws -> TenantPool.Statistics {
        guard let statistics = await router.poolStatistics()[ServerDirectory.defaultServerName] else {
            throw TenantryError(code: .database, message: "the router opened no pool")
        }
        return statistics
    }

    /// Scenario 3: resident memory of `memoryTenants` tenants whose route and credentials the
    /// router has resolved and cached (catalog rows only: they are never connected to).
    func memory(_ fleet: BenchFleet, _ catalog: Catalog) async throws -> [String: any Sendable] {
        let count = memoryTenants
        let quiet = json
        if !quiet { Bench.note("memory: registering \(count) tenants in the catalog…") }
        let ids = try (1...count).map { try TenantID("m\($0)") }
        var usernames: [String] = []
        var sealed: [String] = []
        var keyIDs: [String] = []
        for id in ids {
            let password = EncryptionKey.generate().hex  // 64 random hex characters, like a provisioned password
            let value = try fleet.keyring.seal(password, tenant: id.rawValue, field: "password")
            usernames.append("bench_u_\(id.rawValue)")
            sealed.append(value)
            keyIDs.append(Keyring.keyID(of: value) ?? "unknown")
        }
        try await Database.withConnection(fleet.catalogURL, logger: Bench.logger) { connection in
            let names = ids.map(\.rawValue)
            try await connection.query("""
                INSERT INTO tenantry.tenants (id, status, placement, database_name, role_name)
                SELECT id, 'active', 'dedicated', 'bench_' || id || '_db', 'bench_u_' || id FROM unnest(\(names)::text[]) id
                """, logger: Bench.logger)
            try await connection.query("""
                INSERT INTO tenantry.credentials (tenant_id, username, password_sealed, key_id)
                SELECT * FROM unnest(\(names)::text[], \(usernames)::text[], \(sealed)::text[], \(keyIDs)::text[])
                """, logger: Bench.logger)
        }
        let registry = CredentialRegistry(catalog: catalog, keyring: fleet.keyring)
        let router = fleet.makeRouter(catalog: catalog, cap: 10, perTenant: 2, registry: registry)
        @Sendable func resolve(_ slice: ArraySlice<TenantID>) async throws {
            _ = try await concurrentMap(Array(slice), concurrency: 8) { id in
                _ = try await router.route(for: id)
                _ = try await registry.credentials(for: id)
            }
        }
        // Warm the code paths and the catalog client's connections on the first 2% first.
        let warm = max(1, count / 50)
        try await resolve(ids[0..<warm])
        try await Task.sleep(for: .milliseconds(200))
        let before = ResidentMemory.bytes()
        if !quiet { Bench.note("memory: resolving \(count - warm) routes and credentials…") }
        let start = ContinuousClock.now
        try await resolve(ids[warm...])
        let elapsed = elapsedSeconds(since: start)
        let after = ResidentMemory.bytes()
        // Keep everything alive until measured.
        let cached = try await router.route(for: ids[count - 1]).database != nil
        let megabytes = Double(after - before) / 1_048_576 * Double(count) / Double(count - warm)
        return [
            "memory_tenants": count,
            "memory_rss_delta_mb": Bench.round(megabytes, 1),
            "memory_bytes_per_tenant": Int(Double(after - before) / Double(count - warm)),
            "memory_resolve_per_s": Bench.round(Double(count - warm) / elapsed, 0),
            "memory_cached": cached,
            "goal_memory_mb": 50,
        ]
    }
}
