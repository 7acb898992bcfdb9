import Logging
import PostgresNIO
import TenantryCore

/// A few long-lived connections to the catalog for its short, frequent lookups: the router's
/// route on a cache miss and the credential registry's credentials (``Catalog/lookup(_:)``).
///
/// Not a `PostgresClient`: PostgresNIO's pool schedules a keep-alive timer and an idle timer each
/// time a connection goes back to it, and the task of each timer stays allocated until the
/// timer's deadline (30 s, 60 s) even when the connection is leased again at once (a cancelled
/// `Task.sleep` keeps its sleep job until the deadline), about 1.4 KB per lease: resolving 10,000
/// tenants kept some 28 MB for a minute. A lookup here allocates nothing that outlives it.
///
/// Connections open on demand, up to `size`: a lookup takes an idle one, or opens another while
/// fewer than `size` are open, or else queues on the least busy one (PostgresNIO runs a
/// connection's queries one after another). They stay open until ``close()``; a connection the
/// server closed (a restart, `pg_terminate_backend`, `idle_session_timeout`) is dropped when next
/// picked, and a lookup that fails because its connection was lost runs once more on a new one. A
/// second loss in a row, or a failure to connect, is one clear ``TenantryError``. They show in
/// `pg_stat_activity` as `application_name` `tenantry-catalog-lookups`.
actor CatalogLookups {
    private struct Slot {
        let opening: Task<PostgresConnection, any Error>
        var connection: PostgresConnection?
        var inFlight = 0
    }

    /// The most connections open at once.
    static let defaultSize = 4

    nonisolated let url: PostgresURL
    nonisolated let logger: Logger
    let size: Int
    private var slots: [Int: Slot] = [:]
    private var nextSlot = 0
    private var closed = false
    /// Connections opened so far (for tests: a replaced connection counts again).
    private(set) var opened = 0

    init(url: PostgresURL, logger: Logger, size: Int = CatalogLookups.defaultSize) {
        self.url = url
        self.logger = logger
        self.size = max(1, size)
    }

    /// Runs `query` on one of the connections and returns its rows.
    nonisolated func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        var lost = false
        while true {
            // After a loss, on a new connection: the server may have closed the others too
            // (a restart, a sweep of pg_terminate_backend) without the client having seen it yet.
            let (slot, connection) = try await checkOut(fresh: lost)
            do {
                let rows = try await connection.queryIfOpen(query, logger: logger).collect()
                await checkIn(slot)
                return rows
            } catch where Database.isConnectionFailure(error) || connection.isClosed {
                await discard(slot)
                guard !lost else {
                    throw TenantryError(
                        code: .connectionFailed,
                        message: "catalog lookup failed: the catalog closed the connection twice in a row (\(Database.message(of: error)))",
                        underlying: error)
                }
                lost = true
            } catch {
                await checkIn(slot)
                throw error
            }
        }
    }

    /// Closes every connection; later lookups fail.
    func close() async {
        closed = true
        let open = slots.values.map(\.opening)
        slots.removeAll()
        for opening in open {
            if let connection = try? await opening.value { try? await connection.close() }
        }
    }

    /// An open connection (its slot's id), opening one if needed; `fresh`: a new one, in place of
    /// an idle one when `size` are open.
    private func checkOut(fresh: Bool) async throws -> (Int, PostgresConnection) {
        var attempts = 0
        while true {
            guard !closed else {
                throw TenantryError(code: .connectionFailed, message: "catalog lookup failed: the catalog's connections are closed")
            }
            for (id, slot) in slots where slot.connection?.isClosed == true { slots[id] = nil }
            let id: Int
            if fresh, slots.count >= size, let idle = slots.first(where: { $0.value.inFlight == 0 }) {
                await discard(idle.key)
            }
            if !fresh, let best = slots.min(by: { $0.value.inFlight < $1.value.inFlight }),
               best.value.inFlight == 0 || slots.count >= size {
                id = best.key
            } else {
                id = nextSlot
                nextSlot += 1
                opened += 1
                let (url, logger, number) = (url, logger, opened)
                slots[id] = Slot(opening: Task { try await Self.connect(url, number: number, logger: logger) })
            }
            guard let opening = slots[id]?.opening else { continue }
            slots[id]?.inFlight += 1
            let connection: PostgresConnection
            do {
                connection = try await opening.value
            } catch {
                if slots[id]?.opening == opening { slots[id] = nil }
                throw error
            }
            if !connection.isClosed, slots[id]?.opening == opening {
                slots[id]?.connection = connection
                return (id, connection)
            }
            // Closed by the server meanwhile (or by close()): drop it and pick again.
            if slots[id]?.opening == opening { slots[id] = nil }
            try? await connection.close()
            attempts += 1
            guard attempts < 3 else {
                throw TenantryError(code: .connectionFailed, message: "catalog lookup failed: the catalog keeps closing new connections")
            }
        }
    }

    /// `application_name` of the lookup connections (in `pg_stat_activity`).
    static let applicationName = "tenantry-catalog-lookups"

    private static func connect(_ url: PostgresURL, number: Int, logger: Logger) async throws -> PostgresConnection {
        do {
            var configuration = try url.connectionConfiguration()
            configuration.options.additionalStartupParameters = [("application_name", applicationName)]
            return try await PostgresConnection.connect(configuration: configuration, id: number, logger: logger)
        } catch {
            throw Database.describe(error, connectingTo: url)
        }
    }

    private func checkIn(_ id: Int) {
        slots[id]?.inFlight -= 1
    }

    /// Forgets a slot whose connection was lost, and closes it.
    private func discard(_ id: Int) async {
        guard let slot = slots.removeValue(forKey: id) else { return }
        try? await slot.connection?.close()
    }
}
