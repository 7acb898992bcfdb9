import TenantryCore
import Tracing

/// Tenantry's spans (swift-distributed-tracing; the list is in docs/tracing.md): a routed query
/// and its route resolution, lease and query; every move phase; every relay batch.
///
/// Spans go to the process's tracer, `InstrumentationSystem.tracer` (an executable bootstraps
/// one, as `tenantry` does with swift-otel when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), or to the
/// tracer a task binds with swift-distributed-tracing's `withTracer(_:_:)` (tests). When there is
/// none (the no-op tracer), no span is started and no attribute is built: the body runs alone.
public enum TenantryTracing {
    /// Span attribute keys.
    public enum Key {
        /// The tenant a span is about (a batch of several tenants: their ids joined by commas).
        public static let tenant = "tenantry.tenant_id"
        /// The number of tenants of a relay batch.
        public static let tenantCount = "tenantry.tenant_count"
        /// The move phase a span runs (`capture`, `copy`, `verify`, `cutover`, …).
        public static let phase = "tenantry.move.phase"
        /// `unified` or `tenant`: the database a query ran on.
        public static let source = "tenantry.source"
        /// The tenant's placement: `shared` or `dedicated`.
        public static let placement = "tenantry.placement"
        /// `read` or `write`.
        public static let intent = "tenantry.intent"
        /// The read policy's strategy (a read).
        public static let readStrategy = "tenantry.read_strategy"
        /// The server name (the catalog's; `default` for the unified database's server).
        public static let server = "tenantry.server"
        /// The relay direction: `forward` (unified → tenant), `reverse`, or `server-move`.
        public static let direction = "tenantry.relay.direction"
        /// Changes applied by a relay batch.
        public static let changes = "tenantry.relay.changes"
        /// Rows copied (a copy).
        public static let rows = "tenantry.rows"
        /// OpenTelemetry's database system attribute: always `postgresql`.
        public static let dbSystem = "db.system"
        /// OpenTelemetry's database name attribute.
        public static let dbName = "db.name"
    }

    /// The tracer spans go to, or `nil` when tracing is off (the no-op tracer): callers then skip
    /// every span and attribute. The usual "off" (nothing bootstrapped, nothing bound) is seen
    /// without the tracer lookup's casts.
    @inline(__always)
    static var tracer: (any Tracer)? {
        if InstrumentationSystem.instrument is NoOpInstrument { return nil }
        let tracer = InstrumentationSystem.tracer
        return tracer is NoOpTracer ? nil : tracer
    }

    /// The tracer for a span that only belongs inside another one (a routed query's lease and
    /// query): `nil` at once, without the lookup, when no span is current.
    @inline(__always)
    static var childTracer: (any Tracer)? {
        InstrumentationContext.current == nil ? nil : tracer
    }

    /// Runs `body` inside a span named `name`, a child of the task's current span, with the
    /// tenant and phase attributes set; a thrown error is recorded on the span. With tracing off,
    /// runs `body` with `nil`. Set more attributes with `span?.attributes[…] = …` (evaluated only
    /// when there is a span). `child`: only inside a current span (``childTracer``).
    static func withSpan<Result>(
        _ name: String, tenant: TenantID? = nil, phase: String? = nil, kind: SpanKind = .internal, child: Bool = false,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (_ span: (any Span)?) async throws -> Result
    ) async throws -> Result {
        guard let tracer = child ? childTracer : tracer else { return try await body(nil) }
        return try await tracer.withSpan(name, ofKind: kind, isolation: isolation) { span in
            if let tenant { span.attributes[Key.tenant] = tenant.rawValue }
            if let phase { span.attributes[Key.phase] = phase }
            return try await body(span)
        }
    }

    /// Starts a span the caller ends (`span?.end()`), a child of the task's current span; `nil`
    /// when tracing is off or (`child`) no span is current.
    static func startSpan(_ name: String, tenant: TenantID? = nil, kind: SpanKind = .internal, child: Bool = false) -> (any Span)? {
        guard let tracer = child ? childTracer : tracer else { return nil }
        let span = tracer.startSpan(name, ofKind: kind)
        if let tenant { span.attributes[Key.tenant] = tenant.rawValue }
        return span
    }

    /// A move phase of one tenant: a span `move.<phase>` with the tenant and phase attributes.
    static func phase<Result>(
        _ phase: String, tenant: TenantID, isolation: isolated (any Actor)? = #isolation,
        _ body: (_ span: (any Span)?) async throws -> Result
    ) async throws -> Result {
        try await withSpan("move." + phase, tenant: tenant, phase: phase, isolation: isolation, body)
    }
}

extension Span {
    /// Records `error` on the span, marks it failed and ends it (a span started by hand).
    func fail(_ error: any Error) {
        recordError(error)
        setStatus(SpanStatus(code: .error))
        end()
    }
}
