import Foundation
import TenantryCore

extension Operations {
    /// Runs the sample workload (``ComparisonWorkload``) through a router measured by `monitor`:
    /// the same reads of each tenant's rows on unified and on its own database. `tenants` `nil`
    /// is every provisioned tenant; a listed tenant without a database is refused.
    public func measurePerformance(
        tenants only: [TenantID]? = nil, duration: Duration, concurrency: Int = 4, monitor: PerformanceMonitor
    ) async throws -> ComparisonWorkload.Report {
        guard duration > .zero, duration <= .seconds(3600) else {
            throw TenantryError(code: .invalidArgument, message: "the duration must be from 0 to 3600 seconds")
        }
        guard (1...64).contains(concurrency) else {
            throw TenantryError(code: .invalidArgument, message: "the concurrency must be from 1 to 64 (got \(concurrency))")
        }
        let keyring = try configuration.requireKeyring()
        let provisioned = try await provisionedTenants()
        let chosen = try only.map { ids in
            try ids.map { id in
                guard provisioned.contains(id) else {
                    throw TenantryError(code: .tenantNotFound, message: "tenant \(id) has no database", tenant: id.rawValue)
                }
                return id
            }
        } ?? provisioned
        guard !chosen.isEmpty else {
            throw TenantryError(code: .tenantNotFound, message: "no provisioned tenants to measure: run 'tenantry provision' first")
        }
        let router = diagnosticRouter(keyring: keyring, monitor: monitor)
        let workload = ComparisonWorkload(
            tenants: chosen, duration: duration, concurrency: concurrency, discriminator: configuration.naming.discriminator)
        return try await router.running { try await workload.run(router) }
    }
}
