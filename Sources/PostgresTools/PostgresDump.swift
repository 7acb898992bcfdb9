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
    public static func custom(
        _ target: Target, to file: String, environment: [String: String],
        binaries: PostgresBinaries? = nil, runner: ProcessRunner = ProcessRunner()
    ) async throws -> ProcessRunner.Output {
        let binaries = try binaries ?? PostgresBinaries.locate()
        let output = try await runner.run(
            binaries.path(of: "pg_dump"),
            ["--format=custom", "--file=\(file)", "--host=\(target.host)", "--port=\(target.port)",
             "--username=\(target.user)", "--dbname=\(target.database)", "--no-password"],
            environment: environment)
        if !output.succeeded { try? FileManager.default.removeItem(atPath: file) }
        return output
    }
}
