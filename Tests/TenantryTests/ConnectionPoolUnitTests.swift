import NIOConcurrencyHelpers
@testable import Tenantry
import TenantryCore
import TenantryHummingbird
import Testing

/// ``ConnectionPool``'s rules without a server (``FakeConnection``): the issue asks for the cap,
/// fairness and eviction to be unit-testable like PostgresNIO's `ConnectionPoolModule`. The same
/// pool over PostgreSQL is tested in the router suites.
@Suite("connection pool (unit, fake connections)", .timeLimit(.minutes(1)))
struct ConnectionPoolUnitTests {
    @Test("fairness: freed connections go to keys in turn, not to the key that queued first")
    func roundRobinAcrossKeys() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 1)
        let served = NIOLockedValueBox<[String]>([])
        let gate = Gate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pool.withConnection(key("a")) { _ in await gate.wait() } }
            try await pool.eventually { $0.leased == 1 }
            // a queues three, then b and c one each; first come, first served would serve a 3 times first.
            for (index, name) in ["a1", "a2", "a3", "b1", "c1"].enumerated() {
                group.addTask {
                    try await pool.withConnection(key(String(name.prefix(1)))) { _ in served.withLockedValue { $0.append(name) } }
                }
                try await pool.eventually { $0.waiting == index + 1 }
            }
            gate.open()
            try await group.waitForAll()
        }
        #expect(served.withLockedValue { $0 } == ["a1", "b1", "c1", "a2", "a3"])
        let stats = await pool.statistics()
        #expect(stats.open == 1 && stats.leases == 6 && stats.waiting == 0)
        #expect(server.peakLive == 1)
    }

    @Test("server cap: 6 keys × 4 concurrent leases never have more than the cap open, at the server too")
    func serverCap() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 3, perKey: 10)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<24 {
                group.addTask {
                    try await pool.withConnection(key("t\(index % 6)")) { _ in try await Task.sleep(for: .milliseconds(2)) }
                }
            }
            try await group.waitForAll()
        }
        let stats = await pool.statistics()
        #expect(stats.peakOpen <= 3 && stats.leases == 24)
        // An evicted connection is closed before its replacement opens: the server never sees more.
        #expect(server.peakLive <= 3, "server saw \(server.peakLive) sessions")
        #expect(stats.evictions > 0)
        #expect(server.live == stats.open)
    }

    @Test("per-key maximum: a key at its maximum waits while another key is served")
    func perKeyMaximum() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 10, perKey: 2)
        let (first, second) = (Gate(), Gate())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pool.withConnection(key("a")) { _ in await first.wait() } }
            group.addTask { try await pool.withConnection(key("a")) { _ in await second.wait() } }
            try await pool.eventually { $0.leased == 2 }
            group.addTask { try await pool.withConnection(key("a")) { _ in } }
            try await pool.eventually { $0.waiting == 1 }
            // b queues behind a's waiter but is served at once: a is at its maximum.
            try await pool.withConnection(key("b")) { _ in }
            #expect(await pool.statistics().waiting == 1)
            first.open()
            try await pool.eventually { $0.waiting == 0 && $0.leases == 4 }
            second.open()
            try await group.waitForAll()
        }
        #expect(server.connects.filter { $0 == "a" }.count == 2)
    }

    @Test("at the cap, the least recently used idle connection of another key is evicted (and closed first)")
    func leastRecentlyUsedEviction() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 2)
        try await pool.withConnection(key("a")) { _ in }
        try await Task.sleep(for: .milliseconds(2))
        try await pool.withConnection(key("b")) { _ in }
        try await pool.withConnection(key("c")) { _ in }
        let (a, b) = (server.connections[0], server.connections[1])
        #expect(a.key == "a" && a.isClosed && a.closeCalls == 1)
        #expect(b.key == "b" && !b.isClosed)
        let stats = await pool.statistics()
        #expect(stats.evictions == 1 && stats.open == 2 && stats.idle == 2)
        #expect(server.live == 2 && server.peakLive == 2)
    }

    @Test("a lease that cannot be served in time fails with a clear timeout error")
    func leaseTimeout() async throws {
        let server = FakeServer()
        let exporter = PrometheusExporter()
        let pool = FakePool.make(server, cap: 1, leaseTimeout: .milliseconds(100), metricsFactory: exporter.metricsFactory)
        let gate = Gate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pool.withConnection(key("a")) { _ in await gate.wait() } }
            try await pool.eventually { $0.leased == 1 }
            let start = ContinuousClock.now
            let error = await #expect(throws: TenantryError.self) { try await pool.withConnection(key("b")) { _ in } }
            #expect(ContinuousClock.now - start < .seconds(2))
            #expect(error?.code == .timeout)
            #expect(error?.message == "no connection for app@b within 100 ms (pool unit: 1 of 1 connections in use, 0 of 20 for this tenant)")
            gate.open()
            try await group.waitForAll()
        }
        #expect(await pool.statistics().leaseTimeouts == 1)
        // Emitted when it happened, no publishing step.
        #expect(exporter.render().contains(#"tenantry_pool_lease_timeouts_total{server="unit"} 1"#))
    }

    @Test("a cancelled waiter leaves the queue at once (its timer ends with it); the pool keeps serving")
    func cancelledWaiter() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 1)
        let gate = Gate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pool.withConnection(key("a")) { _ in await gate.wait() } }
            try await pool.eventually { $0.leased == 1 }
            let waiter = Task { try await pool.withConnection(key("b")) { _ in } }
            try await pool.eventually { $0.waiting == 1 }
            waiter.cancel()
            await #expect(throws: CancellationError.self) { try await waiter.value }
            #expect(await pool.statistics().waiting == 0)
            gate.open()
            try await group.waitForAll()
        }
        try await pool.withConnection(key("b")) { _ in }
        let stats = await pool.statistics()
        #expect(stats.leaseTimeouts == 0 && stats.leases == 2 && stats.open == 1)
    }

    @Test("a broken connection is closed and discarded before withConnection returns; the next lease opens a new one")
    func brokenConnectionIsDiscarded() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 2)
        await #expect(throws: FakeConnection.Failure.self) {
            try await pool.withConnection(key("a")) { _ in throw FakeConnection.Failure() }
        }
        let broken = server.connections[0]
        #expect(broken.isClosed && broken.closeCalls == 1)
        var stats = await pool.statistics()
        #expect(stats.discarded == 1 && stats.open == 0 && stats.idle == 0)
        // Any other error keeps the connection.
        await #expect(throws: TenantryError.self) {
            try await pool.withConnection(key("a")) { _ in throw TenantryError(code: .conflict, message: "no") }
        }
        // One the server ended while idle (a restart) is dropped, not handed out.
        server.connections[1].endFromServer()
        let number = try await pool.withConnection(key("a")) { $0.number }
        #expect(number == 2)
        stats = await pool.statistics()
        #expect(stats.discarded == 2 && stats.connects == 3 && stats.open == 1 && server.live == 1)
    }

    @Test("an idle connection failing its health check is closed and replaced")
    func healthCheck() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 2) { $0.healthCheckAfter = .zero }
        try await pool.withConnection(key("a")) { _ in }
        server.connections[0].makeUnhealthy()
        try await Task.sleep(for: .milliseconds(1))
        let number = try await pool.withConnection(key("a")) { $0.number }
        #expect(number == 1 && server.connections[0].closeCalls == 1)
        #expect(await pool.statistics().discarded == 1 && server.live == 1)
    }

    @Test("failed connects are retried with backoff within the lease timeout")
    func reconnectWithBackoff() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 2)
        server.failNext(2)
        try await pool.withConnection(key("a")) { _ in }
        let stats = await pool.statistics()
        #expect(stats.connectFailures == 2 && stats.connects == 1 && stats.leases == 1)
    }

    @Test("a connect that outlives the lease deadline fails the lease in time; the late connection is closed")
    func lateConnectIsClosed() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 2, leaseTimeout: .milliseconds(50))
        server.holdConnects()
        let start = ContinuousClock.now
        let error = await #expect(throws: TenantryError.self) { try await pool.withConnection(key("a")) { _ in } }
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(error?.code == .timeout)
        #expect(error?.message.hasPrefix("pool unit: cannot connect to app@a within 50 ms") == true, "\(error?.message ?? "")")
        #expect(server.heldConnects == 1)
        server.answerHeldConnects()
        // The connection arrives after the race was lost: nobody would release it, so it is closed.
        let deadline = ContinuousClock.now + .seconds(5)
        while server.connections.first?.closeCalls != 1 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        #expect(server.connections.count == 1 && server.connections[0].closeCalls == 1 && server.live == 0)
        let stats = await pool.statistics()
        #expect(stats.open == 0 && stats.connectFailures == 1 && stats.leaseTimeouts == 1)
    }

    @Test("closeIdle returns after the idle connections are closed")
    func idleClose() async throws {
        let server = FakeServer()
        let exporter = PrometheusExporter()
        let pool = FakePool.make(server, cap: 2, metricsFactory: exporter.metricsFactory)
        try await pool.withConnection(key("a")) { _ in }
        try await pool.withConnection(key("b")) { _ in }
        #expect(await pool.closeIdle(olderThan: .zero) == 2)
        #expect(server.live == 0 && server.connections.allSatisfy { $0.closeCalls == 1 })
        #expect(await pool.statistics().idleClosed == 2)
        let text = exporter.render()
        for line in [
            #"tenantry_pool_idle_closed_total{server="unit"} 2"#,
            #"tenantry_pool_connections{server="unit",state="open"} 0.0"#,
            #"tenantry_pool_connects_total{server="unit"} 2"#,
            #"tenantry_pool_leases_total{server="unit"} 2"#,
            #"tenantry_pool_lease_wait_seconds_count{server="unit"} 2"#,
        ] {
            #expect(text.contains(line), "\(line) in:\n\(text)")
        }
    }

    @Test("close fails every waiter, closes idle connections before returning, and later leases fail")
    func closeFailsWaiters() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 3, perKey: 1)
        try await pool.withConnection(key("idle")) { _ in }
        let gate = Gate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await pool.withConnection(key("a")) { _ in await gate.wait() } }
            try await pool.eventually { $0.leased == 1 }
            group.addTask {
                let error = await #expect(throws: TenantryError.self) { try await pool.withConnection(key("a")) { _ in } }
                #expect(error?.code == .conflict && error?.message == "pool unit is closed")
            }
            try await pool.eventually { $0.waiting == 1 }
            await pool.close()
            #expect(server.connections[0].isClosed && server.live == 1)  // the leased one is still in use
            gate.open()
            try await group.waitForAll()
        }
        // Given back after close: closed, not kept.
        #expect(server.live == 0)
        await #expect(throws: TenantryError.self) { try await pool.withConnection(key("b")) { _ in } }
        #expect(await pool.statistics().open == 0)
    }

    @Test("a cancelled caller gives an idle connection back instead of closing it in a failed health check; no failure is counted")
    func cancelledLeaseKeepsIdleConnection() async throws {
        let server = FakeServer()
        let pool = FakePool.make(server, cap: 2) { $0.healthCheckAfter = .zero }
        try await pool.withConnection(key("a")) { _ in }
        let leased = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await pool.withConnection(key("a")) { _ in true }
        }
        await #expect(throws: CancellationError.self) { _ = try await leased.value }
        #expect(!server.connections[0].isClosed && server.live == 1)
        let stats = await pool.statistics()
        #expect(stats.idle == 1 && stats.discarded == 0 && stats.connectFailures == 0, "\(stats)")
        // And it serves the next caller.
        #expect(try await pool.withConnection(key("a")) { _ in true })
        #expect(server.connections.count == 1)
    }
}

