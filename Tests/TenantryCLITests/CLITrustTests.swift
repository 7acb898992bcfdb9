import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("CLI: secrets stay in the process; tenant roles shut out of shared databases", .timeLimit(.minutes(5)))
struct CLITrustTests {
    @Test("a child program's environment: PATH, HOME, locale and what is added; never a key or token")
    func childEnvironment() {
        let parent = [
            "PATH": "/usr/bin:/bin", "HOME": "/home/t", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
            "TENANT_ENCRYPTION_KEY": String(repeating: "ab", count: 32), "TENANT_ENCRYPTION_PREVIOUS_KEYS": "cd",
            "TENANTRY_ADMIN_TOKEN": "secret-token-0123456789", "POSTGRES_SUPERUSER_PASSWORD": "pw",
            "DATABASE_URL": "postgres://u:pw@h/d", "PGPASSWORD": "inherited", "AWS_SECRET_ACCESS_KEY": "x",
        ]
        let environment = ProcessRunner.minimalEnvironment(["PGPASSWORD": "the-login's"], from: parent)
        #expect(environment == [
            "PATH": "/usr/bin:/bin", "HOME": "/home/t", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC", "PGPASSWORD": "the-login's",
        ])
        #expect(ProcessRunner.minimalEnvironment(from: [:])["PATH"] != nil)
    }

    @Test("deprovision's pg_dump gets PGPASSWORD for its login, never TENANT_ENCRYPTION_KEY, the admin token or DATABASE_URL")
    func pgDumpEnvironment() async throws {
        let fixture = try await CLIProvisioningFixture.make("clienv")
        defer { fixture.remove() }
        let provision = try await fixture.run(["provision", "1"])
        try #require(provision.status == 0, "\(provision.stderr)")
        // TENANTRY_PG_BIN pointing at the real programs, with a pg_dump that records its environment first.
        let real = try PostgresBinaries.locate()
        let bin = "\(fixture.directory)/pgbin"
        let recorded = "\(fixture.directory)/pg_dump.env"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        for program in ["initdb", "pg_ctl"] {
            try FileManager.default.createSymbolicLink(atPath: "\(bin)/\(program)", withDestinationPath: real.path(of: program))
        }
        try "#!/bin/sh\nenv > \(ProcessRunner.quote(recorded))\nexec \(ProcessRunner.quote(real.path(of: "pg_dump"))) \"$@\"\n"
            .write(toFile: "\(bin)/pg_dump", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "\(bin)/pg_dump")

        let token = "admin-token-\(UUID().uuidString)"
        let run = try await fixture.run(
            ["deprovision", "1", "--yes", "--archive-dir", "\(fixture.directory)/arch"],
            ["TENANTRY_PG_BIN": bin, "TENANTRY_ADMIN_TOKEN": token])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let environment = try String(contentsOfFile: recorded, encoding: .utf8)
        let names = Set(environment.split(separator: "\n").compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) })
        #expect(!environment.contains(fixture.key.hex) && !environment.contains(token), "\(names)")
        #expect(names.isDisjoint(with: ["TENANT_ENCRYPTION_KEY", "TENANTRY_ADMIN_TOKEN", "DATABASE_URL", "TENANTRY_PG_BIN"]), "\(names)")
        #expect(names.contains("PGPASSWORD") && names.contains("PATH"), "\(names)")
    }

    @Test("guard install --dry-run says what it would do and does nothing; install says it, then shuts tenant roles out; doctor checks it")
    func connectLockdown() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 20)
        for arguments in [["schema", "derive"], ["init"], ["provision", "--all"]] {
            let step = try await fixture.run(arguments)
            try #require(step.status == 0, "\(arguments): \(step.stderr)")
        }
        let sealed = try #require(try await TestPostgres.strings(
            fixture.url, "SELECT password_sealed FROM tenantry.credentials WHERE tenant_id = '1'").first ?? nil)
        let tenantLogin = try await TestPostgres.url(database: fixture.url.database)
            .with(user: "\(fixture.prefix)_u_1", password: try Keyring(current: fixture.key).open(sealed, tenant: "1", field: "password"))
        func reachesUnified() async -> Bool {
            (try? await Database.withConnection(tenantLogin, logger: TestPostgres.logger) { _ in }) != nil
        }
        #expect(await reachesUnified(), "PUBLIC may connect to the unified database before the guard")

        let before = try await fixture.run(["doctor"])
        #expect(before.status != 0 && before.stdout.contains("FAIL  tenant databases: isolation"), "\(before.stdout)")
        #expect(before.stdout.contains("\(fixture.prefix)_u_1 to ") && before.stdout.contains(fixture.url.database), "\(before.stdout)")

        let dry = try await fixture.run(["guard", "install", "--dry-run"])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(dry.stdout.contains("connect (dry run, not done): revoke CONNECT on default/\(fixture.url.database) from PUBLIC"), "\(dry.stdout)")
        #expect(!dry.stdout.contains("guard installed"))
        #expect(await reachesUnified(), "a dry run changes nothing")

        let install = try await fixture.run(["guard", "install"])
        #expect(install.status == 0, "\(install.stderr)")
        let lines = install.stdout.split(separator: "\n").map(String.init)
        let announced = try #require(lines.firstIndex { $0.hasPrefix("connect: revoke CONNECT on default/\(fixture.url.database)") }, "\(lines)")
        let installed = try #require(lines.firstIndex { $0.hasPrefix("guard installed") }, "\(lines)")
        #expect(announced < installed, "said before it is done")
        #expect(!(await reachesUnified()), "tenant role shut out of the unified database")

        let after = try await fixture.run(["doctor", "--json"])
        #expect(after.status == 0, "\(after.stdout)\n\(after.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(after.lastLine.utf8)) as? [String: Any] ?? [:]
        let checks = report["checks"] as? [[String: Any]] ?? []
        #expect(checks.contains { $0["name"] as? String == "isolation" && $0["passed"] as? Bool == true }, "\(checks)")
    }

    @Test("deprovision of a syncing tenant: its move is rolled back first (capture off, queue cleared); the other tenant syncs on")
    func deprovisionSyncing() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 20)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"], ["migrate-data", "--all"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        let state = """
            SELECT t.id || ':' || coalesce(m.phase, '-') || ':' || coalesce(c.capturing::text, '-') || ':'
                || (SELECT count(*) FROM tenantry.changes q WHERE q.tenant_id = t.id)
            FROM tenantry.tenants t LEFT JOIN tenantry.moves m ON m.tenant_id = t.id
            LEFT JOIN tenantry.capture_state c ON c.tenant_id = t.id ORDER BY t.id
            """
        _ = try await TestPostgres.strings(fixture.url, "UPDATE customers SET notes = 'queued' WHERE shop_id IN (1, 2) RETURNING 'x'")
        let before = try await TestPostgres.strings(fixture.url, state).compactMap { $0 }
        #expect(before.count == 2 && before.allSatisfy { $0.contains(":syncing:true:") && !$0.hasSuffix(":0") }, "\(before)")

        let run = try await fixture.run(["deprovision", "1", "--yes", "--archive-dir", "\(fixture.directory)/arch"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        let after = try await TestPostgres.strings(fixture.url, state).compactMap { $0 }
        #expect(after.first == "1:shared:false:0", "\(after)")
        #expect(after.last == before.last, "the other tenant is untouched: \(after)")
        _ = try await TestPostgres.strings(fixture.url, "UPDATE customers SET notes = 'later' WHERE shop_id = 1 RETURNING 'x'")
        #expect(try await TestPostgres.strings(fixture.url, state).first == "1:shared:false:0", "no longer captured")
    }
}
