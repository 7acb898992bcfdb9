import EmbeddedPostgres
import Foundation
import TenantryCore

/// A throwaway PostgreSQL that survives stop/start with its data and its port (for restart tests).
public struct RestartableServer: Sendable {
    /// The server.
    public let server: EmbeddedPostgres
    /// Its data directory.
    public let directory: String

    /// Creates and starts one on a free port between 20000 and 32000 (below the ephemeral range).
    public static func start() async throws -> RestartableServer {
        var lastError: (any Error)?
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tenantry-pg-\(UUID().uuidString.prefix(8).lowercased())").path
        for _ in 0..<5 {
            var configuration = EmbeddedPostgres.Configuration.temporary()
            configuration.directory = directory
            configuration.removeDirectoryOnStop = false
            configuration.port = Int.random(in: 20000..<32000)
            let server = EmbeddedPostgres(configuration: configuration, logger: TestPostgres.logger)
            do {
                try await server.start()
                return RestartableServer(server: server, directory: directory)
            } catch {
                lastError = error  // the port was taken: try another
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw lastError ?? CancellationError()
    }

    /// Its superuser URL (database `postgres`).
    public func url() throws -> PostgresURL { try PostgresURL(server.url()) }
    /// Stops it (data and port kept).
    public func stop() async throws { try await server.stop() }
    /// Starts it again.
    public func start() async throws { try await server.start() }

    /// Stops it and deletes its directory.
    public func remove() async throws {
        try await server.stop()
        try FileManager.default.removeItem(atPath: directory)
    }
}

