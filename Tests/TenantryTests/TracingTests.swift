import Foundation
import InMemoryTracing
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing
import Tracing

/// The library's spans (docs/tracing.md), recorded by an in-memory tracer bound to the test's task
/// with `withTracer` (the process's `InstrumentationSystem` is never bootstrapped: tests run in
/// parallel in one process).
@Suite("tracing: spans of routed queries, move phases and relay batches", .timeLimit(.minutes(4)))
struct TracingTests {
    static func attribute(_ span: FinishedInMemorySpan, _ key: String) -> SpanAttribute? {
        span.attributes[key]?.toSpanAttribute()
    }

    static func span(_ spans: [FinishedInMemorySpan], _ name: String, tenant: TenantID? = nil) throws -> FinishedInMemorySpan {
        try #require(spans.first { $0.operationName == name && (tenant == nil || attribute($0, TenantryTracing.Key.tenant) == .string(tenant!.rawValue)) },
            "no span \(name) among \(spans.map(\.operationName))")
    }

    @Test("a routed query: tenantry.query, the parent of route.resolve, pool.lease and query, each with the tenant id")
    func routedQuery() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 20)
        try await fixture.withMover { _, _, catalog in
            var pool = TenantPool.Configuration()
            pool.maxConnections = 4
            let router = TenantRouter(
                configuration: TenantRouter.Configuration(unifiedURL: fixture.unifiedURL, pool: pool), catalog: catalog,
                registry: CredentialRegistry(catalog: catalog, keyring: fixture.base.keyring), servers: fixture.directory(),
                logger: MoveFixture.logger)
            let tenant = fixture.ids[1]
            let tracer = InMemoryTracer()
            let count = try await withTracer(tracer) {
                try await router.withConnection(tenant: tenant, intent: .read) { connection in
                    try await connection.query("SELECT count(*)::int FROM customers").first?.decode(Int.self)
                }
            }
            #expect((count ?? 0) > 0)
            let spans = tracer.finishedSpans
            let root = try Self.span(spans, "tenantry.query")
            #expect(root.parentSpanID == nil)
            #expect(Self.attribute(root, TenantryTracing.Key.tenant) == .string("2"))
            #expect(Self.attribute(root, TenantryTracing.Key.dbSystem) == .string("postgresql"))
            #expect(Self.attribute(root, TenantryTracing.Key.intent) == .string("read"))
            #expect(Self.attribute(root, TenantryTracing.Key.placement) == .string("shared"))
            #expect(Self.attribute(root, TenantryTracing.Key.readStrategy) == .string("unified"))
            for name in ["route.resolve", "pool.lease", "query"] {
                let child = try Self.span(spans, name)
                #expect(child.parentSpanID == root.spanID && child.traceID == root.traceID, "\(name) is a child of tenantry.query")
                #expect(Self.attribute(child, TenantryTracing.Key.tenant) == .string("2"), "\(name) carries the tenant id")
            }
            #expect(Self.attribute(try Self.span(spans, "query"), TenantryTracing.Key.source) == .string("unified"))
            #expect(spans.allSatisfy { $0.errors.isEmpty })

            // A failing query: its error is on the query span and on the parent.
            let failing = InMemoryTracer()
            await #expect(throws: (any Error).self) {
                try await withTracer(failing) {
                    try await router.withConnection(tenant: tenant, intent: .read) { connection in
                        try await connection.query("SELECT * FROM no_such_table")
                    }
                }
            }
            #expect(try Self.span(failing.finishedSpans, "query").status?.code == .error)
            #expect(try Self.span(failing.finishedSpans, "tenantry.query").errors.count == 1)
        }
    }

    @Test("a move of one tenant: copy (capture inside, rows), relay batches forward and reverse (tenant, changes), cutover (pause, fence), rollback, each with the tenant id")
    func movePhasesAndRelayBatch() async throws {
        let fixture = try await MoveFixture.make(shops: 2, rowsPerShop: 30)
        let tenant = fixture.ids[0]
        try await fixture.withMover { copier, relay, catalog in
            let tracer = InMemoryTracer()
            let rows = try await withTracer(tracer) {
                let copied = try await copier.copy(tenant)
                #expect(copied.rows > 0)
                // Two writes captured for the tenant, then applied by one relay batch.
                try await Database.withConnection(fixture.unifiedURL, logger: MoveFixture.logger) { connection in
                    for n in 0..<2 {
                        try await connection.query("""
                            INSERT INTO customers (shop_id, first_name, last_name, email) VALUES (1, 'T', 'R', \("trace\(n)@example.com"))
                            """, logger: MoveFixture.logger)
                    }
                }
                #expect(await relay.drain(tenant) == 2)
                let cutover = Cutover(
                    catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                    actor: "test", logger: MoveFixture.logger)
                _ = try await cutover.cutover(tenant, maxPause: .seconds(5))
                // Dedicated: a write in the tenant database, brought back to unified by reverse sync,
                // which the rollback drains before it switches.
                try await Database.withConnection(try await fixture.tenantURL(tenant), logger: MoveFixture.logger) { connection in
                    try await connection.query("UPDATE customers SET notes = 'traced'", logger: MoveFixture.logger)
                }
                _ = try await cutover.rollback(tenant, maxPause: .seconds(5))
                return copied.rows
            }
            let spans = tracer.finishedSpans
            let copy = try Self.span(spans, "move.copy", tenant: tenant)
            #expect(Self.attribute(copy, TenantryTracing.Key.phase) == .string("copy"))
            #expect(Self.attribute(copy, TenantryTracing.Key.rows) == .int64(Int64(rows)))
            let capture = try Self.span(spans, "move.capture", tenant: tenant)
            #expect(capture.parentSpanID == copy.spanID)

            let batch = try Self.span(spans, "relay.batch", tenant: tenant)
            #expect(Self.attribute(batch, TenantryTracing.Key.changes) == .int64(2))
            #expect(Self.attribute(batch, TenantryTracing.Key.direction) == .string("forward"))

            let cut = try Self.span(spans, "move.cutover", tenant: tenant)
            let pause = try Self.span(spans, "move.pause", tenant: tenant)
            let fence = try Self.span(spans, "move.fence", tenant: tenant)
            #expect(pause.parentSpanID == cut.spanID && fence.parentSpanID == pause.spanID)
            #expect(Self.attribute(fence, TenantryTracing.Key.phase) == .string("cutover"))

            let reverse = try #require(spans.first {
                $0.operationName == "relay.batch" && Self.attribute($0, TenantryTracing.Key.direction) == .string("reverse")
            })
            #expect(Self.attribute(reverse, TenantryTracing.Key.tenant) == .string("1"))
            #expect(Self.attribute(reverse, TenantryTracing.Key.changes) != nil && Self.attribute(reverse, TenantryTracing.Key.changes) != .int64(0))
            let rollback = try Self.span(spans, "move.rollback", tenant: tenant)
            let rollbackFence = try #require(spans.first {
                $0.operationName == "move.fence" && Self.attribute($0, TenantryTracing.Key.phase) == .string("rollback")
            })
            #expect(rollbackFence.parentSpanID == rollback.spanID)
            #expect(spans.filter { $0.operationName.hasPrefix("move.") }.allSatisfy {
                Self.attribute($0, TenantryTracing.Key.tenant) == .string("1")
            })
        }
    }

    @Test("OTEL_EXPORTER_OTLP_ENDPOINT turns export on; a bad endpoint or protocol is one error naming the variable")
    func configuration() throws {
        #expect(try TenantryConfiguration.Tracing(environment: [:]).enabled == false)
        let on = try TenantryConfiguration.Tracing(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"])
        #expect(on.enabled && on.serviceName == "tenantry" && on.exportProtocol == "http/protobuf")
        let named = try TenantryConfiguration(environment: [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example.com", "OTEL_SERVICE_NAME": "shop-mover",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        ]).tracing
        #expect(named.serviceName == "shop-mover" && named.exportProtocol == "http/json")
        let disabled = try TenantryConfiguration.Tracing(environment: [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_SDK_DISABLED": "true",
        ])
        #expect(disabled.enabled == false)
        let bad = #expect(throws: TenantryError.self) {
            try TenantryConfiguration(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"])
        }
        #expect(bad?.message.hasPrefix("OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL") == true)
        let grpc = #expect(throws: TenantryError.self) {
            try TenantryConfiguration.Tracing(environment: [
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            ])
        }
        #expect(grpc?.message.hasPrefix("OTEL_EXPORTER_OTLP_PROTOCOL must be") == true)
        for name in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME"] {
            #expect(TenantryConfiguration.variables.contains(name))
        }
    }
}
