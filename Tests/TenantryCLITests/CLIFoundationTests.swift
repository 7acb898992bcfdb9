import EmbeddedPostgres
import Foundation
import TenantryTestSupport
import Testing

@Suite("tenantry CLI: dev, init, status", .timeLimit(.minutes(3)))
struct CLIFoundationTests {
    @Test("dev start → psql select 1 → init twice → status --json → dev stop leaves no process")
    func devFlow() async throws {
        let directory = try CLIRunner.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let start = try await CLIRunner.run(["dev", "start"], in: directory)
        #expect(start.status == 0, "\(start.stderr)")
        let url = start.lastLine
        #expect(url.hasPrefix("postgres://"))
        let psql = try await ProcessRunner().run("/usr/bin/psql", [url, "-tAc", "select 1"])
        #expect(psql.text.trimmingCharacters(in: .whitespacesAndNewlines) == "1")

        // Starting again attaches and prints the same URL.
        let again = try await CLIRunner.run(["dev", "start"], in: directory)
        #expect(again.status == 0 && again.lastLine == url)

        for _ in 0..<2 {
            let initRun = try await CLIRunner.run(["init"], environment: ["DATABASE_URL": url], in: directory)
            #expect(initRun.status == 0, "\(initRun.stderr)")
            #expect(initRun.stdout.contains("catalog"))
            #expect(!initRun.stdout.contains(url), "the password must not be printed")
        }
        let status = try await CLIRunner.run(["status", "--json"], environment: ["DATABASE_URL": url], in: directory)
        #expect(status.status == 0, "\(status.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(status.lastLine.utf8)) as? [String: Any]
        #expect(object?["catalogVersion"] as? Int == 4)
        #expect(object?["tenants"] as? Int == 0)
        #expect((object?["byServer"] as? [String: Int])?.isEmpty == true && (object?["serverMoves"] as? [Any])?.isEmpty == true, "\(status.stdout)")

        let stop = try await CLIRunner.run(["dev", "stop"], in: directory)
        #expect(stop.status == 0)
        let pidFile = directory + "/.tenantry/postgres/data/postmaster.pid"
        #expect(!FileManager.default.fileExists(atPath: pidFile))
        let ps = try await ProcessRunner().run("/bin/sh", ["-c", "ps -eo args | grep -c '[p]ostgres -D \(directory)' || true"])
        #expect(ps.text.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        let devStatus = try await CLIRunner.run(["dev", "status"], in: directory)
        #expect(devStatus.status != 0 && devStatus.stdout.contains("not running"))
    }

    @Test("a bad environment value: non-zero exit, one line naming the variable, no stack trace",
          arguments: [
            ("TENANT_ENCRYPTION_KEY", "nothex"), ("TENANT_DB_MAX_POOL_SIZE", "lots"), ("DATABASE_URL", "mysql://a@b/c"),
            ("MIGRATION_STRATEGY", "sometimes"), ("ENABLE_DUAL_WRITE", "perhaps"),
            // Read by the CLI only, still through TenantryConfiguration: an error, not a silent default.
            ("TENANTRY_LOG_LEVEL", "loud"), ("HANDYSHOP_JWT_SECRET", "short"), ("TENANTRY_SERVER_URL", "http://x"),
          ])
    func badEnvironment(_ name: String, _ value: String) async throws {
        let result = try await CLIRunner.run(["status"], environment: [name: value])
        #expect(result.status != 0)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains("error: \(name) must"))
        #expect(result.stdout.isEmpty)
    }

    @Test("status on a database without a catalog says to run init")
    func statusWithoutInit() async throws {
        let url = try await TestPostgres.makeDatabase("cli")
        let result = try await CLIRunner.run(["status"], environment: ["DATABASE_URL": url.urlStringWithPassword])
        #expect(result.status != 0)
        #expect(result.stderr.contains("tenantry init"))
    }

    @Test("an unreachable server: one clear line naming it, password hidden")
    func unreachable() async throws {
        let result = try await CLIRunner.run(
            ["status"], environment: ["DATABASE_URL": "postgres://app:topsecret@127.0.0.1:1/db"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot connect to postgres://app:***@127.0.0.1:1/db"), "\(result.stderr)")
        #expect(!result.stderr.contains("topsecret"))
    }

    @Test("--help lists the commands; keys generate prints a usable key")
    func help() async throws {
        let help = try await CLIRunner.run(["--help"])
        #expect(help.status == 0)
        for command in ["dev", "init", "status", "keys"] { #expect(help.stdout.contains(command)) }
        let key = try await CLIRunner.run(["keys", "generate"])
        #expect(key.status == 0 && key.lastLine.count == 64)
        let check = try await CLIRunner.run(["keys", "generate"], environment: ["TENANT_ENCRYPTION_KEY": key.lastLine])
        #expect(check.status == 0)
    }

    @Test("docs/cli.md documents every command the binary has (regenerate with scripts/cli-docs)")
    func referenceIsCurrent() async throws {
        let help = try await CLIRunner.run(["--help"])
        let commands = help.stdout.components(separatedBy: "SUBCOMMANDS:").last?.split(separator: "\n")
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") }
            .compactMap { $0.split(separator: " ").first.map(String.init) }
            .filter { $0.first?.isLowercase == true } ?? []
        #expect(commands.count > 20)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let reference = try String(contentsOf: root.appendingPathComponent("docs/cli.md"), encoding: .utf8)
        for command in commands {
            #expect(reference.contains("## tenantry \(command)\n"), "docs/cli.md lacks 'tenantry \(command)': run scripts/cli-docs")
        }
    }
}
