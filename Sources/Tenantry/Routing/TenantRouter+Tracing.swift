import TenantryCore
import Tracing

extension TenantRouter {
    /// Runs a routed query or transaction of `tenant` in its span, `tenantry.query` (children:
    /// `route.resolve`, `pool.lease`, `query`; docs/tracing.md). With tracing off, just `body(nil)`.
    func traced<Result>(
        _ tenant: TenantID, _ intent: Intent, isolation: isolated (any Actor)? = #isolation,
        _ body: (_ span: (any Span)?) async throws -> Result
    ) async throws -> Result {
        try await TenantryTracing.withSpan("tenantry.query", tenant: tenant, isolation: isolation) { span in
            span?.attributes[TenantryTracing.Key.dbSystem] = "postgresql"
            span?.attributes[TenantryTracing.Key.intent] = intent.rawValue
            return try await body(span)
        }
    }

    /// The tenant's route (and the read policy when `policy`), in a span `route.resolve` when
    /// `parent` is a span; the route's placement, phase, server and the read strategy go on both.
    func resolve(_ tenant: TenantID, policy: Bool, parent: (any Span)?) async throws -> (Route, ReadPolicy?) {
        guard parent != nil else { return (try await route(for: tenant), policy ? try await readPolicy() : nil) }
        return try await TenantryTracing.withSpan("route.resolve", tenant: tenant) { span in
            let route = try await route(for: tenant)
            let readPolicy = policy ? try await readPolicy() : nil
            for span in [span, parent] {
                span?.attributes[TenantryTracing.Key.placement] = route.placement.rawValue
                span?.attributes[TenantryTracing.Key.phase] = route.phase.rawValue
                span?.attributes[TenantryTracing.Key.server] = route.server ?? ServerDirectory.defaultServerName
                if let readPolicy { span?.attributes[TenantryTracing.Key.readStrategy] = readPolicy.strategy.rawValue }
            }
            return (route, readPolicy)
        }
    }
}
