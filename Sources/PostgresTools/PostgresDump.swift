import Foundation

/// `pg_dump` of one database, as the client programs of ``PostgresBinaries`` run it.
public enum PostgresDump {
    /// Where to connect: the password is not here, it goes through the environment (`PGPASSWORD`).
    public struct Target: Sendable {
        /// Host name or address.
        public var host: String
        /// TCP port.
        public var port: Int
        /// The login.
        public var user: String
        /// The database to dump.
        public var database: String

        /// A target.
        public init(host: String, port: Int, user: String, database: String) {
            self.host = host
            self.port = port
            self.user = user
            self.database = database
        }
    }

    /// `pg_dump --format=custom` of `target` into `file` (readable by `pg_restore`), with exactly
    /// `environment` (build it with ``ProcessRunner/minimalEnvironment(_:from:)``, adding
    /// `PGPASSWORD` and `PGSSLMODE`). Returns the program's output; on failure `file` is removed.
    /// With `snapshot` (from `pg_export_snapshot()` in a transaction that stays open meanwhile)
    /// the dump sees exactly that transaction's data.
    public static func custom(
        _ target: Target, to file: String, environment: [String: String], snapshot: String? = nil,
        binaries: PostgresBinaries? = nil, runner: ProcessRunner = ProcessRunner()
    ) async throws -> ProcessRunner.Output {
        let binaries = try binaries ?? PostgresBinaries.locate()
        let output = try await runner.run(
            binaries.path(of: "pg_dump"),
            ["--format=custom", "--file=\(file)", "--host=\(target.host)", "--port=\(target.port)",
             "--username=\(target.user)", "--dbname=\(target.database)", "--no-password"]
                + (snapshot.map { ["--snapshot=\($0)"] } ?? []),
            environment: environment)
        if !output.succeeded { try? FileManager.default.removeItem(atPath: file) }
        return output
    }

    /// `pg_restore` of `file` (a custom-format archive) into `target`'s (existing, empty) database:
    /// in one transaction, stopping at the first error, objects owned by the login that restores
    /// (`--no-owner`); without the archive's `GRANT`s unless `privileges` (then the roles they
    /// name must exist).
    public static func restore(
        _ file: String, into target: Target, environment: [String: String], privileges: Bool = false,
        binaries: PostgresBinaries? = nil, runner: ProcessRunner = ProcessRunner()
    ) async throws -> ProcessRunner.Output {
        let binaries = try binaries ?? PostgresBinaries.locate()
        return try await runner.run(
            binaries.path(of: "pg_restore"),
            ["--single-transaction", "--exit-on-error", "--no-owner", "--host=\(target.host)", "--port=\(target.port)",
             "--username=\(target.user)", "--dbname=\(target.database)", "--no-password"]
                + (privileges ? [] : ["--no-privileges"]) + [file],
            environment: environment)
    }

    /// `pg_restore --list` of `file`: succeeds when the archive is complete and readable.
    public static func list(
        _ file: String, environment: [String: String], binaries: PostgresBinaries? = nil, runner: ProcessRunner = ProcessRunner()
    ) async throws -> ProcessRunner.Output {
        let binaries = try binaries ?? PostgresBinaries.locate()
        return try await runner.run(binaries.path(of: "pg_restore"), ["--list", file], environment: environment)
    }
}
