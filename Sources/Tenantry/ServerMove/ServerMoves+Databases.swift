import Foundation
import Logging
import PostgresNIO
import TenantryCore

/// The databases of a server move: the target made like a provisioned tenant database (from the
/// target server's template, the same role and password, marked), dropped again by cancel; the
/// source dropped by complete; sequences and id blocks carried across at a switch.
extension ServerMoves {
    /// Creates (or, on a re-run, finds) `tenant`'s role and database on `server` with the tenant's
    /// current password, the privileges of a provisioned database, and the fleet's schema version.
    /// Refuses when a database or role of that name is there without the tenant's mark.
    func provisionTarget(_ tenant: TenantID, record: TenantRecord, server: String, provisioner: TenantProvisioner) async throws {
        guard let database = record.databaseName, let role = record.roleName,
              let credential = try await catalog.credential(tenant) else {
            throw TenantryError(code: .conflict, message: "tenant \(tenant) has no database credentials to move", tenant: tenant.rawValue)
        }
        let password = try operations.configuration.requireKeyring().open(credential.passwordSealed, tenant: tenant.rawValue, field: "password")
        let admin = try servers.adminURL(server: server, database: "postgres")
        _ = try await provisioner.template.prepare(server: server)
        let logger = logger
        try await Database.withConnection(admin, logger: logger) { connection in
            let verifier = try SCRAMVerifier.make(password: password)
            let quotedRole = try SQLIdentifier.quoted(role)
            switch try await TenantMark.role(role, tenant: tenant, on: connection, logger: logger) {
            case .foreign(let comment):
                throw TenantryError(
                    code: .conflict,
                    message: "server \(server) already has a role \(role) that is not tenant \(tenant)'s (\(comment ?? "no mark")); nothing was changed",
                    tenant: tenant.rawValue)
            case .marked:
                try await RoleDDL.run(["ALTER ROLE \(quotedRole) PASSWORD \(SchemaDDL.literal(verifier))"], on: connection, logger: logger)
            case .absent:
                try await provisioner.createRole(role, verifier: verifier, tenant: tenant, on: connection)
            }
            switch try await TenantMark.database(database, tenant: tenant, on: connection, logger: logger) {
            case .foreign(let comment):
                throw TenantryError(
                    code: .conflict,
                    message: "server \(server) already has a database \(database) that is not tenant \(tenant)'s (\(comment ?? "no mark")); "
                        + "nothing was changed", tenant: tenant.rawValue)
            case .marked:
                break
            case .absent:
                // What a start killed before its rename left (the move's lock is held).
                try await provisioner.dropStagingLeftovers(of: database, on: connection)
                try await provisioner.createMarkedDatabase(
                    database, staging: TenantProvisioner.stagingName(database: database), tenant: tenant, on: connection)
            }
            try await Database.execute(
                script: try TenantProvisioner.databasePrivileges(database: database, role: role), on: connection, logger: logger)
        }
        try await Database.withConnection(admin.with(database: database), logger: logger) { connection in
            try await Database.execute(script: try TenantProvisioner.tablePrivileges(role: role), on: connection, logger: logger)
        }
        let version = try await provisioner.verifyLogin(
            url: admin.with(database: database).with(user: role, password: password), tenant: tenant)
        let expected = provisioner.migrations.last?.version ?? 0
        guard version == expected else {
            throw TenantryError(
                code: .conflict, message: "the new database of tenant \(tenant) on \(server) is at schema V\(version), expected V\(expected)",
                tenant: tenant.rawValue)
        }
    }

