import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// `tenantry servers add|set|list|drain`.
struct ServersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "servers", abstract: "Register, budget, list and drain the PostgreSQL servers that host tenant databases.",
        subcommands: [Add.self, SetLimits.self, List.self, Drain.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a server by an admin URL; its password is sealed with TENANT_ENCRYPTION_KEY.",
            discussion: """
                The admin URL (postgres://postgres:secret@db2:5432/postgres) is read from TENANTRY_SERVER_URL, else \
                from standard input when it is not a terminal — never from the command line with a password, where \
                other users and the shell history would see it. A URL argument without a password is accepted.
                """)

        @Argument(help: "Server name (a-z, 0-9, _ and -).") var name: String
        @Argument(help: "Admin URL without a password (default: TENANTRY_SERVER_URL, else standard input).") var url: String?
        @Option(help: "The router's cap of open connections to this server.") var maxConnections = 50
        @Option(help: "The byte budget of its tenant databases together (e.g. 10GB, 500MB; default: none).") var maxBytes: String?

        func validate() throws {
            guard maxConnections > 0 else { throw ValidationError("--max-connections must be at least 1") }
        }

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let budget = try maxBytes.map { try ByteSize.parse($0, what: "--max-bytes") }
                let parsed = try Self.adminURL(argument: url, configured: context.configuration.serverURL)
                guard name.range(of: "^[a-z0-9][a-z0-9_-]{0,39}$", options: .regularExpression) != nil,
                      name != ServerDirectory.defaultServerName else {
                    throw TenantryError(
                        code: .invalidArgument, message: "server name must be 1-40 characters of a-z, 0-9, _ and - (and not 'default')")
                }
                let keyring = try context.configuration.requireKeyring()
                // Registered servers are reached with DATABASE_URL's sslmode (the catalog keeps no
                // mode per server): refuse a URL that asks for more than that would give.
                let unified = try await context.databaseURL()
                guard Self.strength(parsed.tls) <= Self.strength(unified.tls) else {
                    throw TenantryError(
                        code: .invalidArgument,
                        message: "the server URL asks for sslmode=\(parsed.tls.rawValue) but registered servers are reached with "
                            + "DATABASE_URL's sslmode=\(unified.tls.rawValue): set sslmode=\(parsed.tls.rawValue) in DATABASE_URL too")
                }
                // Check the login before storing it.
                try await Database.withConnection(parsed, logger: context.logger) { connection in
                    try await connection.query("SELECT 1", logger: context.logger)
                }
                let sealed = try parsed.password.map { try keyring.seal($0, tenant: "server:\(name)", field: "admin_password") }
                try await Services.with(context) { services in
                    try await services.catalog.upsertServer(ServerRecord(
                        name: name, host: parsed.host, port: parsed.port, adminUser: parsed.user,
                        adminPasswordSealed: sealed, maxConnections: maxConnections, maxBytes: budget))
                    try await services.catalog.audit(
                        actor: context.actor, action: "servers.add", outcome: .ok,
                        detail: ["server": name, "host": parsed.host, "port": "\(parsed.port)", "max_bytes": budget.map { "\($0)" } ?? "none"])
                }
                Output.line("registered server \(name) at \(parsed.host):\(parsed.port) (admin \(parsed.user))"
                    + (budget.map { ", budget \(ByteSize.format($0))" } ?? ""))
            }
        }

        /// How much an `sslmode` protects, for comparing two.
        static func strength(_ mode: PostgresURL.TLSMode) -> Int {
            switch mode {
            case .disable: 0
            case .prefer: 1
            case .require: 2
            case .verifyCA: 3
            case .verifyFull: 4
            }
        }

        /// The admin URL: the argument (refused when it holds a password), else
        /// `TENANTRY_SERVER_URL`, else the first line of standard input when it is not a terminal.
        static func adminURL(argument: String?, configured: PostgresURL?) throws -> PostgresURL {
            if let argument {
                let parsed = try PostgresURL(argument, variable: "the server URL")
                guard parsed.password == nil else {
                    throw TenantryError(
                        code: .invalidArgument,
                        message: "a password on the command line is visible to other users and in shell history: "
                            + "pass the URL in TENANTRY_SERVER_URL or on standard input instead")
                }
                return parsed
            }
            if let configured { return configured }  // TENANTRY_SERVER_URL, parsed by TenantryConfiguration
            guard isatty(STDIN_FILENO) == 0 else {
                throw TenantryError(
                    code: .invalidArgument,
                    message: "no server URL: set TENANTRY_SERVER_URL or pipe it on standard input (postgres://user:password@host:5432/postgres)")
            }
            let input = FileHandle.standardInput.readDataToEndOfFile().prefix(64 * 1024)
            let line = String(decoding: input, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw TenantryError(
                    code: .invalidArgument, message: "no server URL on standard input: set TENANTRY_SERVER_URL or pipe the URL in")
            }
            return try PostgresURL(line.trimmingCharacters(in: .whitespaces), variable: "the server URL on standard input")
        }
    }

    struct SetLimits: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Change a registered server's byte budget or connection cap.",
            discussion: """
                Placement and 'tenantry rebalance' keep every server within its budget; lowering a budget below what the \
                server holds moves nothing by itself: 'tenantry rebalance --plan' then shows the moves that fix it.
                """)

        @Argument(help: "Server name.") var name: String
        @Option(help: "The new byte budget (e.g. 10GB, 500MB).") var maxBytes: String?
        @Flag(help: "Remove the byte budget.") var noMaxBytes = false
        @Option(help: "The new cap of open connections.") var maxConnections: Int?

        func validate() throws {
            guard maxBytes != nil || noMaxBytes || maxConnections != nil else {
                throw ValidationError("give --max-bytes, --no-max-bytes or --max-connections")
            }
            guard maxBytes == nil || !noMaxBytes else { throw ValidationError("give --max-bytes or --no-max-bytes, not both") }
            if let maxConnections, maxConnections < 1 { throw ValidationError("--max-connections must be at least 1") }
        }

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let budget = try maxBytes.map { try ByteSize.parse($0, what: "--max-bytes") }
                let (name, noMaxBytes, maxConnections) = (name, noMaxBytes, maxConnections)
                let record = try await Services.with(context) { services in
                    guard var record = try await services.catalog.servers().first(where: { $0.name == name }) else {
                        throw TenantryError(
                            code: .invalidArgument,
                            message: name == ServerDirectory.defaultServerName
                                ? "the default server has no catalog entry: its cap is the pool's per-server cap and it has no byte budget"
                                : "server '\(name)' is not registered (tenantry servers list)")
                    }
                    if let budget { record.maxBytes = budget }
                    if noMaxBytes { record.maxBytes = nil }
                    if let maxConnections { record.maxConnections = maxConnections }
                    try await services.catalog.upsertServer(record)
                    try await services.catalog.audit(
                        actor: context.actor, action: "servers.set", outcome: .ok,
                        detail: ["server": name, "max_bytes": record.maxBytes.map { "\($0)" } ?? "none",
                                 "max_connections": "\(record.maxConnections)"])
                    return record
                }
                Output.line("server \(name): budget \(record.maxBytes.map(ByteSize.format) ?? "none"), cap \(record.maxConnections) connections")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List servers, their budgets and how many tenants each hosts.")
        @Flag(help: "Print one JSON object.") var json = false

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                struct Row: Encodable {
                    var name: String; var host: String; var port: Int; var adminUser: String; var maxConnections: Int
                    var maxBytes: Int64?; var tenants: Int
                }
                let rows = try await Services.with(context) { services in
                    let tenants = try await services.catalog.tenants().filter { $0.databaseName != nil }
                    var rows = [Row(
                        name: ServerDirectory.defaultServerName, host: services.databaseURL.host, port: services.databaseURL.port,
                        adminUser: context.configuration.superuser ?? services.databaseURL.user,
                        maxConnections: context.configuration.pool.maxPerServer, maxBytes: nil,
                        tenants: tenants.filter { $0.serverName == nil }.count)]
                    for server in services.servers.servers {
                        rows.append(Row(
                            name: server.name, host: server.host, port: server.port, adminUser: server.adminUser,
                            maxConnections: server.maxConnections, maxBytes: server.maxBytes,
                            tenants: tenants.filter { $0.serverName == server.name }.count))
                    }
                    return rows
                }
                if json { try Output.json(["servers": rows]); return }
                for row in rows {
                    Output.line("\(row.name): \(row.host):\(row.port) admin \(row.adminUser), \(row.tenants) tenant(s), "
                        + "cap \(row.maxConnections) connections, budget \(row.maxBytes.map(ByteSize.format) ?? "none")")
                }
            }
        }
    }
}

