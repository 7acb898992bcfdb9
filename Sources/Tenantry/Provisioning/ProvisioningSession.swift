import Logging
import NIOConcurrencyHelpers
import PostgresNIO
import TenantryCore

/// What the provisions of one run share (see ``TenantProvisioner/withSession(_:)``): idle
/// connections kept per URL — the admin login to each server's `postgres` database, the catalog
/// connection that holds tenant locks — and the template databases already found current.
///
/// A connection goes back to the session only when the work on it succeeded (every lock it took
/// released); after a failure it is closed, which also releases whatever it held.
final class ProvisioningSession: Sendable {
    private struct State {
        var idle: [(url: PostgresURL, connection: PostgresConnection)] = []
        var checkedTemplates: Set<String> = []
        var closed = false
    }

    private let state = NIOLockedValueBox(State())
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Runs `body` on an idle connection to `url`, or a new one; keeps it for reuse afterwards
    /// unless `body` threw.
    func withConnection<Result: Sendable>(
        _ url: PostgresURL, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        let connection = try await checkOut(url)
        do {
            let result = try await body(connection)
            if !checkIn(connection, url: url) { try? await connection.close() }
            return result
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Whether the template named by `key` was already migrated or found current in this session.
    func isTemplateChecked(_ key: String) -> Bool {
        state.withLockedValue { $0.checkedTemplates.contains(key) }
    }

    /// Records that the template named by `key` is current (`true`) or must be checked again (`false`).
    func setTemplateChecked(_ key: String, _ checked: Bool) {
        state.withLockedValue {
            if checked { $0.checkedTemplates.insert(key) } else { $0.checkedTemplates.remove(key) }
        }
    }

    /// Closes every idle connection.
    func close() async {
        let idle = state.withLockedValue { state in
            defer { state.idle = []; state.closed = true }
            return state.idle.map(\.connection)
        }
        for connection in idle { try? await connection.close() }
    }

    private func checkOut(_ url: PostgresURL) async throws -> PostgresConnection {
        while let connection = takeIdle(url) {
            if !connection.isClosed { return connection }
        }
        return try await Database.connect(url, logger: logger)
    }

    private func takeIdle(_ url: PostgresURL) -> PostgresConnection? {
        state.withLockedValue { state in
            guard let index = state.idle.lastIndex(where: { $0.url == url }) else { return nil }
            return state.idle.remove(at: index).connection
        }
    }

    /// Keeps `connection` for reuse; `false` when it should be closed instead (the session is closed).
    private func checkIn(_ connection: PostgresConnection, url: PostgresURL) -> Bool {
        guard !connection.isClosed else { return true }
        return state.withLockedValue { state in
            guard !state.closed else { return false }
            state.idle.append((url, connection))
            return true
        }
    }
}
