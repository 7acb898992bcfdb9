import EmbeddedPostgres
import Foundation
import NIOConcurrencyHelpers
import Tenantry
import TenantryCore

/// A point-in-time recovery's scratch server for tests: EmbeddedPostgres adopting the extracted
/// base backup, in a new directory under `parent`, reached over its unix socket. Remembers the
/// directories it made, so a test can check they are gone.
public final class ScratchPostgres: Sendable {
    /// The directories of the scratch servers made so far.
    public var directories: [String] { made.withLockedValue { $0 } }
    private let made = NIOLockedValueBox<[String]>([])
    private let parent: String

    /// Scratch servers under `parent` (default: the temporary directory).
    public init(parent: String = FileManager.default.temporaryDirectory.path) {
        self.parent = parent
    }

    /// The factory to hand to ``PointInTimeRecovery`` / `Operations.restore(_:toTime:…)`.
    public var factory: PointInTimeScratchFactory {
        { [made, parent] request in
            let directory = "\(parent)/tenantry-pitr-\(UUID().uuidString.prefix(8).lowercased())"
            made.withLockedValue { $0.append(directory) }
            var configuration = EmbeddedPostgres.Configuration(directory: directory)
            configuration.superuser = request.superuser
            configuration.settings = request.settings
            configuration.adoptsDataDirectory = true
            configuration.stopWhenProcessExits = true
            configuration.removeDirectoryOnStop = true
            return Server(server: EmbeddedPostgres(configuration: configuration, logger: TestPostgres.logger))
        }
    }

    struct Server: PointInTimeScratchServer {
        let server: EmbeddedPostgres
        var dataDirectory: String { "\(server.configuration.directory)/data" }
        var logFile: String { server.logFilePath }

        func start() async throws -> PostgresURL {
            try await server.start()
            return PostgresURL(
                user: server.superuser, password: nil, host: try server.socketDirectory, port: try server.port,
                database: "postgres", tls: .disable)
        }

        func isRunning() async -> Bool { (try? await server.isRunning()) ?? false }

        func remove() async {
            try? await server.stop()
            try? FileManager.default.removeItem(atPath: server.configuration.directory)
        }
    }
}
