import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry provision, deprovision, servers, keys, credentials (CLI)", .timeLimit(.minutes(5)))
struct CLIProvisioningTests {
    @Test("provision 1 2 3 → tenants active; provision again is a no-op; deprovision needs --yes, then archives and drops")
    func lifecycle() async throws {
        let fixture = try await CLIProvisioningFixture.make("cliprov")
        defer { fixture.remove() }

        let provision = try await fixture.run(["provision", "1", "2", "3"])
        #expect(provision.status == 0, "\(provision.stdout)\n\(provision.stderr)")
        #expect(provision.lastLine == "3 provisioned, 0 already provisioned, 0 failed", "\(provision.stdout)")

        let tenants = try await fixture.tenants()
        #expect(tenants.map(\.id) == ["1", "2", "3"])
        #expect(tenants.allSatisfy { $0.status == "active" && $0.schemaVersion == 1 })
        #expect(tenants.map(\.databaseName) == ["1", "2", "3"].map(fixture.database))
        #expect(tenants.map(\.roleName) == ["1", "2", "3"].map(fixture.role))
        let objects = try await fixture.objects()
        for id in ["1", "2", "3"] {
            #expect(objects.contains("db:\(fixture.database(id))") && objects.contains("role:\(fixture.role(id))"), "\(objects)")
        }
        // The tenant role logs in to its database with the stored password.
        try await Database.withConnection(
            try await fixture.tenantURL("3", password: try await fixture.password("3")), logger: TestPostgres.logger
        ) { connection in
            try await connection.query("INSERT INTO customers (name) VALUES ('kept in the archive')", logger: TestPostgres.logger)
        }

        let again = try await fixture.run(["provision", "2"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.lastLine == "0 provisioned, 1 already provisioned, 0 failed", "\(again.stdout)")
        #expect(try await fixture.objects() == objects, "a second provision must not create or drop anything")

        let archiveDirectory = "\(fixture.directory)/arch"
        let unconfirmed = try await fixture.run(["deprovision", "3", "--archive-dir", archiveDirectory])
        #expect(unconfirmed.status != 0)
        let lines = unconfirmed.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("--yes"), "\(unconfirmed.stderr)")
        #expect(try await fixture.objects() == objects, "nothing may be dropped without --yes")
        #expect(!FileManager.default.fileExists(atPath: archiveDirectory))
        #expect(try await fixture.tenants().first { $0.id == "3" }?.status == "active")

        // A relative archive directory is the command's working directory's (pg_dump runs elsewhere).
        let confirmed = try await fixture.run(["deprovision", "3", "--yes", "--archive-dir", "arch"])
        #expect(confirmed.status == 0, "\(confirmed.stderr)")
        #expect(confirmed.lastLine.hasPrefix("deprovisioned tenant 3: dropped \(fixture.database("3"))"), "\(confirmed.stdout)")
        let archives = try FileManager.default.contentsOfDirectory(atPath: archiveDirectory)
        #expect(archives.count == 1 && archives.first?.hasSuffix(".dump") == true, "\(archives)")
        let archive = "\(archiveDirectory)/\(try #require(archives.first))"
        let pgRestore = try PostgresBinaries.locate().path(of: "pg_restore")
        let list = try await ProcessRunner().run(pgRestore, ["--list", archive])
        #expect(list.succeeded, "\(list.text)")
        #expect(list.text.contains("TABLE DATA public customers"), "\(list.text)")
        let data = try await ProcessRunner().run(pgRestore, ["--data-only", "-f", "-", archive])
        #expect(data.text.contains("kept in the archive"))

        let remaining = try await fixture.objects()
        #expect(!remaining.contains("db:\(fixture.database("3"))") && !remaining.contains("role:\(fixture.role("3"))"), "\(remaining)")
        #expect(remaining.contains("db:\(fixture.database("1"))") && remaining.contains("db:\(fixture.database("2"))"))
        let after = try await fixture.tenants()
        #expect(after.map(\.status) == ["active", "active", "deprovisioned"])
        #expect(after.last?.databaseName == nil)
        #expect(try await TestPostgres.strings(fixture.url, "SELECT tenant_id FROM tenantry.credentials ORDER BY 1") == ["1", "2"])
    }

