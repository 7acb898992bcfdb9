import ArgumentParser
import EmbeddedPostgres
import Foundation
import Tenantry
import TenantryCore

/// `tenantry doctor`: the seed's setup checks (environment, application database, tenant
/// databases, tenant configuration, data routing), each passed, warned or failed with its reason.
/// The checks are the library's (``Operations/doctor(sample:environment:)``, also served as
/// `GET /api/superadmin/doctor`); the CLI adds what only it can check (the PostgreSQL programs for
/// the embedded server) and what must hold before there are operations at all (the configuration
/// parses, the unified database answers, the catalog is current).
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the setup: environment, unified database and catalog, tenant databases, credentials, routing.",
        discussion: """
            Every check prints PASS, WARN or FAIL with its reason; the exit status is non-zero when any check fails. \
            Tenant databases are reached with each tenant's own login (decrypted with TENANT_ENCRYPTION_KEY), \
            and a query is routed for each tenant checked, as the application would. Every tenant role is checked \
            for databases other than its own that it can connect to: the unified database, postgres, template1, the \
            template or another tenant's is a failure ('tenantry guard install' closes them); any other database of \
            the server is a warning. The same checks are served as GET /api/superadmin/doctor.
            """)

    @Option(help: "Check at most this many tenants' databases and routes (0: all).") var sample = 20
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard sample >= 0 else { throw ValidationError("--sample must be 0 or more") }
    }

    func run() async throws {
        try await runCommand {
            let report = await Self.checks(sample: sample)
            if json {
                try Output.json(report)
            } else {
                for check in report.checks { Output.line(Self.line(check)) }
                Output.line("\(report.passed)/\(report.checks.count) checks passed"
                    + (report.warnings > 0 ? " (\(report.warnings) with a warning)" : ""))
            }
            if !report.healthy { throw ExitCode.failure }
        }
    }

    /// `PASS  group: name — detail`.
    static func line(_ check: DoctorCheck) -> String {
        "\(check.status.rawValue.uppercased())  \(check.group): \(check.name)\(check.detail.isEmpty ? "" : " — \(check.detail)")"
    }

    /// Every check; stops early (with the failing check last) when the configuration does not
    /// parse, the unified database cannot be reached or the catalog is not current.
    static func checks(sample: Int) async -> DoctorReport {
        let context: CommandContext
        do {
            context = try CommandContext.load()
        } catch {
            return DoctorReport(checks: [DoctorCheck(group: "environment", name: "configuration", passed: false, detail: userMessage(for: error))])
        }
        var environment: [DoctorCheck] = []
        if context.configuration.databaseURL == nil {
            do {
                environment.append(DoctorCheck(
                    group: "environment", name: "PostgreSQL programs", passed: true,
                    detail: "initdb and pg_ctl in \(try context.postgresBinaries().directory)"))
            } catch {
                environment.append(DoctorCheck(group: "environment", name: "PostgreSQL programs", passed: false, detail: userMessage(for: error)))
            }
        }
        let hostChecks = environment
        let preflight = DoctorReport.configurationChecks(context.configuration) + hostChecks
        let unifiedURL: PostgresURL
        do {
            unifiedURL = try await context.databaseURL()
        } catch {
            return DoctorReport(checks: preflight + [
                DoctorCheck(group: "application database", name: "connection", passed: false, detail: userMessage(for: error)),
            ])
        }
        do {
            return try await Services.with(context) { services in
                await services.operations.doctor(sample: sample, environment: hostChecks)
            }
        } catch {
            // No operations: say which step failed (the database, else the catalog).
            let database = await DoctorReport.databaseChecks(unifiedURL, logger: context.logger)
            guard database.allSatisfy(\.passed) else { return DoctorReport(checks: preflight + database) }
            return DoctorReport(checks: preflight + database + [
                DoctorCheck(group: "application database", name: "catalog", passed: false, detail: userMessage(for: error)),
            ])
        }
    }
}
