import Foundation
import TenantryCore

/// What one backup of one tenant database holds, written next to its dump as `<name>.json`
/// (``BackupStore``): a backup exists once its manifest does.
public struct BackupManifest: Sendable, Codable, Equatable {
    /// The manifest format (1).
    public var format: Int
    /// The tenant.
    public var tenant: TenantID
    /// The server the database was dumped from (`default` for the unified database's server).
    public var server: String
    /// The tenant database's name when it was dumped.
    public var database: String
    /// The fleet schema version recorded in the database (`tenantry_schema_migrations`).
    public var schemaVersion: Int
    /// The dump's size in bytes.
    public var bytes: Int64
    /// The dump's SHA-256, lowercase hex.
    public var sha256: String
    /// When the dump started (its snapshot was taken).
    public var startedAt: Date
    /// When the dump was complete.
    public var finishedAt: Date
    /// The server's `server_version`.
    public var postgresVersion: String
    /// Rows per table (`schema.table`), counted in the dump's own snapshot: a restore compares them.
    public var tables: [String: Int64]
    /// The dump's file name, in the manifest's directory.
    public var dumpFile: String
    /// For a backup recovered from the WAL archive: the time it was recovered to.
    public var recoveredTo: Date?

    /// The manifest file's path (set when read or written; not stored).
    public var path: String?

    enum CodingKeys: String, CodingKey {
        case format, tenant, server, database, schemaVersion = "schema_version", bytes, sha256, startedAt = "started_at"
        case finishedAt = "finished_at", postgresVersion = "postgres_version", tables, dumpFile = "dump_file"
        case recoveredTo = "recovered_to"
    }

    /// The dump's path (next to the manifest).
    public var dumpPath: String? {
        path.map { (($0 as NSString).deletingLastPathComponent as NSString).appendingPathComponent(dumpFile) }
    }

    /// Rows in all tables.
    public var rows: Int64 { tables.values.reduce(0, +) }
}
