import Foundation
import HandyShop
import NIOConcurrencyHelpers
import PostgresNIO
import Tenantry
import TenantryCore

extension PgBouncerBench {
    /// What every contestant shares: the fleet, the tenants' logins, the request sequence.
    struct Bed: Sendable {
        let fleet: BenchFleet
        let catalog: Catalog
        let logins: [PgBouncer.Login]
        let pooler: (name: String, password: String)
        let distribution: Zipf
        let options: PgBouncerBench

        func run(_ name: String, round: Int, sampler: ConnectionSampler) async throws -> Run {
            name == "router" ? try await router(round: round, sampler: sampler) : try await bouncer(name, round: round, sampler: sampler)
        }

        /// The router with the global cap, each tenant's own role.
        private func router(round: Int, sampler: ConnectionSampler) async throws -> Run {
            let router = fleet.makeRouter(catalog: catalog, cap: options.cap, perTenant: options.routerPerTenant)
            let operation = BenchFleet.pointSelect(router, fleet.ids)
            return try await router.running {
                try await measure("router", round: round, sampler: sampler, operation)
            }
        }

        /// PgBouncer in transaction pooling, one PostgresClient per tenant database in front of it,
        /// logged in as the tenant's role; for `pgbouncer_capped` as the one shared role, whose
        /// server connections `max_user_connections` caps at `--cap` across databases.
        private func bouncer(_ name: String, round: Int, sampler: ConnectionSampler) async throws -> Run {
            var settings = PgBouncer.Settings()
            settings.defaultPoolSize = options.poolSize
            settings.maxDBConnections = options.poolSize
            var logins = logins
            if name == "pgbouncer_capped" {
                // One login for every tenant database, so that max_user_connections caps it across them.
                settings.maxUserConnections = options.cap
                logins = logins.map { PgBouncer.Login(user: pooler.name, password: pooler.password, database: $0.database) }
            }
            let (fleet, clientConnections) = (fleet, options.clientConnections)
            return try await PgBouncer.with(
                server: fleet.admin, databases: logins.map(\.database), logins: logins, settings: settings
            ) { [logins] bouncer in
                let clients = try logins.map { login in
                    var url = fleet.admin.with(database: login.database).with(user: login.user, password: login.password)
                    (url.host, url.port) = ("127.0.0.1", bouncer.port)
                    return PostgresClient(
                        configuration: try url.clientConfiguration(maximumConnections: clientConnections), backgroundLogger: Bench.logger)
                }
                let logger = Bench.logger
                let operation: @Sendable (Int, Int) async throws -> Void = { tenant, key in
                    let rows = try await clients[tenant].query("SELECT id, name, price FROM items WHERE id = \(key)", logger: logger)
                    for try await _ in rows {}
                }
                return try await withThrowingTaskGroup(of: Run?.self) { group in
                    for client in clients { group.addTask { await client.run(); return nil } }
                    group.addTask {
                        let run = try await measure(name, round: round, sampler: sampler, cpu: bouncer.cpuSeconds, operation)
                        // Stop the pooler before the clients: requests abandoned by the timeout may
                        // still wait in its queues, and a client shuts down once they have failed.
                        await bouncer.stop()
                        return run
                    }
                    defer { group.cancelAll() }
                    while let value = try await group.next() {
                        if let value { return value }
                    }
                    throw CancellationError()
                }
            }
        }

        /// Warm-up, then the measured run with the round's seed (the same sequence for every
        /// contestant), sampling server connections throughout and counting server sessions opened.
        private func measure(
            _ name: String, round: Int, sampler: ConnectionSampler, cpu: (@Sendable () -> Double)? = nil,
            _ operation: @escaping @Sendable (Int, Int) async throws -> Void
        ) async throws -> Run {
            let errors = ErrorKinds()
            let timeout = Duration.milliseconds(Int64(options.requestTimeout * 1000))
            // Each request gives up after `--request-timeout`, as an application would (a request
            // stuck in a queue of PgBouncer or of a client's pool is then an error, not a stall).
            let recorded: @Sendable (Int, Int) async throws -> Void = { tenant, key in
                do {
                    try await PgBouncerBench.abandoning(after: timeout) { try await operation(tenant, key) }
                } catch {
                    errors.record(error)
                    throw error
                }
            }
            let distribution = distribution
            let pick: @Sendable (inout SeededRandom) -> Int = { distribution.sample(&$0) }
            let (tasks, quiet) = (options.concurrency, options.json)
            let warmup = Duration.milliseconds(Int64(options.warmup * 1000))
            let duration = Duration.milliseconds(Int64(options.seconds * 1000))
            let ((result, sessions, cpuSeconds), peak, backends) = try await sampler.peak {
                _ = await Load.run(concurrency: tasks, duration: warmup, keys: BenchFleet.rows, seed: 7, pick: pick, recorded)
                errors.reset()
                if !quiet { Bench.note("  measuring for \(options.seconds) s…") }
                let (before, cpuBefore) = (try await sampler.sessions(), cpu?() ?? 0)
                let result = await Load.run(
                    concurrency: tasks, duration: duration, keys: BenchFleet.rows, seed: UInt64(100 + round), pick: pick, recorded)
                return (result, try await sampler.sessions() - before, (cpu?() ?? 0) - cpuBefore)
            }
            return Run(
                name: name, round: round, result: result, peakServerConnections: peak, peakBackends: backends,
                errorKinds: errors.kinds, serverConnects: sessions,
                poolerCores: cpu == nil ? nil : cpuSeconds / max(result.seconds, 0.001))
        }
    }

