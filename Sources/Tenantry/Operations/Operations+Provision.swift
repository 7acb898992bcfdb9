import Foundation
import PostgresNIO
import TenantryCore

extension Operations {
    /// What ``provision(_:concurrency:server:migrationsDirectory:progress:)`` did (`provision --json`).
    public struct ProvisionReport: Sendable, Codable, Equatable {
        /// Tenants provisioned now (`created`) or already (`existing`), by tenant id.
        public var provisioned: [TenantProvisioner.Outcome]
        /// Tenants that failed, with a one-line reason.
        public var failed: [String: String]
    }

    /// Provisions tenant databases (the seeds' provision-all): `all` is every tenant of the unified
    /// database (``unifiedTenants()``). Tenants are registered in the catalog first, then provisioned
    /// `concurrency` at a time in one provisioning session; each tenant's failure is reported, not thrown.
    public func provision(
        _ selection: TenantSelection, concurrency: Int = 4, server: String? = nil, migrationsDirectory: String? = nil,
        progress: ProgressHandler? = nil
    ) async throws -> ProvisionReport {
        let provisioner = try provisioner(migrationsDirectory: migrationsDirectory)
        let ids: [TenantID]
        switch selection {
        case .all: ids = try await unifiedTenants()
        case .tenants(let list): ids = list
        }
        try await catalog.registerTenants(ids)
        var report = ProvisionReport(provisioned: [], failed: [:])
        // One session for the whole run: admin connections and the template check are shared.
        try await provisioner.withSession { provisioner in
            try await forEachTenant(ids, concurrency: concurrency, { try await provisioner.provision($0, server: server) }) {
                id, result, done in
                switch result {
                case .success(let outcome):
                    report.provisioned.append(outcome)
                    progress?(OperationProgress(
                        done: done, total: ids.count, tenant: id,
                        message: "\(outcome.result) \(outcome.database) on \(outcome.server) (\(outcome.milliseconds) ms)"))
                case .failure(let error):
                    report.failed[id.rawValue] = Database.oneLine(error)
                    progress?(OperationProgress(
                        done: done, total: ids.count, tenant: id, failed: true, message: "FAILED: \(Database.oneLine(error))"))
                }
            }
        }
        report.provisioned.sort { $0.tenant < $1.tenant }
        return report
    }

    /// The tenants of the unified database: ids from the tenant table (`TENANTRY_TENANT_TABLE`,
    /// default `shops`), else the distinct discriminator values of every table that has the column.
    public func unifiedTenants() async throws -> [TenantID] {
        let naming = configuration.naming
        let logger = logger
        return try await Database.withConnection(databaseURL, logger: logger) { connection in
            let table = try SQLIdentifier.quoted(naming.tenantTable)
            let column = try SQLIdentifier.quoted(naming.discriminator)
            var sql: String
            let exists = try await connection.query(
                "SELECT to_regclass(\(naming.tenantTable)) IS NOT NULL", logger: logger).decode(Bool.self).first { _ in true }
            if exists == true {
                sql = "SELECT id::text FROM \(table) ORDER BY id"
            } else {
                var tables: [String] = []
                for try await name in try await connection.query("""
                    SELECT c.relname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attname = \(naming.discriminator) AND NOT a.attisdropped
                    """, logger: logger).decode(String.self) { tables.append(name) }
                guard !tables.isEmpty else {
                    throw TenantryError(
                        code: .invalidArgument,
                        message: "the unified database has no table \(naming.tenantTable) and no table with a \(naming.discriminator) column")
                }
                sql = try tables.map { "SELECT \(column)::text AS id FROM \(try SQLIdentifier.quoted($0))" }
                    .joined(separator: " UNION ") + " ORDER BY 1"
            }
            var ids: [TenantID] = []
            for try await value in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(String?.self) {
                guard let value else { continue }
                ids.append(try TenantID(value))
            }
            return ids.sorted()
        }
    }
}

extension Database {
    /// The first line of ``message(of:)``: what reports and progress lines show.
    public static func oneLine(_ error: any Error) -> String {
        let text = message(of: error)
        return text.split(separator: "\n").first.map(String.init) ?? text
    }
}