    @Test("a bad tenant id: non-zero exit, one line saying it is invalid, nothing created",
          arguments: ["1;drop database x", "../a", "ÄÖ", "", String(repeating: "a", count: 41), "Upper"])
    func badTenantID(_ id: String) async throws {
        let fixture = try await CLIProvisioningFixture.make("clibad")
        defer { fixture.remove() }
        let before = try await fixture.objects()
        for arguments in [["provision", id], ["provision", "1", id], ["deprovision", id, "--yes"], ["credentials", "rotate", id]] {
            let result = try await fixture.run(arguments)
            #expect(result.status != 0, "\(arguments)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].contains("is invalid"), "\(arguments): \(result.stderr)")
            #expect(result.stdout.isEmpty, "\(arguments): \(result.stdout)")
        }
        #expect(try await fixture.objects() == before)
        #expect(try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM tenantry.tenants") == ["0"])
        #expect(try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM tenantry.credentials") == ["0"])
    }

    @Test("provision --all takes the ids of the unified database's shops table")
    func provisionAll() async throws {
        let fixture = try await CLIProvisioningFixture.make("cliall")
        defer { fixture.remove() }
        try await Database.withConnection(fixture.url, logger: TestPostgres.logger) { connection in
            try await Database.execute(script: """
                CREATE TABLE shops (id bigint PRIMARY KEY);
                INSERT INTO shops VALUES (10), (11), (12);
                CREATE TABLE customers (shop_id bigint NOT NULL REFERENCES shops, id bigint, PRIMARY KEY (shop_id, id));
                INSERT INTO customers VALUES (10, 1), (12, 1);
                """, on: connection, logger: TestPostgres.logger)
        }
        let result = try await fixture.run(["provision", "--all", "--concurrency", "2"])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.lastLine == "3 provisioned, 0 already provisioned, 0 failed", "\(result.stdout)")
        let tenants = try await fixture.tenants()
        #expect(tenants.map(\.id) == ["10", "11", "12"])
        #expect(tenants.allSatisfy { $0.status == "active" })
        #expect(try await fixture.objects().filter { $0.hasPrefix("db:") && $0 != "db:\(fixture.prefix)_tpl" }
                == ["10", "11", "12"].map { "db:\(fixture.database($0))" })

        let again = try await fixture.run(["provision", "--all", "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(again.lastLine.utf8)) as? [String: Any]
        let provisioned = try #require(object?["provisioned"] as? [[String: Any]])
        #expect(provisioned.compactMap { $0["result"] as? String } == ["existing", "existing", "existing"])
        #expect((object?["failed"] as? [String: Any])?.isEmpty == true)
    }

    @Test("two registered servers: provisioning spreads the tenants; servers list counts them; a wrong password is refused")
    func twoServers() async throws {
        let fixture = try await CLIProvisioningFixture.make("clisrv")
        defer { fixture.remove() }
        let second = EmbeddedPostgres(configuration: .temporary())
        try await second.start()
        do {
            let firstURL = try await TestPostgres.server().url()
            let secondURL = try second.url()
            let firstPassword = try await TestPostgres.server().password
            let secondPassword = try second.password

            let addOne = try await fixture.run(["servers", "add", "one"], ["TENANTRY_SERVER_URL": firstURL])
            #expect(addOne.status == 0, "\(addOne.stderr)")
            let addTwo = try await fixture.run(["servers", "add", "two", "--max-connections", "30"], input: secondURL + "\n")
            #expect(addTwo.status == 0, "\(addTwo.stderr)")
            for output in [addOne, addTwo] {
                #expect(output.stdout.hasPrefix("registered server"), "\(output.stdout)")
                #expect(!(output.stdout + output.stderr).contains(firstPassword) && !(output.stdout + output.stderr).contains(secondPassword))
            }
            // The admin passwords are stored sealed, not in the clear.
            let stored = try await TestPostgres.strings(
                fixture.url, "SELECT string_agg(s::text, ' ') FROM tenantry.servers s").compactMap { $0 }.joined()
            #expect(!stored.contains(firstPassword) && !stored.contains(secondPassword) && stored.contains("v1:\(fixture.key.id):"))

            // One at a time: the spread of concurrent provisions is the next test's subject.
            let provision = try await fixture.run(["provision", "1", "2", "3", "4", "--concurrency", "1"])
            #expect(provision.status == 0, "\(provision.stdout)\n\(provision.stderr)")
            #expect(provision.lastLine == "4 provisioned, 0 already provisioned, 0 failed", "\(provision.stdout)")

            let tenants = try await fixture.tenants()
            #expect(tenants.count == 4 && tenants.allSatisfy { $0.status == "active" })
            let onOne = tenants.filter { $0.serverName == "one" }.compactMap(\.databaseName).sorted()
            let onTwo = tenants.filter { $0.serverName == "two" }.compactMap(\.databaseName).sorted()
            #expect(onOne.count == 2 && onTwo.count == 2, "placement: \(tenants.map { "\($0.id)→\($0.serverName ?? "default")" })")

            // Each tenant database exists on the server the catalog names, and only there.
            let secondAdmin = try PostgresURL(secondURL)
            let namesSQL = "SELECT datname::text FROM pg_database WHERE starts_with(datname, '\(fixture.prefix)_') "
                + "AND datname <> '\(fixture.prefix)_tpl' ORDER BY 1"
            #expect(try await TestPostgres.strings(fixture.url, namesSQL).compactMap { $0 } == onOne)
            #expect(try await TestPostgres.strings(secondAdmin, namesSQL).compactMap { $0 } == onTwo)
            // The template was prepared on the second server too.
            #expect(try await TestPostgres.strings(
                secondAdmin, "SELECT datname::text FROM pg_database WHERE datname = '\(fixture.prefix)_tpl'") == ["\(fixture.prefix)_tpl"])

            let listJSON = try await fixture.run(["servers", "list", "--json"])
            #expect(listJSON.status == 0, "\(listJSON.stderr)")
            let servers = try JSONDecoder().decode(ServerList.self, from: Data(listJSON.lastLine.utf8)).servers
            #expect(servers.map(\.name) == ["default", "one", "two"])
            #expect(servers.map(\.tenants) == [0, 2, 2])
            #expect(servers.first { $0.name == "two" }?.port == secondAdmin.port)
            let list = try await fixture.run(["servers", "list"])
            #expect(list.status == 0)
            #expect(list.stdout.contains("one: 127.0.0.1:") && list.stdout.contains("two: 127.0.0.1:\(secondAdmin.port) admin postgres, 2 tenant(s), cap 30 connections"),
                    "\(list.stdout)")

            // A wrong password: refused before anything is stored, and not printed.
            let wrong = secondAdmin.with(user: "postgres", password: "Wr0ngSecretXyz").urlStringWithPassword
            let refused = try await fixture.run(["servers", "add", "bad"], ["TENANTRY_SERVER_URL": wrong])
            #expect(refused.status != 0)
            let lines = refused.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].hasPrefix("tenantry: error:"), "\(refused.stderr)")
            #expect(!(refused.stdout + refused.stderr).contains("Wr0ngSecretXyz"))
            #expect(try await TestPostgres.strings(fixture.url, "SELECT name FROM tenantry.servers ORDER BY 1") == ["one", "two"])
        } catch {
            try? await second.stop()
            throw error
        }
        try await second.stop()
    }

    @Test("servers add: a password in argv is refused with one line; the URL comes from TENANTRY_SERVER_URL or stdin; sslmode prefer (the default) connects to a server without TLS, require fails clearly")
    func serverURLNotInArgv() async throws {
        let fixture = try await CLIProvisioningFixture.make("clisu")
        defer { fixture.remove() }
        let server = try PostgresURL(try await TestPostgres.server().url())
        let password = try #require(server.password)

        let inArgv = try await fixture.run(["servers", "add", "argv", server.urlStringWithPassword])
        #expect(inArgv.status != 0)
        let lines = inArgv.stderr.split(separator: "\n")
        #expect(lines.count == 1 && inArgv.stderr.contains("TENANTRY_SERVER_URL") && inArgv.stderr.contains("standard input"), "\(inArgv.stderr)")
        #expect(!(inArgv.stdout + inArgv.stderr).contains(password))

        let nothing = try await fixture.run(["servers", "add", "none"], input: "")
        #expect(nothing.status != 0 && nothing.stderr.split(separator: "\n").count == 1, "\(nothing.stderr)")

        // sslmode=require against the embedded server (no TLS): one clear line, nothing stored.
        var required = server
        required.tls = .require
        let tls = try await fixture.run(
            ["servers", "add", "tls"], ["TENANTRY_SERVER_URL": required.urlStringWithPassword, "DATABASE_URL": required.with(database: fixture.url.database).urlStringWithPassword])
        #expect(tls.status != 0)
        #expect(tls.stderr.split(separator: "\n").count == 1 && tls.stderr.contains("does not support TLS"), "\(tls.stderr)")
        #expect(!tls.stderr.contains(password))
        // A stricter sslmode than DATABASE_URL's is refused: later connections would not honour it.
        let stricter = try await fixture.run(["servers", "add", "strict"], ["TENANTRY_SERVER_URL": required.urlStringWithPassword])
        #expect(stricter.status != 0 && stricter.stderr.contains("set sslmode=require in DATABASE_URL"), "\(stricter.stderr)")

        let viaEnvironment = try await fixture.run(["servers", "add", "env"], ["TENANTRY_SERVER_URL": server.urlStringWithPassword])
        #expect(viaEnvironment.status == 0, "\(viaEnvironment.stderr)")
        let viaStdin = try await fixture.run(["servers", "add", "stdin"], input: server.urlStringWithPassword + "\n")
        #expect(viaStdin.status == 0, "\(viaStdin.stderr)")
        #expect(!(viaEnvironment.stdout + viaEnvironment.stderr + viaStdin.stdout + viaStdin.stderr).contains(password))
        #expect(try await TestPostgres.strings(fixture.url, "SELECT name FROM tenantry.servers ORDER BY 1") == ["env", "stdin"])

        // No sslmode: prefer, which falls back to plain on a server without TLS (the catalog's
        // PostgresClient pool, provisioning's single connections).
        var preferred = fixture.url
        preferred.tls = .prefer
        #expect(!preferred.urlStringWithPassword.contains("sslmode"))
        let status = try await fixture.run(["status"], ["DATABASE_URL": preferred.urlStringWithPassword])
        #expect(status.status == 0, "\(status.stderr)")
        let provision = try await fixture.run(["provision", "1"], ["DATABASE_URL": preferred.urlStringWithPassword])
        #expect(provision.status == 0, "\(provision.stdout)\n\(provision.stderr)")
    }

    @Test("concurrent provisions (the default --concurrency 4) spread over two servers too")
    func concurrentSpread() async throws {
        let fixture = try await CLIProvisioningFixture.make("clispr")
        defer { fixture.remove() }
        // Two names for the shared server: placement is decided by the catalog, not by the hardware.
        let url = try await TestPostgres.server().url()
        for name in ["a", "b"] {
            let add = try await fixture.run(["servers", "add", name], ["TENANTRY_SERVER_URL": url])
            #expect(add.status == 0, "\(add.stderr)")
        }
        let provision = try await fixture.run(["provision", "1", "2", "3", "4"])
        #expect(provision.status == 0, "\(provision.stdout)\n\(provision.stderr)")
        #expect(provision.lastLine == "4 provisioned, 0 already provisioned, 0 failed", "\(provision.stdout)")
        let tenants = try await fixture.tenants()
        let placement = tenants.map { "\($0.id)→\($0.serverName ?? "default")" }
        #expect(tenants.filter { $0.serverName == "a" }.count == 2, "placement: \(placement)")
        #expect(tenants.filter { $0.serverName == "b" }.count == 2, "placement: \(placement)")
    }

    @Test("keys rotate re-seals credentials and server passwords; afterwards the new key alone works, the old alone does not")
    func keyRotation() async throws {
        let fixture = try await CLIProvisioningFixture.make("clikeys")
        defer { fixture.remove() }
        let oldKey = fixture.key
        let newKey = EncryptionKey.generate()
        // A registered server's admin password is sealed too, and provisioning must open it.
        let add = try await fixture.run(["servers", "add", "main"], ["TENANTRY_SERVER_URL": try await TestPostgres.server().url()])
        #expect(add.status == 0, "\(add.stderr)")
        let provision = try await fixture.run(["provision", "1", "2"])
        #expect(provision.status == 0, "\(provision.stdout)\n\(provision.stderr)")

        let rotate = try await fixture.run(
            ["keys", "rotate", "--json"], ["TENANT_ENCRYPTION_KEY": newKey.hex, "TENANT_ENCRYPTION_PREVIOUS_KEYS": oldKey.hex])
        #expect(rotate.status == 0, "\(rotate.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(rotate.lastLine.utf8)) as? [String: Any]
        #expect(report?["credentials"] as? Int == 2)
        #expect(report?["servers"] as? Int == 1)
        #expect(report?["keyID"] as? String == newKey.id)
        #expect(!(rotate.stdout + rotate.stderr).contains(oldKey.hex) && !(rotate.stdout + rotate.stderr).contains(newKey.hex))
        #expect(try await TestPostgres.strings(fixture.url, "SELECT DISTINCT key_id FROM tenantry.credentials") == [newKey.id])
        let serverSealed = try await TestPostgres.strings(fixture.url, "SELECT admin_password_sealed FROM tenantry.servers")
        #expect(serverSealed.allSatisfy { $0?.hasPrefix("v1:\(newKey.id):") == true }, "\(serverSealed)")

        let newOnly = ["TENANT_ENCRYPTION_KEY": newKey.hex]
        let tenants = try await fixture.tenants(newOnly)
        #expect(tenants.map(\.status) == ["active", "active"])
        let existing = try await fixture.run(["provision", "1"], newOnly)
        #expect(existing.status == 0, "\(existing.stdout)\n\(existing.stderr)")
        #expect(existing.lastLine == "0 provisioned, 1 already provisioned, 0 failed", "\(existing.stdout)")
        let fresh = try await fixture.run(["provision", "3"], newOnly)
        #expect(fresh.status == 0, "\(fresh.stdout)\n\(fresh.stderr)")
        #expect(fresh.lastLine == "1 provisioned, 0 already provisioned, 0 failed", "\(fresh.stdout)")
        // The stored password still logs in after the re-seal.
        try await Database.withConnection(
            try await fixture.tenantURL("1", password: try await fixture.password("1", key: newKey)), logger: TestPostgres.logger) { _ in }

        let oldOnly = try await fixture.run(["provision", "1"], ["TENANT_ENCRYPTION_KEY": oldKey.hex])
        #expect(oldOnly.status != 0)
        let output = oldOnly.stdout + oldOnly.stderr
        #expect(output.contains("TENANT_ENCRYPTION_KEY") && output.contains(newKey.id), "\(output)")
        #expect(!output.contains(oldKey.hex) && !output.contains(newKey.hex))
        // The failed attempt did not mark the healthy tenant failed.
        #expect(try await fixture.tenants(newOnly).first { $0.id == "1" }?.status == "active")

        // A second rotation finds everything current.
        let again = try await fixture.run(["keys", "rotate", "--json"], newOnly)
        #expect(again.status == 0, "\(again.stderr)")
        let second = try JSONSerialization.jsonObject(with: Data(again.lastLine.utf8)) as? [String: Any]
        #expect(second?["credentials"] as? Int == 0 && second?["alreadyCurrent"] as? Int == 4)
    }

    @Test("credentials rotate: a new password that works, the old one refused, audited, no plaintext in audit or server log")
    func passwordRotation() async throws {
        let fixture = try await CLIProvisioningFixture.make("clicred")
        defer { fixture.remove() }
        let provision = try await fixture.run(["provision", "1"])
        #expect(provision.status == 0, "\(provision.stdout)\n\(provision.stderr)")
        let oldPassword = try await fixture.password("1")

        let rotate = try await fixture.run(["credentials", "rotate", "1"])
        #expect(rotate.status == 0, "\(rotate.stderr)")
        #expect(rotate.lastLine == "rotated the password of tenant 1")
        let newPassword = try await fixture.password("1")
        #expect(newPassword != oldPassword && newPassword.count == 32)
        #expect(!(rotate.stdout + rotate.stderr).contains(newPassword))

        try await Database.withConnection(try await fixture.tenantURL("1", password: newPassword), logger: TestPostgres.logger) { _ in }
        await #expect(throws: (any Error).self) {
            try await Database.withConnection(try await fixture.tenantURL("1", password: oldPassword), logger: TestPostgres.logger) { _ in }
        }

        let audit = try await TestPostgres.strings(
            fixture.url, "SELECT action || ' ' || outcome FROM tenantry.audit_log ORDER BY id").compactMap { $0 }
        #expect(audit.contains("credentials.rotate ok"), "\(audit)")
        let details = try await TestPostgres.strings(
            fixture.url, "SELECT string_agg(detail::text, ' ') FROM tenantry.audit_log").compactMap { $0 }.joined()
        #expect(details.contains(fixture.role("1")))
        #expect(!details.contains(newPassword) && !details.contains(oldPassword))
        let log = try String(contentsOfFile: try await TestPostgres.server().logFilePath, encoding: .utf8)
        // Statement logging is off around role DDL: not even the verifier reaches the log (log_statement=all).
        #expect(!log.contains("ALTER ROLE \"\(fixture.role("1"))\" PASSWORD"), "the verifier must not be logged")
        #expect(!log.contains(newPassword) && !log.contains(oldPassword))

        let unknown = try await fixture.run(["credentials", "rotate", "99"])
        #expect(unknown.status != 0)
        #expect(unknown.stderr.split(separator: "\n").count == 1, "\(unknown.stderr)")
    }
}