    /// Runs `body`, or throws a timeout error after `timeout` and leaves `body` behind (cancelled,
    /// but a query already sent to a server or a pooler may still be waiting for its answer).
    static func abandoning(after timeout: Duration, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let finished = NIOLockedValueBox(false)
        let timer = NIOLockedValueBox<Task<Void, Never>?>(nil)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            @Sendable func finish(_ result: Result<Void, any Error>) -> Bool {
                guard finished.withLockedValue({ done in defer { done = true }; return !done }) else { return false }
                continuation.resume(with: result)
                return true
            }
            let work = Task {
                do { try await body(); _ = finish(.success(())) } catch { _ = finish(.failure(error)) }
                timer.withLockedValue { $0?.cancel() }
            }
            timer.withLockedValue {
                $0 = Task {
                    guard (try? await Task.sleep(for: timeout)) != nil else { return }
                    let message = "request timed out after \(timeout.totalSeconds) s"
                    if finish(.failure(TenantryError(code: .timeout, message: message))) { work.cancel() }
                }
            }
        }
    }

    /// Counts of failed requests by the server's (or PgBouncer's) message.
    final class ErrorKinds: Sendable {
        private let counts = NIOLockedValueBox<[String: Int]>([:])

        var kinds: [String: Int] { counts.withLockedValue { $0 } }

        func reset() { counts.withLockedValue { $0 = [:] } }

        func record(_ error: any Error) {
            let kind: String
            if let error = error as? TenantryError {
                kind = error.message
            } else if let error = error as? PSQLError {
                kind = error.serverInfo?[.message].map { String($0.prefix(120)) } ?? "\(error.code)"
            } else {
                kind = String(String(describing: error).prefix(120))
            }
            counts.withLockedValue { $0[kind, default: 0] += 1 }
        }
    }

    /// Samples `pg_stat_activity` on its own superuser connection: client backends on tenant
    /// databases (the server connections the contestant holds) and all client backends.
    final class ConnectionSampler: Sendable {
        private let connection: PostgresConnection
        static let tenantDatabases = "^bench_[0-9]+_db$"

        private init(_ connection: PostgresConnection) { self.connection = connection }

        static func with<T: Sendable>(_ admin: PostgresURL, _ body: (ConnectionSampler) async throws -> T) async throws -> T {
            try await Database.withConnection(admin, logger: Bench.logger) { connection in
                try await body(ConnectionSampler(connection))
            }
        }

        /// (client backends on tenant databases, all client backends but this one).
        func counts() async throws -> (Int, Int) {
            let rows = try await connection.query("""
                SELECT (count(*) FILTER (WHERE datname ~ \(Self.tenantDatabases)))::int8, count(*)::int8 FROM pg_stat_activity
                WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                """, logger: Bench.logger)
            for try await (tenant, all) in rows.decode((Int, Int).self) { return (tenant, all) }
            return (0, 0)
        }

        /// Sessions ever opened to tenant databases (`pg_stat_database.sessions`).
        func sessions() async throws -> Int {
            let rows = try await connection.query(
                "SELECT coalesce(sum(sessions), 0)::int8 FROM pg_stat_database WHERE datname ~ \(Self.tenantDatabases)",
                logger: Bench.logger)
            for try await (count) in rows.decode(Int.self) { return count }
            return 0
        }

        /// Waits (up to 30 s) until no client backend is left on a tenant database, so that each
        /// run starts from the same empty server.
        func waitUntilIdle() async throws {
            for _ in 0..<300 {
                if try await counts().0 == 0 { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            Bench.note("warning: tenant connections still open after 30 s")
        }

        /// Runs `body` while sampling every 50 ms; returns its value and the peaks.
        func peak<T: Sendable>(_ body: () async throws -> T) async throws -> (T, Int, Int) {
            let peak = NIOLockedValueBox((0, 0))
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        guard let (tenant, all) = try? await self.counts() else { return }
                        peak.withLockedValue { $0 = (max($0.0, tenant), max($0.1, all)) }
                        try? await Task.sleep(for: .milliseconds(50))
                    }
                }
                defer { group.cancelAll() }
                let value = try await body()
                let (tenant, all) = peak.withLockedValue { $0 }
                return (value, tenant, all)
            }
        }
    }
}
