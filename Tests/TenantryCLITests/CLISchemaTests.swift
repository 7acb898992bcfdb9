import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry schema (CLI)", .timeLimit(.minutes(5)))
struct CLISchemaTests {
    @Test("schema migrate killed with SIGKILL midway, re-run: every database at the latest version, none half-applied")
    func killedRun() async throws {
        let catalogURL = try await TestPostgres.makeDatabase("clifleet")
        let env = ["DATABASE_URL": catalogURL.urlStringWithPassword, "TENANTRY_TEMPLATE_DATABASE": "\(catalogURL.database)_tpl"]
        #expect(try await CLIRunner.run(["init"], environment: env).status == 0)
        var databases: [String] = []
        try await Catalog.withCatalog(catalogURL, logger: TestPostgres.logger) { catalog in
            for index in 1...12 {
                let url = try await TestPostgres.makeDatabase("\(catalogURL.database)_\(index)")
                var tenant = TenantRecord(id: try TenantID("\(index)"))
                tenant.databaseName = url.database
                try await catalog.upsertTenant(tenant)
            }
        }
        databases = try await TestPostgres.strings(catalogURL, "SELECT database_name FROM tenantry.tenants ORDER BY id").compactMap { $0 }
        let directory = try CLIRunner.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: "\(directory)/migrations", withIntermediateDirectories: true)
        try "CREATE TABLE a (id int PRIMARY KEY);".write(toFile: "\(directory)/migrations/V1__a.sql", atomically: true, encoding: .utf8)
        // Slow on purpose, with two tables around the pause: a half-applied migration would leave one.
        try """
            CREATE TABLE b1 (id int PRIMARY KEY);
            SELECT pg_sleep(0.3);
            CREATE TABLE b2 (id int PRIMARY KEY);
            """.write(toFile: "\(directory)/migrations/V2__b.sql", atomically: true, encoding: .utf8)

        let envArgs = env.merging(["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]) { $1 }
            .map { ProcessRunner.quote("\($0.key)=\($0.value)") }.joined(separator: " ")
        let command = "cd \(ProcessRunner.quote(directory)) && env -i \(envArgs) \(ProcessRunner.quote(CLIRunner.binary)) "
            + "schema migrate --concurrency 2 >/dev/null 2>&1 & pid=$!; sleep 1.2; kill -9 $pid; wait $pid; echo status=$?"
        let killed = try await ProcessRunner().run("/bin/sh", ["-c", command])
        #expect(killed.text.contains("status=137"), "the run should have been killed midway: \(killed.text)")

        var partial = 0
        for database in databases {
            let url = try await TestPostgres.url(database: database)
            let state = try await TestPostgres.strings(url, """
                SELECT (to_regclass('b1') IS NOT NULL)::text || (to_regclass('b2') IS NOT NULL)::text
                """)
            #expect(state == ["truetrue"] || state == ["falsefalse"], "\(database) half-applied: \(state)")
            if state == ["falsefalse"] { partial += 1 }
        }
        #expect(partial > 0, "the kill came too late to test anything")

        let rerun = try await CLIRunner.run(["schema", "migrate", "--json"], environment: env, in: directory)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        let status = try await CLIRunner.run(["schema", "status", "--json"], environment: env, in: directory)
        #expect(status.status == 0, "\(status.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(status.lastLine.utf8)) as? [String: Any]
        let rows = try #require(object?["databases"] as? [[String: Any]])
        #expect(rows.count == 13)  // the template and 12 tenants
        #expect(rows.allSatisfy { $0["version"] as? Int == 2 && ($0["pending"] as? [Any])?.isEmpty == true })
        let plan = try await CLIRunner.run(["schema", "plan"], environment: env, in: directory)
        #expect(plan.stdout.contains("nothing to run"))
    }

    @Test("schema derive writes a migration file and prints its report; no key → one clear error")
    func derive() async throws {
        let url = try await TestPostgres.makeDatabase("cliderive")
        try await Database.withConnection(url, logger: TestPostgres.logger) { connection in
            try await Database.execute(script: """
                CREATE TABLE shops (id bigint PRIMARY KEY);
                CREATE TABLE customers (shop_id bigint NOT NULL REFERENCES shops, id bigint, name text,
                                        PRIMARY KEY (shop_id, id));
                CREATE TABLE logs (shop_id bigint NOT NULL, line text);
                """, on: connection, logger: TestPostgres.logger)
        }
        let directory = try CLIRunner.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let env = ["DATABASE_URL": url.urlStringWithPassword]
        let refused = try await CLIRunner.run(["schema", "derive"], environment: env, in: directory)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("logs has no primary key"), "\(refused.stderr)")
        let derived = try await CLIRunner.run(["schema", "derive", "--exclude", "logs"], environment: env, in: directory)
        #expect(derived.status == 0, "\(derived.stderr)")
        #expect(derived.stdout.contains("customers: rewrote primary key customers_pkey (shop_id, id) → (id)"))
        let file = try String(contentsOfFile: "\(directory)/migrations/V1__tenant_schema.sql", encoding: .utf8)
        #expect(file.contains("CREATE TABLE \"customers\""))
        #expect(!file.contains("\"shop_id\" bigint"))
        let again = try await CLIRunner.run(["schema", "derive", "--exclude", "logs"], environment: env, in: directory)
        #expect(again.status != 0 && again.stderr.contains("--force"))
    }
}
