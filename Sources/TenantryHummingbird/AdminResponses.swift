import Tenantry
import TenantryCore

// Response bodies of the admin API that are not a library type encoded as is. Tests encode a
// sample of each and check its keys against docs/openapi.json (OpenAPIConformanceTests).

/// `202` of every job-submitting endpoint: `{"job", "state", "kind"}`.
struct AcceptedResponse: Encodable {
    var job: String
    var state: String
    var kind: String
}

/// `GET /health`.
struct HealthResponse: Encodable {
    var status: String
    var catalogVersion: Int?
    var error: String?
}

/// `POST migration/enable-dual-write`.
struct DualWriteResponse: Encodable {
    var enabled: Bool
    var tenants: [TenantID]
}

/// `GET migration/performance`.
struct PerformanceResponse: Encodable {
    var stats: PerformanceStats
    var comparison: PerformanceMonitor.Comparison
    var workload: ComparisonWorkload.Report?
}

/// `GET migration/dead-letters`.
struct DeadLettersResponse: Encodable {
    var deadLetters: [DeadLetters.Letter]
}
