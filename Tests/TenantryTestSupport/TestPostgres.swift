import EmbeddedPostgres
import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// One real PostgreSQL server per test process (EmbeddedPostgres in a temporary directory,
/// stopped and removed when the process exits), and a fresh database per test.
public enum TestPostgres {
    private static let box = ServerBox()

    /// The shared server, started on first use.
    public static func server() async throws -> EmbeddedPostgres {
        try await box.get()
    }

    /// The superuser URL of `database` on the shared server.
    public static func url(database: String = "postgres") async throws -> PostgresURL {
        try PostgresURL(try await server().url(database: database))
    }

    /// Creates an empty database with a unique name and returns its superuser URL.
    public static func makeDatabase(_ prefix: String = "t") async throws -> PostgresURL {
        let name = "\(prefix)_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        let admin = try await url()
        try await Database.withConnection(admin, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
        return admin.with(database: name)
    }

    /// A quiet logger for tests.
    public static var logger: Logger {
        var logger = Logger(label: "tenantry.test")
        logger.logLevel = .critical
        return logger
    }

    /// Runs one query on `url` and returns the first column of every row as text.
    public static func strings(_ url: PostgresURL, _ sql: String) async throws -> [String?] {
        try await Database.withConnection(url, logger: logger) { connection in
            var result: [String?] = []
            let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            for try await value in rows.decode(String?.self) { result.append(value) }
            return result
        }
    }
}

extension TestPostgres {
    /// Runs `sql` with `session_replication_role = replica`, which skips ordinary triggers: a row
    /// written behind Tenantry's back, as a dump's restore or a hand edit could leave it (the
    /// `capture_state` guard refuses such rows otherwise).
    public static func executeSkippingTriggers(_ url: PostgresURL, _ sql: String) async throws {
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query("SET session_replication_role = replica", logger: logger)
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
    }
}

private actor ServerBox {
    private var task: Task<EmbeddedPostgres, any Error>?

    func get() async throws -> EmbeddedPostgres {
        if let task { return try await task.value }
        let task = Task {
            let server = EmbeddedPostgres(configuration: .temporary(settings: ["log_statement": "all", "max_prepared_transactions": "10"]))
            try await server.start()
            return server
        }
        self.task = task
        return try await task.value
    }
}