/// `tenantry tenants`.
struct TenantsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tenants", abstract: "List tenants with status, placement, server and database.")
    @Flag(help: "Print one JSON object.") var json = false

    func run() async throws {
        try await runCommand {
            let context = try CommandContext.load()
            let (listing, moves) = try await Services.with(context) { services in
                let listing = try await services.operations.tenantListing()
                // One query for every tenant's phase (the JSON has none), not one per tenant.
                let phases = json ? [:] : try await services.catalog.phases()
                return (listing, phases)
            }
            if json { try Output.json(["tenants": listing]); return }
            if listing.isEmpty { Output.line("no tenants"); return }
            for (tenant, serverMove) in listing.map({ ($0.record, $0.serverMove) }) {
                var where_ = tenant.databaseName.map { "\($0) on \(tenant.serverName ?? ServerDirectory.defaultServerName)" } ?? "no database"
                if let serverMove { where_ += " (moving \(serverMove.sourceServer) → \(serverMove.targetServer): \(serverMove.phase.rawValue))" }
                var line = "\(tenant.id): \(tenant.status.rawValue), placement \(tenant.placement.rawValue), phase \(moves[tenant.id]?.rawValue ?? "shared"), \(where_)"
                if let version = tenant.schemaVersion { line += ", schema V\(version)" }
                if let error = tenant.lastError { line += ", last error: \(error)" }
                Output.line(line)
            }
        }
    }
}

/// `tenantry credentials rotate`.
struct CredentialsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credentials", abstract: "Tenant role passwords.", subcommands: [Rotate.self])

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give tenant roles new passwords (ALTER ROLE with a SCRAM verifier); open sessions keep working.")
        @Argument(help: "Tenant ids.") var tenants: [String]

        func run() async throws {
            try await runCommand {
                let context = try CommandContext.load()
                let ids = try parseTenantIDs(tenants)
                let keyring = try context.configuration.requireKeyring()
                try await Services.with(context) { services in
                    let rotation = CredentialRotation(catalog: services.catalog, keyring: keyring, actor: context.actor, logger: context.logger)
                    for id in ids {
                        try await rotation.rotatePassword(of: id, servers: services.servers)
                        Output.line("rotated the password of tenant \(id)")
                    }
                }
            }
        }
    }
}
