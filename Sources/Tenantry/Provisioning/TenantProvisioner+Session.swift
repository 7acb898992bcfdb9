import Logging
import PostgresNIO
import TenantryCore

extension TenantProvisioner {
    /// Runs `body` with a provisioner whose provisions (sequential or concurrent) share connections:
    /// one admin connection per server and saga, kept for the next saga, and the catalog
    /// connections that hold tenant locks; and whose template is checked once per server (again
    /// after any failed provision). Everything is closed when `body` returns.
    ///
    /// A provision outside a session runs in a session of its own.
    public func withSession<Result: Sendable>(_ body: (TenantProvisioner) async throws -> Result) async throws -> Result {
        let session = ProvisioningSession(logger: logger)
        var provisioner = self
        provisioner.session = session
        do {
            let result = try await body(provisioner)
            await session.close()
            return result
        } catch {
            await session.close()
            throw error
        }
    }

    /// The session key of `admin`'s server's template at this provisioner's migrations.
    func templateKey(_ admin: PostgresURL) -> String {
        let versions = migrations.map { "\($0.version):\($0.checksum)" }.joined(separator: ",")
        return "\(admin.host):\(admin.port)/\(naming.templateDatabase)@\(versions)"
    }

    /// Holds the tenant's advisory lock (in the catalog database) around `body`, on a connection of
    /// its own (in a session: one that the session keeps for the next tenant).
    func withTenantLock<Result: Sendable>(_ tenant: TenantID, _ body: () async throws -> Result) async throws -> Result {
        if let session, let url = catalog.url {
            return try await session.withConnection(url) { try await Database.holdingTenantLock(tenant, on: $0, logger: logger, body) }
        }
        return try await catalog.withDedicatedConnection { try await Database.holdingTenantLock(tenant, on: $0, logger: logger, body) }
    }
}
