import Foundation
import TenantryCore

extension Operations {
    /// The seed's setup checks over this catalog (`tenantry doctor`, `GET /api/superadmin/doctor`):
    /// the configuration, the unified database (connection, version, catalog, capture), the tenant
    /// configuration (placements, credentials), the tenant databases (isolation, connections with
    /// each tenant's own login) and data routing (a write routed per tenant, as the application
    /// would). At most `sample` tenants are connected to and routed (0: all). `environment` holds
    /// checks of the host that only the caller can make (e.g. where the PostgreSQL programs are);
    /// they follow the configuration's. Never throws: a check that cannot run fails with its reason.
    /// No detail holds a secret.
    public func doctor(sample: Int = 20, environment: [DoctorCheck] = []) async -> DoctorReport {
        var checks = DoctorReport.configurationChecks(configuration) + environment
        checks += await DoctorReport.databaseChecks(databaseURL, logger: logger)
        checks.append(DoctorCheck(group: "application database", name: "catalog", passed: true, detail: "schema tenantry, current version"))
        // Each check fails on its own: a move plan that cannot load does not hide the tenants'.
        do {
            let move = try await move()
            let installed = try await move.capture().isInstalled()
            // A tenant with capture state that a table's capture triggers do not list: its writes
            // there would be neither captured nor guarded.
            let problems = installed ? try await move.capture().triggerProblems() : []
            checks.append(DoctorCheck(
                group: "application database", name: "capture", passed: problems.isEmpty,
                detail: !problems.isEmpty ? problems.prefix(3).map { "\($0.table): \($0.detail)" }.joined(separator: "; ")
                    + (problems.count > 3 ? "; \(problems.count - 3) more table(s)" : "")
                    : installed ? "installed on \(move.plan.tables.count) tenant tables"
                    : "not installed (needed only to move tenants: 'tenantry capture install')"))
            checks.append(await move.foreignKeyCheck())
        } catch {
            checks.append(DoctorCheck(group: "application database", name: "capture", passed: false, detail: Database.oneLine(error)))
        }
        do {
            checks += try await tenantChecks(sample: max(sample, 0))
        } catch {
            checks.append(DoctorCheck(group: "tenant configuration", name: "tenants", passed: false, detail: Database.oneLine(error)))
        }
        return DoctorReport(checks: checks)
    }

    private func tenantChecks(sample: Int) async throws -> [DoctorCheck] {
        var checks: [DoctorCheck] = []
        let tenants = try await catalog.tenants()
        let provisioned = tenants.filter { $0.status == .active && $0.databaseName != nil }
        checks.append(DoctorCheck(
            group: "tenant configuration", name: "tenants", passed: true,
            detail: "\(tenants.count) registered, \(provisioned.count) with a database, "
                + "\(tenants.filter { $0.placement == .dedicated }.count) dedicated"))
        let broken = tenants.filter { $0.placement == .dedicated && $0.databaseName == nil }
        checks.append(DoctorCheck(
            group: "tenant configuration", name: "placements", passed: broken.isEmpty,
            detail: broken.isEmpty ? "every dedicated tenant has a database"
                : "dedicated without a database: \(broken.map(\.id.rawValue).prefix(10))"))
        guard !provisioned.isEmpty else { return checks }
        checks += await isolationChecks(tenants)
        guard let keyring = configuration.keyring else {
            checks.append(DoctorCheck(
                group: "tenant configuration", name: "credentials", passed: false,
                detail: "TENANT_ENCRYPTION_KEY is not set: tenant logins cannot be opened"))
            return checks
        }
        let checked = sample == 0 ? provisioned : Array(provisioned.prefix(sample))
        checks += await loginChecks(checked, keyring: keyring)
        checks.append(await routingCheck(checked, keyring: keyring))
        return checks
    }

