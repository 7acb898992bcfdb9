import Foundation

extension EmbeddedPostgres {
    /// How to create and run an embedded server.
    public struct Configuration: Sendable {
        /// The directory that holds everything of this server: `data/` (PGDATA), `server.log`,
        /// `server.json` (port and superuser password, mode 0600) and the unix socket.
        public var directory: String
        /// The superuser's name. Default `postgres`.
        public var superuser: String = "postgres"
        /// The superuser's password; generated (CSPRNG, 32 hex characters) when `nil` and the
        /// server is new. An existing server keeps the password it was created with.
        public var password: String?
        /// The TCP port on 127.0.0.1; a free one is chosen when `nil`.
        public var port: Int?
        /// Server settings written to `tenantry.conf` on every start (e.g. `max_connections`).
        public var settings: [String: String] = ["max_connections": "200"]
        /// Where `initdb` and `pg_ctl` are; located with ``PostgresBinaries/locate(environment:)``
        /// when `nil`.
        public var binaries: PostgresBinaries?
        /// The OS user the server runs as when this process is root (PostgreSQL refuses to run as
        /// root). Default `postgres`.
        public var osUserWhenRoot: String = "postgres"
        /// How long to wait for the server to accept connections.
        public var startTimeout: Duration = .seconds(60)
        /// Stop the server (and delete `directory` when `removeDirectoryOnStop`) as soon as this
        /// process exits, even when it is killed: a small watchdog process does it. For tests.
        public var stopWhenProcessExits: Bool = false
        /// Delete `directory` after ``EmbeddedPostgres/stop()``. For throwaway servers.
        public var removeDirectoryOnStop: Bool = false
        /// Start on a data directory that was not made by this server (one restored from a base
        /// backup, with its own `postgresql.conf` including `tenantry.conf`): when `data/` exists but
        /// `server.json` does not, the directory is taken over (owned by the server's OS user, 0700)
        /// and reached as ``superuser`` with ``password`` (empty: none, e.g. trust on the socket).
        /// Off by default: a missing `server.json` is then an error.
        public var adoptsDataDirectory: Bool = false

        /// A server under `directory` with default settings.
        public init(directory: String) {
            self.directory = directory
        }

        /// A throwaway server in a new temporary directory, tuned for tests (fsync off, more
        /// connections), removed when stopped or when this process exits.
        public static func temporary(settings: [String: String] = [:]) -> Configuration {
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("tenantry-pg-\(UUID().uuidString.prefix(8).lowercased())").path
            var configuration = Configuration(directory: directory)
            configuration.settings = [
                "max_connections": "300",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "shared_buffers": "128MB",
            ].merging(settings) { $1 }
            configuration.stopWhenProcessExits = true
            configuration.removeDirectoryOnStop = true
            return configuration
        }
    }

    /// What is remembered about a server between runs, in `server.json`.
    struct State: Codable, Sendable {
        var superuser: String
        var password: String
        var port: Int
        var socketDirectory: String
    }
}