    /// Drops `tenant`'s database `database` and its role on `server` (each only when it carries the
    /// tenant's mark; a database already gone is fine), after `pg_dump`ing it into
    /// `archiveDirectory` when given. Returns the archive's path.
    func dropDatabase(
        _ tenant: TenantID, server: String, database: String, role: String?, archiveDirectory: String?
    ) async throws -> String? {
        let placed = try await catalog.requireTenant(tenant)
        guard (placed.serverName ?? ServerDirectory.defaultServerName) != server || placed.databaseName != database else {
            throw TenantryError(
                code: .conflict,
                message: "database \(database) on \(server) is where the catalog places tenant \(tenant): it is not dropped",
                tenant: tenant.rawValue)
        }
        let admin = try servers.adminURL(server: server, database: "postgres")
        let logger = logger
        var archive: String?
        let exists = try await Database.withConnection(admin, logger: logger) { connection in
            switch try await TenantMark.database(database, tenant: tenant, on: connection, logger: logger) {
            case .absent: return false
            case .marked: return true
            case .foreign(let comment):
                throw TenantryError(
                    code: .conflict,
                    message: "database \(database) on \(server) does not carry tenant \(tenant)'s mark (\(comment ?? "none")): it is not dropped",
                    tenant: tenant.rawValue)
            }
        }
        if exists, let archiveDirectory {
            archive = try await TenantProvisioner.archive(
                admin.with(database: database), into: archiveDirectory, name: "\(database)-\(server)", logger: logger)
        }
        try await Database.withConnection(admin, logger: logger) { connection in
            if exists {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(try SQLIdentifier.quoted(database)) WITH (FORCE)"), logger: logger)
            }
            if let role, try await TenantMark.role(role, tenant: tenant, on: connection, logger: logger) == .marked {
                try await connection.query(PostgresQuery(unsafeSQL: "DROP ROLE IF EXISTS \(try SQLIdentifier.quoted(role))"), logger: logger)
            }
        }
        return archive
    }

    /// Gives `target` the sequence positions (and limits) and the id blocks of `source`: a tenant
    /// database taking over the writes hands out exactly the ids the other would have.
    func mirrorSequences(from source: PostgresConnection, to target: PostgresConnection) async throws {
        var statements: [String] = []
        var sequences: [(name: String, maxValue: Int64)] = []
        let names = try await source.query("""
            SELECT format('%I.%I', schemaname, sequencename), max_value FROM pg_sequences WHERE schemaname = \(plan.schema) ORDER BY 1
            """, logger: logger)
        for try await (name, maxValue) in names.decode((String, Int64).self) { sequences.append((name, maxValue)) }
        if !sequences.isEmpty {
            // Each sequence's own row: after ALTER SEQUENCE … RESTART (an id block) it is not
            // "called" yet, and pg_sequences shows no last value for it.
            let union = sequences.enumerated()
                .map { index, sequence in "SELECT \(index) AS i, last_value, is_called FROM \(sequence.name)" }
                .joined(separator: " UNION ALL ")
            let states = try await source.query(PostgresQuery(unsafeSQL: union), logger: logger)
            for try await (index, value, called) in states.decode((Int, Int64, Bool).self) {
                let sequence = sequences[index]
                statements.append("ALTER SEQUENCE \(sequence.name) MAXVALUE \(sequence.maxValue);")
                statements.append("PERFORM pg_catalog.setval(\(CaptureSQL.literal(sequence.name)), \(value), \(called));")
            }
        }
        var blocks: [String] = []
        let blockRows = try await source.query(
            "SELECT sequence_name, block_start, block_end, block_size FROM tenantry.id_blocks", logger: logger)
        for try await (name, start, end, size) in blockRows.decode((String, Int64, Int64, Int64).self) {
            blocks.append("(\(CaptureSQL.literal(name)), \(start), \(end), \(size))")
        }
        statements.append("DELETE FROM tenantry.id_blocks;")
        if !blocks.isEmpty {
            statements.append(
                "INSERT INTO tenantry.id_blocks (sequence_name, block_start, block_end, block_size) VALUES \(blocks.joined(separator: ", "));")
        }
        let body = statements.joined(separator: "\n")
        let tag = CaptureSQL.dollarTag(notIn: body)
        try await target.query(PostgresQuery(unsafeSQL: "DO \(tag) BEGIN\n\(body)\nEND \(tag)"), logger: logger)
    }
}