    /// Isolation: a tenant role must reach its own database only (docs/security.md).
    private func isolationChecks(_ tenants: [TenantRecord]) async -> [DoctorCheck] {
        do {
            let reach = try await ConnectLockdown(
                catalog: catalog, servers: servers, unifiedDatabase: databaseURL.database, appRoles: [], logger: logger).reach()
            // The databases Tenantry answers for; any other of the server is the operator's.
            let ours = Set(["postgres", "template1", databaseURL.database, configuration.naming.templateDatabase]
                + [catalog.url?.database].compactMap { $0 } + tenants.compactMap(\.databaseName))
            func describe(_ keep: (String) -> Bool) -> [String] {
                reach.compactMap { entry in
                    let databases = entry.databases.filter(keep)
                    return databases.isEmpty ? nil : "\(entry.role) to \(databases.prefix(5).joined(separator: ", "))"
                        + (databases.count > 5 ? " and \(databases.count - 5) more" : "")
                }
            }
            let leaks = describe { ours.contains($0) }
            var checks = [DoctorCheck(
                group: "tenant databases", name: "isolation", passed: leaks.isEmpty,
                detail: leaks.isEmpty
                    ? "no tenant role can connect to the unified database, postgres, template1, the template or another tenant's database"
                    : "\(leaks.count) tenant role(s) can connect to databases not their own: " + leaks.prefix(3).joined(separator: "; ")
                        + " (run 'tenantry guard install'; docs/security.md)")]
            let others = describe { !ours.contains($0) }
            if !others.isEmpty {
                // Not Tenantry's databases: a warning, not a failure (REVOKE CONNECT … FROM PUBLIC closes them).
                checks.append(DoctorCheck(
                    group: "tenant databases", name: "other databases", status: .warn,
                    detail: "tenant roles can also connect to other databases of the server, open to PUBLIC: "
                        + others.prefix(2).joined(separator: "; ") + " (REVOKE CONNECT ON DATABASE … FROM PUBLIC to close them)"))
            }
            return checks
        } catch {
            return [DoctorCheck(group: "tenant databases", name: "isolation", passed: false, detail: Database.oneLine(error))]
        }
    }

    /// Each tenant's login decrypts, and reaches its database.
    private func loginChecks(_ records: [TenantRecord], keyring: Keyring) async -> [DoctorCheck] {
        let registry = CredentialRegistry(catalog: catalog, keyring: keyring)
        var credentialFailures: [String] = []
        var connectFailures: [String] = []
        for record in records {
            do {
                let credentials = try await registry.credentials(for: record.id)
                let url = try servers.adminURL(of: record).with(user: credentials.username, password: credentials.password)
                do {
                    try await Database.withConnection(url, logger: logger) { connection in
                        try await connection.query("SELECT 1", logger: logger)
                    }
                } catch {
                    connectFailures.append("\(record.id): \(Database.oneLine(error))")
                }
            } catch {
                credentialFailures.append("\(record.id): \(Database.oneLine(error))")
            }
        }
        return [
            DoctorCheck(
                group: "tenant configuration", name: "credentials", passed: credentialFailures.isEmpty,
                detail: credentialFailures.isEmpty ? "\(records.count) tenant login(s) decrypt with the current keyring"
                    : credentialFailures.prefix(3).joined(separator: "; ")),
            DoctorCheck(
                group: "tenant databases", name: "connections", passed: connectFailures.isEmpty,
                detail: connectFailures.isEmpty ? "\(records.count) tenant database(s) reached with the tenant's own login"
                    : "\(connectFailures.count) failed: " + connectFailures.prefix(3).joined(separator: "; ")),
        ]
    }

    /// Data routing: a write per tenant through a router (run for the check only), to where its data lives.
    private func routingCheck(_ records: [TenantRecord], keyring: Keyring) async -> DoctorCheck {
        let router = diagnosticRouter(keyring: keyring, monitor: nil)
        let misrouted: [String]
        do {
            misrouted = try await router.running {
                var misrouted: [String] = []
                for record in records {
                    do {
                        let expected: Route.Source = record.placement == .dedicated ? .tenant : .unified
                        let source = try await router.withConnection(tenant: record.id, intent: .write) { connection in
                            try await connection.query("SELECT 1")
                            return connection.source
                        }
                        if source != expected { misrouted.append("\(record.id): went to \(source), expected \(expected)") }
                    } catch {
                        misrouted.append("\(record.id): \(Database.oneLine(error))")
                    }
                }
                return misrouted
            }
        } catch {
            misrouted = ["router: \(Database.oneLine(error))"]
        }
        return DoctorCheck(
            group: "data routing", name: "writes", passed: misrouted.isEmpty,
            detail: misrouted.isEmpty ? "\(records.count) tenant(s) routed to where their data lives" : misrouted.prefix(3).joined(separator: "; "))
    }
}
