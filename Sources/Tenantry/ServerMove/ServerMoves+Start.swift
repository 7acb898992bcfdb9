import Foundation
import Logging
import PostgresNIO
import TenantryCore
import Tracing

extension ServerMoves {
    /// Starts moving `tenant`'s database to `server`: checks everything first (the tenant is served
    /// from its own database, the target is registered, reachable and has room under its byte
    /// budget, both schemas are at the fleet's version, no dead letters), then provisions the target
    /// (same role and password), copies one snapshot of the source into it, and hands the source's
    /// stream to the target (the relay keeps it current from then on). Phase `moving`.
    ///
    /// A start that was interrupted (phase `starting`) is finished by running it again; one past
    /// its copy returns at once (``StartReport/alreadyStarted``).
    public func start(
        _ tenant: TenantID, to server: String, reason: String? = nil, progress: @Sendable (Copier.Progress) -> Void = { _ in }
    ) async throws -> StartReport {
        try await TenantryTracing.phase("server-move.start", tenant: tenant) { span in
            span?.attributes[TenantryTracing.Key.server] = server
            return try await exclusively(tenant, "move start") { try await startLocked(tenant, to: server, reason: reason, progress: progress) }
        }
    }

    private func startLocked(
        _ tenant: TenantID, to server: String, reason: String?, progress: @Sendable (Copier.Progress) -> Void
    ) async throws -> StartReport {
        let record = try await catalog.requireTenant(tenant)
        let source = record.serverName ?? ServerDirectory.defaultServerName
        if let active = try await catalog.activeServerMove(tenant) {
            guard active.targetServer == server else {
                throw TenantryError(
                    code: .conflict,
                    message: "tenant \(tenant) is already moving from \(active.sourceServer) to \(active.targetServer) "
                        + "(phase \(active.phase.rawValue)): complete or cancel that move first", tenant: tenant.rawValue)
            }
            if active.phase != .starting {
                return StartReport(
                    tenant: tenant, sourceServer: active.sourceServer, targetServer: active.targetServer,
                    targetDatabase: active.targetDatabase, rowsCopied: Int(active.rowsCopied), copySeconds: active.copySeconds ?? 0,
                    alreadyStarted: true)
            }
            return try await runStart(active, record: record, progress: progress)
        }
        let phase = try await catalog.move(tenant)?.phase ?? .shared
        guard record.status == .active, record.placement == .dedicated, record.databaseName != nil,
              phase == .dedicated || phase == .retired else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) is in phase \(phase.rawValue) (placement \(record.placement.rawValue)): a server move needs a tenant "
                    + "served from its own database (phase dedicated or retired); finish or roll back its move out of the shared "
                    + "database first; nothing was changed", tenant: tenant.rawValue)
        }
        guard server != source else {
            throw TenantryError(
                code: .invalidArgument, message: "tenant \(tenant) is already on server \(server); nothing to move", tenant: tenant.rawValue)
        }
        try await checkTarget(tenant, record: record, server: server)
        let move = try await catalog.beginServerMove(
            tenant, sourceServer: source, sourceDatabase: record.databaseName ?? "", targetServer: server,
            targetDatabase: record.databaseName ?? "", reason: reason)
        try? await catalog.audit(
            actor: operations.actor, action: "move-start", tenant: tenant, outcome: .ok,
            detail: ["from": source, "to": server, "reason": reason ?? "operator"])
        return try await runStart(move, record: record, progress: progress)
    }

    /// The refusals that come before anything changes: the target server is known, reachable and has
    /// room; the source's schema is the fleet's; its stream is healthy.
    private func checkTarget(_ tenant: TenantID, record: TenantRecord, server: String) async throws {
        let admin = try servers.adminURL(server: server, database: "postgres")
        do {
            try await Database.withConnection(admin, logger: logger) { connection in
                try await connection.query("SELECT 1", logger: logger)
            }
        } catch {
            throw TenantryError(
                code: .connectionFailed,
                message: "server \(server) cannot be reached (\(Database.message(of: error))); nothing was changed", tenant: tenant.rawValue)
        }
        let sourceURL = try servers.adminURL(of: record)
        // One cluster registered under two names would have the move copy a database onto itself.
        var identifiers: [String] = []
        for url in [admin, sourceURL] {
            identifiers.append(try await Database.withConnection(url, logger: logger) { connection in
                try await connection.query("SELECT system_identifier::text FROM pg_control_system()", logger: logger)
                    .decode(String.self).first(where: { _ in true }) ?? ""
            })
        }
        guard identifiers[0] != identifiers[1] else {
            throw TenantryError(
                code: .invalidArgument,
                message: "server \(server) is the same PostgreSQL cluster as tenant \(tenant)'s server (one system identifier): "
                    + "nothing to move; nothing was changed", tenant: tenant.rawValue)
        }
        let expected = try operations.provisioner().migrations.last?.version ?? 0
        let version = try await TenantProvisioner.schemaVersion(sourceURL, logger: logger)
        guard version == expected else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant)'s database is at schema V\(version) and the fleet's migrations at V\(expected): run "
                    + "'tenantry migrate' first, so that both servers hold the same schema; nothing was changed", tenant: tenant.rawValue)
        }
        if let budget = servers.servers.first(where: { $0.name == server })?.maxBytes {
            let database = record.databaseName ?? ""
            let size = try await FleetMeasure.sample(
                server: record.serverName ?? ServerDirectory.defaultServerName, databases: [database], directory: servers, logger: logger
            )[database]?.bytes ?? 0
            let onTarget = try await catalog.tenants()
                .filter { Operations.hasDatabase($0) && ($0.serverName ?? ServerDirectory.defaultServerName) == server }
                .compactMap(\.databaseName)
            let used = try await FleetMeasure.sample(server: server, databases: onTarget, directory: servers, logger: logger)
                .values.reduce(0) { $0 + $1.bytes }
            guard used + size <= budget else {
                throw TenantryError(
                    code: .conflict,
                    message: "server \(server) is full: its tenant databases take \(ByteSize.format(used)) of its \(ByteSize.format(budget)) budget "
                        + "and tenant \(tenant) needs \(ByteSize.format(size)); nothing was changed", tenant: tenant.rawValue)
            }
        }
        let state = try await LinkState.read(sourceURL, tenant: tenant, logger: logger)
        guard let state, state.capturing else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant)'s database does not capture its changes: run 'tenantry capture install' first; nothing was changed",
                tenant: tenant.rawValue)
        }
        guard state.deadLetters == 0, state.pauseKind != PauseKind.deadLetter.rawValue,
              state.pauseKind != PauseKind.reverseDeadLetter.rawValue else {
            throw TenantryError(
                code: .conflict,
                message: "tenant \(tenant) has dead letters in its stream to unified (tenantry dlq list): replay or resolve them "
                    + "before moving it; nothing was changed", tenant: tenant.rawValue)
        }
    }

    /// Provision, copy, hand over: idempotent from any point of an interrupted start.
    private func runStart(
        _ move: ServerMoveRecord, record: TenantRecord, progress: @Sendable (Copier.Progress) -> Void
    ) async throws -> StartReport {
        let tenant = move.tenant
        let sourceURL = try servers.adminURL(server: move.sourceServer, database: move.sourceDatabase)
        let targetURL = try servers.adminURL(server: move.targetServer, database: move.targetDatabase)
        let targetName = ServerMoveRecord.streamName(server: move.targetServer, database: move.targetDatabase)
        let started = ContinuousClock.now
        var streamStopped = false
        do {
            // An earlier attempt may have stopped the source's stream already: then a failure from
            // here on leaves the move to finish or cancel, never to end by itself.
            let forwardTo = try await LinkState.read(sourceURL, tenant: tenant, logger: logger)?.forwardTo
            streamStopped = forwardTo != nil
            if forwardTo == targetName {
                // The hand-over committed before an interruption: only the phase is left.
                try await catalog.setServerMovePhase(move.id, from: .starting, to: .moving)
                try await relay.refresh()
                return StartReport(
                    tenant: tenant, sourceServer: move.sourceServer, targetServer: move.targetServer, targetDatabase: move.targetDatabase,
                    rowsCopied: Int(move.rowsCopied), copySeconds: move.copySeconds ?? 0, alreadyStarted: false)
            }
            let provisioner = try operations.provisioner()
            try await provisionTarget(tenant, record: record, server: move.targetServer, provisioner: provisioner)
            try await Database.withConnection(targetURL, logger: logger) { connection in
                try await Cutover.installReverseCapture(tenant, plan: plan, on: connection, logger: logger)
            }
            // The source takes writes: its functions are refreshed without locking its tables.
            try await Database.withConnection(sourceURL, logger: logger) { connection in
                try await Cutover.refreshCaptureFunctions(tenant, plan: plan, on: connection, logger: logger)
            }
            // The source's stream stops (no consumer) before the copy's snapshot: every change from
            // here on stays in its queue for the target (applied, or forwarded when the copy has it).
            try await LinkState.update(sourceURL, tenant: tenant, logger: logger) { connection in
                try await connection.query("""
                    UPDATE tenantry.capture_state SET forward_to = 'starting', updated_at = now() WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
            }
            streamStopped = true
            try await faults.afterStreamStopped?()
            let copier = Copier(
                catalog: catalog, servers: servers, unifiedURL: unifiedURL, plan: plan,
                capture: Capture(unifiedURL: unifiedURL, discriminator: plan.discriminator, logger: logger),
                actor: operations.actor, logger: logger)
            let route = MoveRoute(tenant: tenant, source: .dedicated(sourceURL), target: .dedicated(targetURL))
            let (snapshot, counts) = try await copier.copyRows(route, consistentSource: true, progress: progress)
            let rows = counts.values.reduce(0, +)
            let seconds = (ContinuousClock.now - started).totalSeconds
            // The target: capture on (it records what the relay applies, for unified), writes of the
            // application refused (moved) until a switch, the source's pause (retirement) carried over.
            let sourceState = try await LinkState.read(sourceURL, tenant: tenant, logger: logger)
            try await Database.withConnection(sourceURL, logger: logger) { source in
                try await Database.withConnection(targetURL, logger: logger) { target in
                    try await mirrorSequences(from: source, to: target)
                    try await target.query("""
                        UPDATE tenantry.capture_state SET capturing = true, moved = true, forward_to = NULL,
                            snapshot = pg_current_snapshot(), capture_enabled_at = clock_timestamp(),
                            sync_paused = \(sourceState?.paused ?? false), paused_reason = \(sourceState?.pausedReason),
                            pause_kind = \(sourceState?.pauseKind), updated_at = now()
                        WHERE tenant_id = \(tenant.rawValue)
                        """, logger: logger)
                }
            }
            try await LinkState.update(sourceURL, tenant: tenant, logger: logger) { connection in
                try await connection.query("""
                    UPDATE tenantry.capture_state SET forward_to = \(targetName), snapshot = \(snapshot)::pg_snapshot,
                        sync_paused = false, paused_reason = NULL, pause_kind = NULL, updated_at = now()
                    WHERE tenant_id = \(tenant.rawValue)
                    """, logger: logger)
            }
            try await catalog.setServerMovePhase(move.id, from: .starting, to: .moving, rowsCopied: Int64(rows), copySeconds: seconds)
            try await relay.refresh()
            try? await catalog.audit(
                actor: operations.actor, action: "move-copy", tenant: tenant, outcome: .ok,
                detail: ["to": move.targetServer, "rows": "\(rows)", "seconds": String(format: "%.2f", seconds)])
            return StartReport(
                tenant: tenant, sourceServer: move.sourceServer, targetServer: move.targetServer, targetDatabase: move.targetDatabase,
                rowsCopied: rows, copySeconds: seconds, alreadyStarted: false)
        } catch {
            let message = Database.message(of: error)
            try? await catalog.noteServerMoveError(move.id, message)
            if !streamStopped, move.phase == .starting {
                // Nothing had changed for the tenant: the move ends here (what it made on the target goes).
                _ = try? await dropDatabase(
                    tenant, server: move.targetServer, database: move.targetDatabase, role: record.roleName, archiveDirectory: nil)
                try? await catalog.setServerMovePhase(move.id, from: .starting, to: .cancelled, lastError: message)
                try? await catalog.audit(
                    actor: operations.actor, action: "move-start", tenant: tenant, outcome: .failed, detail: ["error": message])
                throw TenantryError(
                    code: (error as? TenantryError)?.code ?? .database,
                    message: "moving tenant \(tenant) to \(move.targetServer) failed before anything changed: \(message)",
                    tenant: tenant.rawValue, underlying: error)
            }
            try? await catalog.audit(
                actor: operations.actor, action: "move-start", tenant: tenant, outcome: .failed, detail: ["error": message])
            throw TenantryError(
                code: (error as? TenantryError)?.code ?? .database,
                message: "starting the move of tenant \(tenant) to \(move.targetServer) failed: \(message) "
                    + "(writes go on in its database on \(move.sourceServer); run 'tenantry move start' again to resume, "
                    + "or 'tenantry move cancel' to undo)", tenant: tenant.rawValue, underlying: error)
        }
    }
}
