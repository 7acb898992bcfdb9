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
        @Sendable func resolve(_ slice: ArraySlice<TenantID>, routes: Bool = true, credentials: Bool = true) async throws {
            _ = try await concurrentMap(Array(slice), concurrency: 8) { id in
                if routes { _ = try await router.route(for: id) }
                if credentials { _ = try await registry.credentials(for: id) }
            }
        }
        // Warm the code paths and the catalog client's connections on the first 2% first.
        let warm = max(1, count / 50)
        try await resolve(ids[0..<warm])
        try await Task.sleep(for: .milliseconds(200))
        // Earlier scenarios' pool timers (catalog, tenant clients) expire before the first reading.
        if memorySettle > 0 { try await Task.sleep(for: .seconds(memorySettle)) }
        let before = ResidentMemory.Sample()
        if !quiet { Bench.note("memory: resolving \(count - warm) routes and credentials…") }
        let start = ContinuousClock.now
        var middle: ResidentMemory.Sample?
        if memorySplit {
            // Diagnosis: every route first, then every credential, measured in between.
            try await resolve(ids[warm...], credentials: false)
            middle = ResidentMemory.Sample()
            try await resolve(ids[warm...], routes: false)
        } else {
            try await resolve(ids[warm...])
        }
        let elapsed = elapsedSeconds(since: start)
        let after = ResidentMemory.Sample()
        // Read again later, the caches still alive: what a minute frees (the catalog client's pool
        // kept per-lease timer tasks until its idle timeout, 60 s, before lookups had connections
        // of their own).
        var settled: ResidentMemory.Sample?
        if memorySettle > 0 {
            if !quiet { Bench.note("memory: waiting \(memorySettle) s for the catalog pool's timers…") }
            try await Task.sleep(for: .seconds(memorySettle))
            settled = ResidentMemory.Sample()
        }
        // Keep everything alive until measured.
        let routed = try await router.route(for: ids[count - 1]).database != nil
        let credentials = try await registry.credentials(for: ids[count - 1])
        let cached = routed && !credentials.database.isEmpty
        let scale = Double(count) / Double(count - warm) / 1_048_576
        var fields: [String: any Sendable] = [
            "memory_tenants": count,
            "memory_rss_delta_mb": Bench.round(Double(after.trimmed - before.trimmed) * scale, 1),
            "memory_rss_delta_untrimmed_mb": Bench.round(Double(after.untrimmed - before.untrimmed) * scale, 1),
            "memory_heap_in_use_delta_mb": Bench.round(Double(after.heapInUse - before.heapInUse) * scale, 1),
            "memory_bytes_per_tenant": Int(Double(after.trimmed - before.trimmed) / Double(count - warm)),
            "memory_resolve_per_s": Bench.round(Double(count - warm) / elapsed, 0),
            "memory_cached": cached,
            "goal_memory_mb": 20,
        ]
        if let settled {
            fields["memory_settle_s"] = memorySettle
            fields["memory_rss_delta_settled_mb"] = Bench.round(Double(settled.trimmed - before.trimmed) * scale, 1)
            fields["memory_heap_in_use_delta_settled_mb"] = Bench.round(Double(settled.heapInUse - before.heapInUse) * scale, 1)
            fields["memory_bytes_per_tenant_settled"] = Int(Double(settled.trimmed - before.trimmed) / Double(count - warm))
        }
        if memoryProbe {
            // Diagnosis: heap kept by 10,000 catalog queries that cache nothing.
            let start = ResidentMemory.Sample()
            let clientStart = ContinuousClock.now
            _ = try await concurrentMap(Array(0..<10_000), concurrency: 8) { _ in
                for try await _ in try await catalog.client.query("SELECT 1", logger: Bench.logger) {}
            }
            fields["memory_probe_select_per_s"] = Bench.round(10_000 / elapsedSeconds(since: clientStart), 0)
            let afterSelect = ResidentMemory.Sample()
            _ = try await concurrentMap(Array(0..<10_000), concurrency: 8) { index in _ = try await catalog.tenant(ids[index % count]) }
            let afterTenant = ResidentMemory.Sample()
            // The same 10,000 `SELECT 1` on the catalog's lookup connections (the router's misses).
            let lookupStart = ContinuousClock.now
            _ = try await concurrentMap(Array(0..<10_000), concurrency: 8) { _ in _ = try await catalog.lookup("SELECT 1") }
            fields["memory_probe_lookup_per_s"] = Bench.round(10_000 / elapsedSeconds(since: lookupStart), 0)
            fields["memory_probe_lookup_heap_mb"] = Bench.round(
                Double(ResidentMemory.Sample().heapInUse - afterTenant.heapInUse) / 1_048_576, 1)
            // The same through clients without keep-alive, and without idle timers as well.
            var variants: [String: Double] = [:]
            for variant in ["no_keepalive", "no_keepalive_no_idle"] {
                var configuration = try fleet.catalogURL.clientConfiguration(maximumConnections: 8)
                configuration.options.keepAliveBehavior = nil
                if variant == "no_keepalive_no_idle" { configuration.options.minimumConnections = 8 }
                let client = PostgresClient(configuration: configuration, backgroundLogger: Bench.logger)
                let heap = try await withThrowingTaskGroup(of: Int?.self) { group in
                    group.addTask { await client.run(); return nil }
                    group.addTask {
                        let first = ResidentMemory.Sample()
                        _ = try await concurrentMap(Array(0..<10_000), concurrency: 8) { _ in
                            for try await _ in try await client.query("SELECT 1", logger: Bench.logger) {}
                        }
                        return ResidentMemory.Sample().heapInUse - first.heapInUse
                    }
                    defer { group.cancelAll() }
                    while let value = try await group.next() { if let value { return value } }
                    return 0
                }
                variants[variant] = Double(heap) / 1_048_576
            }
            for (name, value) in variants { fields["memory_probe_select_\(name)_heap_mb"] = Bench.round(value, 1) }
            try await Database.withConnection(fleet.catalogURL, logger: Bench.logger) { connection in
                for _ in 0..<10_000 { for try await _ in try await connection.query("SELECT 1", logger: Bench.logger) {} }
            }
            let afterConnection = ResidentMemory.Sample()
            try await Task.sleep(for: .seconds(memoryProbeWait))
            let afterWait = ResidentMemory.Sample()
            fields["memory_probe_select_heap_mb"] = Bench.round(Double(afterSelect.heapInUse - start.heapInUse) / 1_048_576, 1)
            fields["memory_probe_tenant_heap_mb"] = Bench.round(Double(afterTenant.heapInUse - afterSelect.heapInUse) / 1_048_576, 1)
            fields["memory_probe_connection_heap_mb"] = Bench.round(Double(afterConnection.heapInUse - afterTenant.heapInUse) / 1_048_576, 1)
            fields["memory_probe_after_wait_heap_mb"] = Bench.round(Double(afterWait.heapInUse - afterConnection.heapInUse) / 1_048_576, 1)
            fields["memory_probe_after_wait_total_heap_mb"] = Bench.round(Double(afterWait.heapInUse - before.heapInUse) / 1_048_576, 1)
        }
        if let middle {
            fields["memory_routes_rss_delta_mb"] = Bench.round(Double(middle.trimmed - before.trimmed) * scale, 1)
            fields["memory_routes_heap_in_use_delta_mb"] = Bench.round(Double(middle.heapInUse - before.heapInUse) * scale, 1)
            fields["memory_credentials_rss_delta_mb"] = Bench.round(Double(after.trimmed - middle.trimmed) * scale, 1)
            fields["memory_credentials_heap_in_use_delta_mb"] = Bench.round(Double(after.heapInUse - middle.heapInUse) * scale, 1)
        }
        return fields
    }
}
