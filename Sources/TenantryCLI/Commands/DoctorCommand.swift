import ArgumentParser
import EmbeddedPostgres
import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// `tenantry doctor`: the seed's setup checks (environment, application database, tenant
/// databases, tenant configuration, data routing), each passed or failed with its reason.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the setup: environment, unified database and catalog, tenant databases, credentials, routing.",
        discussion: """
            Every check prints PASS or FAIL with its reason; the exit status is non-zero when any check fails. \
            Tenant databases are reached with each tenant's own login (decrypted with TENANT_ENCRYPTION_KEY), \
            and a query is routed for each tenant checked, as the application would. Every tenant role is checked \
            for databases other than its own that it can connect to: the unified database, postgres, template1, the \
            template or another tenant's is a failure ('tenantry guard install' closes them); any other database of \
            the server is reported as a note.
            """)

    @Option(help: "Check at most this many tenants' databases and routes (0: all).") var sample = 20
    @Flag(help: "Print one JSON object.") var json = false

    struct Check: Codable, Sendable {
        var group: String
        var name: String
        var passed: Bool
        var detail: String
    }

    struct Report: Codable {
        var passed: Int
        var failed: Int
        var checks: [Check]
    }

    func validate() throws {
        guard sample >= 0 else { throw ValidationError("--sample must be 0 or more") }
    }

    func run() async throws {
        try await runCommand {
            var checks: [Check] = []
            func add(_ group: String, _ name: String, _ passed: Bool, _ detail: String) {
                checks.append(Check(group: group, name: name, passed: passed, detail: detail))
                if !json { Output.line("\(passed ? "PASS" : "FAIL")  \(group): \(name)\(detail.isEmpty ? "" : " — \(detail)")") }
            }
            await runChecks(add)
            let failed = checks.filter { !$0.passed }.count
            if json {
                try Output.json(Report(passed: checks.count - failed, failed: failed, checks: checks))
            } else {
                Output.line("\(checks.count - failed)/\(checks.count) checks passed")
            }
            if failed > 0 { throw ExitCode.failure }
        }
    }

    private func runChecks(_ add: (String, String, Bool, String) -> Void) async {
        // Environment.
        let context: CommandContext
        do {
            context = try CommandContext.load()
            add("environment", "configuration", true, "every TENANTRY_/TENANT_/ENABLE_ variable parses")
        } catch {
            add("environment", "configuration", false, userMessage(for: error))
            return
        }
        let configuration = context.configuration
        add("environment", "DATABASE_URL", true,
            configuration.databaseURL == nil ? "not set: the embedded PostgreSQL under .tenantry/ is used" : "set")
        add("environment", "TENANT_ENCRYPTION_KEY", configuration.keyring != nil,
            configuration.keyring == nil ? "not set: provisioning and tenant logins need it ('tenantry keys generate')" : "set (key not shown)")
        if configuration.databaseURL == nil {
            do {
                add("environment", "PostgreSQL programs", true, "initdb and pg_ctl in \(try PostgresBinaries.locate().directory)")
            } catch {
                add("environment", "PostgreSQL programs", false, userMessage(for: error))
            }
        }

        // Application (unified) database and catalog.
        let unifiedURL: PostgresURL
        do {
            unifiedURL = try await context.databaseURL()
            let version = try await Database.withConnection(unifiedURL, logger: context.logger) { connection in
                try await connection.query("SHOW server_version_num", logger: context.logger)
                    .decode(String.self).first(where: { _ in true }) ?? "0"
            }
            let major = (Int(version) ?? 0) / 10_000
            add("application database", "connection", true, "\(unifiedURL.host):\(unifiedURL.port)/\(unifiedURL.database)")
            add("application database", "server version", major >= 13, "PostgreSQL \(major)\(major >= 13 ? "" : ": 13 or newer needed")")
        } catch {
            add("application database", "connection", false, userMessage(for: error))
            return
        }
        do {
            let checks = try await Services.with(context) { services in
                var checks = [Check(group: "application database", name: "catalog", passed: true, detail: "schema tenantry, current version")]
                let move = try await services.move()
                let installed = try await move.capture().isInstalled()
                checks.append(Check(
                    group: "application database", name: "capture", passed: true,
                    detail: installed ? "installed on \(move.plan.tables.count) tenant tables"
                        : "not installed (needed only to move tenants: 'tenantry capture install')"))
                return checks + (try await tenantChecks(services))
            }
            for check in checks { add(check.group, check.name, check.passed, check.detail) }
        } catch {
            add("application database", "catalog", false, userMessage(for: error))
        }
    }

    private func tenantChecks(_ services: Services) async throws -> [Check] {
        var checks: [Check] = []
        func add(_ group: String, _ name: String, _ passed: Bool, _ detail: String) {
            checks.append(Check(group: group, name: name, passed: passed, detail: detail))
        }
        let context = services.context
        let tenants = try await services.catalog.tenants()
        let provisioned = tenants.filter { $0.status == .active && $0.databaseName != nil }
        add("tenant configuration", "tenants", true,
            "\(tenants.count) registered, \(provisioned.count) with a database, \(tenants.filter { $0.placement == .dedicated }.count) dedicated")
        let broken = tenants.filter { $0.placement == .dedicated && $0.databaseName == nil }
        add("tenant configuration", "placements", broken.isEmpty,
            broken.isEmpty ? "every dedicated tenant has a database" : "dedicated without a database: \(broken.map(\.id.rawValue).prefix(10))")
        guard !provisioned.isEmpty else { return checks }
        // Isolation: a tenant role must reach its own database only (docs/security.md).
        do {
            let reach = try await ConnectLockdown(
                catalog: services.catalog, servers: services.servers, unifiedDatabase: services.databaseURL.database,
                appRoles: [], logger: context.logger).reach()
            // The databases Tenantry answers for; any other of the server is the operator's.
            let ours = Set(["postgres", "template1", services.databaseURL.database, context.configuration.naming.templateDatabase]
                + [services.catalog.url?.database].compactMap { $0 } + tenants.compactMap(\.databaseName))
            func describe(_ reach: [ConnectLockdown.Reach], _ keep: (String) -> Bool) -> [String] {
                reach.compactMap { entry in
                    let databases = entry.databases.filter(keep)
                    return databases.isEmpty ? nil : "\(entry.role) to \(databases.prefix(5).joined(separator: ", "))"
                        + (databases.count > 5 ? " and \(databases.count - 5) more" : "")
                }
            }
            let leaks = describe(reach) { ours.contains($0) }
            add("tenant databases", "isolation", leaks.isEmpty, leaks.isEmpty
                ? "no tenant role can connect to the unified database, postgres, template1, the template or another tenant's database"
                : "\(leaks.count) tenant role(s) can connect to databases not their own: " + leaks.prefix(3).joined(separator: "; ")
                    + " (run 'tenantry guard install'; docs/security.md)")
            let others = describe(reach) { !ours.contains($0) }
            if !others.isEmpty {
                // Not Tenantry's databases: reported, not failed (REVOKE CONNECT … FROM PUBLIC closes them).
                add("tenant databases", "other databases", true,
                    "note: tenant roles can also connect to other databases of the server, open to PUBLIC: "
                        + others.prefix(2).joined(separator: "; ") + " (REVOKE CONNECT ON DATABASE … FROM PUBLIC to close them)")
            }
        } catch {
            add("tenant databases", "isolation", false, userMessage(for: error))
        }
        guard let keyring = context.configuration.keyring else {
            add("tenant configuration", "credentials", false, "TENANT_ENCRYPTION_KEY is not set: tenant logins cannot be opened")
            return checks
        }
        let checked = sample == 0 ? provisioned : Array(provisioned.prefix(sample))
        let registry = CredentialRegistry(catalog: services.catalog, keyring: keyring)
        var credentialFailures: [String] = []
        var connectFailures: [String] = []
        for record in checked {
            do {
                let credentials = try await registry.credentials(for: record.id)
                let url = try services.servers.adminURL(of: record).with(user: credentials.username, password: credentials.password)
                do {
                    try await Database.withConnection(url, logger: context.logger) { connection in
                        try await connection.query("SELECT 1", logger: context.logger)
                    }
                } catch {
                    connectFailures.append("\(record.id): \(userMessage(for: error))")
                }
            } catch {
                credentialFailures.append("\(record.id): \(userMessage(for: error))")
            }
        }
        add("tenant configuration", "credentials", credentialFailures.isEmpty,
            credentialFailures.isEmpty ? "\(checked.count) tenant login(s) decrypt with the current keyring" : credentialFailures.prefix(3).joined(separator: "; "))
        add("tenant databases", "connections", connectFailures.isEmpty,
            connectFailures.isEmpty ? "\(checked.count) tenant database(s) reached with the tenant's own login"
                : "\(connectFailures.count) failed: " + connectFailures.prefix(3).joined(separator: "; "))

        // Data routing: a query per tenant through the router, to where its writes belong.
        let router = TenantRouter(
            configuration: TenantRouter.Configuration(unifiedURL: services.databaseURL, pool: TenantPool.Configuration(context.configuration.pool)),
            catalog: services.catalog, registry: registry, servers: services.servers, logger: context.logger)
        let running = Task { try await router.run() }
        var misrouted: [String] = []
        for record in checked {
            do {
                let expected: Route.Source = record.placement == .dedicated ? .tenant : .unified
                let source = try await router.withConnection(tenant: record.id, intent: .write) { connection in
                    try await connection.query("SELECT 1")
                    return connection.source
                }
                if source != expected { misrouted.append("\(record.id): went to \(source), expected \(expected)") }
            } catch {
                misrouted.append("\(record.id): \(userMessage(for: error))")
            }
        }
        running.cancel()
        _ = try? await running.value
        add("data routing", "writes", misrouted.isEmpty,
            misrouted.isEmpty ? "\(checked.count) tenant(s) routed to where their data lives" : misrouted.prefix(3).joined(separator: "; "))
        return checks
    }
}
