import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// Applies versioned migration files to many databases: the template first, then every tenant
/// database in parallel (bounded). Each migration runs in its own transaction together with its
/// record in `tenantry_schema_migrations`, so a killed run leaves no half-applied migration and a
/// re-run resumes. A per-database advisory lock keeps two concurrent runs from colliding.
public struct FleetMigrator: Sendable {
    /// One database to migrate.
    public struct Target: Sendable, Equatable {
        /// The database name.
        public var database: String
        /// The tenant it belongs to (`nil` for the template).
        public var tenant: TenantID?
        /// The admin URL of the database.
        public var url: PostgresURL
        /// Creates a target.
        public init(database: String, tenant: TenantID?, url: PostgresURL) {
            self.database = database
            self.tenant = tenant
            self.url = url
        }
    }

    /// What happened to one database.
    public struct Outcome: Sendable, Codable, Equatable {
        /// The database.
        public var database: String
        /// Its tenant, if any.
        public var tenant: String?
        /// Versions applied by this run.
        public var applied: [Int]
        /// The highest applied version afterwards (0: none).
        public var version: Int
        /// Why it failed, if it did.
        public var error: String?
        /// How long it took.
        public var milliseconds: Int
        /// Creates an outcome.
        public init(database: String, tenant: String?, applied: [Int], version: Int, error: String?, milliseconds: Int) {
            self.database = database
            self.tenant = tenant
            self.applied = applied
            self.version = version
            self.error = error
            self.milliseconds = milliseconds
        }
    }

    /// The state of one database, for `schema status` and `schema plan`.
    public struct Status: Sendable, Codable, Equatable {
        /// The database.
        public var database: String
        /// Its tenant, if any.
        public var tenant: String?
        /// The highest applied version (0: none).
        public var version: Int
        /// Files not yet applied.
        public var pending: [String]
        /// Applied files whose checksum no longer matches.
        public var edited: [String]
        /// Applied versions that have no file any more.
        public var missingFiles: [Int]
        /// Set when the database could not be read.
        public var error: String?
        /// `current`, `pending`, `edited` or `unreachable`.
        public var state: String {
            if error != nil { return "unreachable" }
            if !edited.isEmpty { return "edited" }
            return pending.isEmpty ? "current" : "pending"
        }
    }

    /// The migration files, sorted by version.
    public var migrations: [MigrationFile]
    /// Logger.
    public var logger: Logger

    /// Creates a migrator over `migrations`.
    public init(migrations: [MigrationFile], logger: Logger) {
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.logger = logger
    }

    /// The latest version of the files (0 when there are none).
    public var latestVersion: Int { migrations.last?.version ?? 0 }

    static let historyTable = "tenantry_schema_migrations"

    /// Migrates one database; never throws (failures are in the outcome).
    public func migrate(_ target: Target) async -> Outcome {
        let clock = ContinuousClock.now
        var outcome = Outcome(database: target.database, tenant: target.tenant?.rawValue, applied: [], version: 0, error: nil, milliseconds: 0)
        do {
            try await Database.withConnection(target.url, logger: logger) { connection in
                try await connection.query(
                    "SELECT pg_advisory_lock(\(AdvisoryLock.namespace), \(AdvisoryLock.schemaMigration))", logger: logger)
                try await connection.query("""
                    CREATE TABLE IF NOT EXISTS tenantry_schema_migrations (
                        version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now(), duration_ms integer NOT NULL DEFAULT 0)
                    """, logger: logger)
                let applied = try await appliedChecksums(connection)
                if let edited = migrations.first(where: { file in applied[file.version].map { $0 != file.checksum } ?? false }) {
                    outcome.version = applied.keys.max() ?? 0
                    throw TenantryError(
                        code: .conflict,
                        message: "\(edited.fileName) was edited after it was applied (checksum differs); restore the file "
                            + "and put the change in a new migration")
                }
                outcome.version = applied.keys.max() ?? 0
                for migration in migrations where applied[migration.version] == nil {
                    let started = ContinuousClock.now
                    do {
                        let statements = try migration.statements()
                        try await Database.withTransaction(connection, logger: logger) { connection in
                            for statement in statements {
                                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                            }
                            let duration = Self.milliseconds(since: started)
                            try await connection.query("""
                                INSERT INTO tenantry_schema_migrations (version, name, checksum, duration_ms)
                                VALUES (\(migration.version), \(migration.name), \(migration.checksum), \(duration))
                                """, logger: logger)
                        }
                    } catch {
                        throw Database.wrap(error, "\(migration.fileName) failed")
                    }
                    outcome.applied.append(migration.version)
                    outcome.version = max(outcome.version, migration.version)
                }
                try await connection.query(
                    "SELECT pg_advisory_unlock(\(AdvisoryLock.namespace), \(AdvisoryLock.schemaMigration))", logger: logger)
            }
        } catch {
            outcome.error = Database.message(of: error)
        }
        outcome.milliseconds = Self.milliseconds(since: clock)
        return outcome
    }

    /// Migrates `template` first (when given; its failure stops the run), then `targets`, at most
    /// `concurrency` at a time. `progress` is called after each database with (outcome, done, total).
    public func migrateFleet(
        template: Target?, targets: [Target], concurrency: Int,
        progress: @escaping @Sendable (Outcome, Int, Int) -> Void = { _, _, _ in }
    ) async -> [Outcome] {
        var outcomes: [Outcome] = []
        let total = targets.count + (template == nil ? 0 : 1)
        if let template {
            let outcome = await migrate(template)
            outcomes.append(outcome)
            progress(outcome, 1, total)
            if outcome.error != nil { return outcomes }
        }
        // `migrate` never throws (a failure is an outcome), so neither does this.
        try? await forEachConcurrently(targets, concurrency: concurrency, migrate) { _, result, done in
            guard case .success(let outcome) = result else { return }
            outcomes.append(outcome)
            progress(outcome, outcomes.count, total)
        }
        return outcomes
    }

    /// The state of one database relative to the files; never throws.
    public func status(_ target: Target) async -> Status {
        var status = Status(database: target.database, tenant: target.tenant?.rawValue, version: 0, pending: [], edited: [], missingFiles: [])
        do {
            let applied = try await Database.withConnection(target.url, logger: logger) { connection in
                let exists = try await connection.query(
                    "SELECT to_regclass('tenantry_schema_migrations') IS NOT NULL", logger: logger)
                guard try await exists.decode(Bool.self).first(where: { _ in true }) == true else { return [Int: String]() }
                return try await appliedChecksums(connection)
            }
            status.version = applied.keys.max() ?? 0
            status.pending = migrations.filter { applied[$0.version] == nil }.map(\.fileName)
            status.edited = migrations.filter { file in applied[file.version].map { $0 != file.checksum } ?? false }.map(\.fileName)
            status.missingFiles = applied.keys.filter { version in !migrations.contains { $0.version == version } }.sorted()
        } catch {
            status.error = Database.message(of: error)
        }
        return status
    }

    private func appliedChecksums(_ connection: PostgresConnection) async throws -> [Int: String] {
        var applied: [Int: String] = [:]
        let rows = try await connection.query("SELECT version, checksum FROM tenantry_schema_migrations", logger: logger)
        for try await (version, checksum) in rows.decode((Int, String).self) { applied[version] = checksum }
        return applied
    }

    static func milliseconds(since start: ContinuousClock.Instant) -> Int {
        let elapsed = ContinuousClock.now - start
        return Int(elapsed.wholeMilliseconds)
    }
}
