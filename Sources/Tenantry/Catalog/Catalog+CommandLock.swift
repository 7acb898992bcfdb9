import PostgresNIO
import TenantryCore

extension Catalog {
    /// Runs one command for `tenant` that changes where its data lives (a server move's verbs, a
    /// restore) while holding the tenant's command lock in the catalog database (a session lock on
    /// a connection of its own): a second such command for the same tenant (another process, a
    /// retried API request) fails at once with one clear error instead of racing this one.
    func exclusively<Result: Sendable>(_ tenant: TenantID, _ what: String, _ body: () async throws -> Result) async throws -> Result {
        let logger = logger
        let key = AdvisoryLock.tenant(tenant)
        return try await withDedicatedConnection { connection in
            let locked = try await connection.query(
                "SELECT pg_try_advisory_lock(\(AdvisoryLock.serverMoveNamespace), \(key))", logger: logger)
                .decode(Bool.self).first(where: { _ in true }) ?? false
            guard locked else {
                throw TenantryError(
                    code: .conflict,
                    message: "another move command is running for tenant \(tenant) (a server move or a restore); \(what) was not "
                        + "started (tenantry move status --tenant \(tenant))",
                    tenant: tenant.rawValue)
            }
            do {
                let result = try await body()
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(AdvisoryLock.serverMoveNamespace), \(key))", logger: logger)
                return result
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(AdvisoryLock.serverMoveNamespace), \(key))", logger: logger)
                throw error
            }
        }
    }
}
