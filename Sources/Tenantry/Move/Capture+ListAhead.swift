import Logging
import PostgresNIO
import TenantryCore

extension Capture {
    /// Lists `tenants` in every tenant table's capture triggers in one re-listing (each table's
    /// triggers re-created once for all of them), so that turning capture on for each of them
    /// afterwards (``enable(_:)``) finds it listed and changes no trigger. The list only grows:
    /// every tenant it names now stays named.
    ///
    /// Until a listed tenant's capture is on, its writes run the capture function, which finds no
    /// capture state and returns (the harmless superset the list's invariant allows). Returns the
    /// tables changed.
    @discardableResult
    public func list(_ tenants: [TenantID]) async throws -> [String] {
        guard !tenants.isEmpty else { return [] }
        return try await Database.withConnection(unifiedURL, logger: logger) { connection in
            try await withListLock(connection) {
                let listed = try await Self.installedTriggers(on: connection, schema: schema, logger: logger)
                let everywhere = Self.listedEverywhere(listed)
                let state = try await Self.stateTenants(on: connection, logger: logger)
                return try await relist(state + everywhere + tenants.map(\.rawValue), growOnly: true, installed: listed, on: connection)
            }
        }
    }

    /// The tenants every capture trigger of every table lists (none when a table fires for every
    /// row or still has an older install's trigger: such a table lists nobody by name).
    static func listedEverywhere(_ installed: [String: InstalledTriggers]) -> [String] {
        var common: Set<String>?
        for triggers in installed.values {
            guard !triggers.legacy else { return [] }
            for listed in triggers.events.values {
                guard let ids = listed else { return [] }
                common = common.map { $0.intersection(ids) } ?? Set(ids)
            }
        }
        return Array(common ?? [])
    }

    /// Lists the tenants of a batch of copies ahead of them, `window` at a time (``list(_:)``):
    /// a batch of N tenants re-creates each table's triggers about N ÷ `window` times instead of
    /// N times. `migrate-data` prepares each tenant just before copying it.
    public func listAhead(_ tenants: [TenantID], window: Int = 64) -> ListAhead {
        ListAhead(capture: self, order: tenants, window: window)
    }

    /// Lists a batch's tenants in the capture triggers a window ahead of their copies; see
    /// ``Capture/listAhead(_:window:)``.
    public actor ListAhead {
        private let capture: Capture
        private let order: [TenantID]
        private let window: Int
        private var listed: Set<TenantID> = []
        private var pending: [TenantID: Task<Void, any Error>] = [:]

        init(capture: Capture, order: [TenantID], window: Int) {
            self.capture = capture
            self.order = order
            self.window = max(1, window)
        }

        /// Returns once `tenant` is listed: at once when an earlier window listed it, otherwise
        /// after listing it with the next `window` tenants of the batch not listed yet. A failed
        /// listing is thrown to every tenant waiting for it and tried again by the next call.
        public func prepare(_ tenant: TenantID) async throws {
            if listed.contains(tenant) { return }
            if let task = pending[tenant] {
                try await task.value
                return
            }
            let start = order.firstIndex(of: tenant) ?? order.endIndex
            var batch = [tenant]
            for id in order[start...] where batch.count < window && id != tenant && !listed.contains(id) && pending[id] == nil {
                batch.append(id)
            }
            let capture = self.capture
            let task = Task { _ = try await capture.list(batch) }
            for id in batch { pending[id] = task }
            let result = await task.result
            for id in batch { pending[id] = nil }
            if case .success = result { listed.formUnion(batch) }
            try result.get()
        }
    }
}
