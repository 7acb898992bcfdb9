import TenantryCore
import Tracing

extension TenantryTracing {
    /// A command over a selection of tenants (`tenantry.migrate-data`, `tenantry.cutover`, …): the
    /// parent of the per-tenant phase spans, so one trace holds a whole run. Its tenant attribute
    /// is the ids joined by commas, or `all`.
    static func operation<Result>(
        _ name: String, _ selection: TenantSelection, isolation: isolated (any Actor)? = #isolation,
        _ body: (_ span: (any Span)?) async throws -> Result
    ) async throws -> Result {
        try await withSpan(name, isolation: isolation) { span in
            if let span {
                switch selection {
                case .all: span.attributes[Key.tenant] = "all"
                case .tenants(let ids):
                    span.attributes[Key.tenant] = ids.map(\.rawValue).joined(separator: ",")
                    span.attributes[Key.tenantCount] = ids.count
                }
            }
            return try await body(span)
        }
    }
}
