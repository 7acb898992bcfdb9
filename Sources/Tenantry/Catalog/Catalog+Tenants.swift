import Foundation
import PostgresNIO
import TenantryCore

extension Catalog {
    private static let tenantColumns = """
        id, status, placement, server_name, database_name, role_name, schema_version, epoch, last_error, created_at, updated_at
        """

    /// Inserts or replaces a tenant's record (the epoch is bumped when the placement changes).
    public func upsertTenant(_ tenant: TenantRecord) async throws {
        try await client.query("""
            INSERT INTO tenantry.tenants (id, status, placement, server_name, database_name, role_name, schema_version, last_error)
            VALUES (\(tenant.id.rawValue), \(tenant.status.rawValue), \(tenant.placement.rawValue), \(tenant.serverName),
                    \(tenant.databaseName), \(tenant.roleName), \(tenant.schemaVersion), \(tenant.lastError))
            ON CONFLICT (id) DO UPDATE SET
                status = excluded.status, placement = excluded.placement, server_name = excluded.server_name,
                database_name = excluded.database_name, role_name = excluded.role_name,
                schema_version = excluded.schema_version, last_error = excluded.last_error,
                epoch = tenantry.tenants.epoch + CASE WHEN tenantry.tenants.placement IS DISTINCT FROM excluded.placement
                                                           OR tenantry.tenants.server_name IS DISTINCT FROM excluded.server_name
                                                           OR tenantry.tenants.database_name IS DISTINCT FROM excluded.database_name
                                                      THEN 1 ELSE 0 END,
                updated_at = now()
            """, logger: logger)
    }

    /// Registers tenants that are not in the catalog yet (as `shared`, `active`); returns how many were new.
    @discardableResult
    public func registerTenants(_ ids: [TenantID]) async throws -> Int {
        guard !ids.isEmpty else { return 0 }
        let rows = try await client.query("""
            WITH inserted AS (
                INSERT INTO tenantry.tenants (id) SELECT unnest(\(ids.map(\.rawValue))::text[])
                ON CONFLICT (id) DO NOTHING RETURNING 1)
            SELECT count(*)::int FROM inserted
            """, logger: logger)
        return try await rows.decode(Int.self).first(where: { _ in true }) ?? 0
    }

    /// One tenant's record, or `nil`.
    public func tenant(_ id: TenantID) async throws -> TenantRecord? {
        let rows = try await client.query(
            "SELECT \(unescaped: Self.tenantColumns) FROM tenantry.tenants WHERE id = \(id.rawValue)", logger: logger)
        return try await Self.decodeTenants(rows).first
    }

    /// A tenant's record, or `tenantNotFound`.
    public func requireTenant(_ id: TenantID) async throws -> TenantRecord {
        guard let record = try await tenant(id) else {
            throw TenantryError(code: .tenantNotFound, message: "tenant \(id) is not in the catalog", tenant: id.rawValue)
        }
        return record
    }

    /// All tenants, ordered by id (numeric ids numerically).
    public func tenants() async throws -> [TenantRecord] {
        let rows = try await client.query(
            "SELECT \(unescaped: Self.tenantColumns) FROM tenantry.tenants", logger: logger)
        return try await Self.decodeTenants(rows).sorted { $0.id < $1.id }
    }

    /// Removes a tenant (its credentials and move state go with it).
    public func deleteTenant(_ id: TenantID) async throws {
        try await client.query("DELETE FROM tenantry.tenants WHERE id = \(id.rawValue)", logger: logger)
    }

    private static func decodeTenants(_ rows: PostgresRowSequence) async throws -> [TenantRecord] {
        var result: [TenantRecord] = []
        for try await row in rows {
            let (id, status, placement, server, database, role, version, epoch, lastError, created, updated) = try row.decode(
                (String, String, String, String?, String?, String?, Int?, Int64, String?, Date, Date).self)
            var record = TenantRecord(
                id: try TenantID(id), status: TenantRecord.Status(rawValue: status) ?? .failed,
                placement: TenantRecord.Placement(rawValue: placement) ?? .shared)
            record.serverName = server
            record.databaseName = database
            record.roleName = role
            record.schemaVersion = version
            record.epoch = epoch
            record.lastError = lastError
            record.createdAt = created
            record.updatedAt = updated
            result.append(record)
        }
        return result
    }
}

extension Catalog {
    /// Points `tenant` at `database` (schema version `schemaVersion`) if the catalog still names
    /// `expected` — only those columns, so nothing another command changed meanwhile is undone —
    /// and bumps its epoch (routers follow by NOTIFY). Returns whether it did.
    func replaceDatabase(_ tenant: TenantID, expected: String, with database: String, schemaVersion: Int) async throws -> Bool {
        let rows = try await client.query("""
            UPDATE tenantry.tenants SET database_name = \(database), schema_version = \(schemaVersion), epoch = epoch + 1,
                updated_at = now()
            WHERE id = \(tenant.rawValue) AND database_name = \(expected)
            RETURNING 1
            """, logger: logger)
        var count = 0
        for try await _ in rows { count += 1 }
        return count == 1
    }
}
