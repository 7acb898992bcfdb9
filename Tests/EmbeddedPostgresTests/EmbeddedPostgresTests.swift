import EmbeddedPostgres
import Foundation
import Testing

@Suite("EmbeddedPostgres", .timeLimit(.minutes(3)))
struct EmbeddedPostgresTests {
    /// Runs `psql -tAc sql` against `url` and returns its trimmed output.
    func psql(_ url: String, _ sql: String) async throws -> String {
        let output = try await ProcessRunner().run("/usr/bin/psql", [url, "-tAc", sql])
        #expect(output.succeeded, "psql failed: \(output.text)")
        return output.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("start, query over TCP with the password, stop: no process left, directory removed")
    func startQueryStop() async throws {
        let server = EmbeddedPostgres(configuration: .temporary())
        try await server.start()
        #expect(try await server.isRunning())
        let url = try server.url()
        #expect(url.hasPrefix("postgres://postgres:"))
        #expect(try await psql(url, "select 40 + 2") == "42")
        #expect(try await psql(url, "show listen_addresses") == "127.0.0.1")
        // TCP needs the password: a wrong one is refused (scram-sha-256 in pg_hba.conf).
        let wrong = url.replacingOccurrences(of: try server.password, with: "wrong")
        let refused = try await ProcessRunner().run("/usr/bin/psql", [wrong, "-tAc", "select 1"])
        #expect(!refused.succeeded)
        #expect(refused.text.contains("password authentication failed"))
        // The unix socket works too.
        let socket = try await ProcessRunner().run(
            "/usr/bin/psql", ["-h", try server.socketDirectory, "-p", "\(try server.port)", "-U", "postgres", "-tAc", "select 7"])
        #expect(socket.text.trimmingCharacters(in: .whitespacesAndNewlines) == "7", "\(socket.text)")
        try await server.stop()
        #expect(try await !server.isRunning())
        #expect(!FileManager.default.fileExists(atPath: server.configuration.directory))
    }

    @Test("restart keeps data; settings apply on start")
    func restartKeepsData() async throws {
        var configuration = EmbeddedPostgres.Configuration.temporary(settings: ["max_connections": "37"])
        configuration.removeDirectoryOnStop = false
        let server = EmbeddedPostgres(configuration: configuration)
        defer { try? FileManager.default.removeItem(atPath: configuration.directory) }
        try await server.start()
        #expect(try await psql(server.url(), "show max_connections") == "37")
        _ = try await psql(server.url(), "create table kept (v int); insert into kept values (5)")
        try await server.stop()
        try await server.start()
        #expect(try await psql(server.url(), "select v from kept") == "5")
        try await server.stop()
    }

    @Test("restart(mode: .immediate): same port and URL, committed rows survive crash recovery")
    func immediateRestart() async throws {
        let server = EmbeddedPostgres(configuration: .temporary(settings: ["synchronous_commit": "on"]))
        try await server.start()
        let url = try server.url()
        let port = try server.port
        _ = try await psql(url, "create table survived (v int); insert into survived values (7)")
        try await server.restart(mode: .immediate)
        #expect(try server.port == port)
        #expect(try server.url() == url)
        #expect(try await psql(url, "select v from survived") == "7")
        let log = try String(contentsOfFile: server.logFilePath, encoding: .utf8)
        #expect(log.contains("immediate shutdown"), "the server stopped without a checkpoint")
        #expect(log.contains("not properly shut down") || log.contains("automatic recovery"), "the start ran crash recovery")
        try await server.stop()
    }

    @Test("a killed server leaves a stale postmaster.pid; start recovers")
    func stalePidFile() async throws {
        // Durable commits for this one: the test kills the server right after committing.
        let server = EmbeddedPostgres(configuration: .temporary(settings: ["synchronous_commit": "on", "fsync": "on"]))
        try await server.start()
        _ = try await psql(server.url(), "create table survived (v int)")
        _ = try await psql(server.url(), "insert into survived values (1)")
        try server.kill()
        // Wait for the postmaster to be gone.
        let pidFile = server.configuration.directory + "/data/postmaster.pid"
        for _ in 0..<100 where try await server.isRunning() { try await Task.sleep(for: .milliseconds(100)) }
        #expect(FileManager.default.fileExists(atPath: pidFile))
        try await server.start()
        #expect(try await psql(server.url(), "select v from survived") == "1")
        try await server.stop()
    }

    @Test("a postmaster.pid naming a dead process is removed")
    func fabricatedStalePid() async throws {
        var configuration = EmbeddedPostgres.Configuration.temporary()
        configuration.removeDirectoryOnStop = false
        let server = EmbeddedPostgres(configuration: configuration)
        defer { try? FileManager.default.removeItem(atPath: configuration.directory) }
        try await server.start()
        try await server.stop()
        // A pid that cannot be alive (above pid_max) plus plausible remaining lines.
        let pidFile = configuration.directory + "/data/postmaster.pid"
        try "99999999\n\(configuration.directory)/data\n0\n5432\n/tmp\n127.0.0.1\n".write(
            toFile: pidFile, atomically: true, encoding: .utf8)
        try await server.start()
        #expect(try await psql(server.url(), "select 1") == "1")
        try await server.stop()
    }

    @Test("two servers at once, on different ports, independent")
    func twoServers() async throws {
        let a = EmbeddedPostgres(configuration: .temporary())
        let b = EmbeddedPostgres(configuration: .temporary())
        async let startA: Void = a.start()
        async let startB: Void = b.start()
        _ = try await (startA, startB)
        #expect(try a.port != b.port)
        _ = try await psql(a.url(), "create database only_in_a")
        #expect(try await psql(a.url(), "select count(*) from pg_database where datname = 'only_in_a'") == "1")
        #expect(try await psql(b.url(), "select count(*) from pg_database where datname = 'only_in_a'") == "0")
        try await a.stop()
        #expect(try await psql(b.url(), "select 2") == "2")
        try await b.stop()
    }

    @Test("starting a running server attaches to it")
    func attach() async throws {
        let server = EmbeddedPostgres(configuration: .temporary())
        try await server.start()
        let second = EmbeddedPostgres(configuration: server.configuration)
        try await second.start()
        #expect(try second.port == server.port)
        #expect(try second.password == server.password)
        try await server.stop()
    }

    @Test("missing binaries: one error naming the package to install")
    func missingBinaries() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("no-pg-\(UUID().uuidString)").path
        let error = #expect(throws: EmbeddedPostgresError.self) {
            try PostgresBinaries.locate(environment: ["PATH": empty], libraryRoot: empty)
        }
        #expect(error?.code == .binariesNotFound)
        #expect(error?.description.contains("apt-get install postgresql") == true)
        let explicit = #expect(throws: EmbeddedPostgresError.self) {
            try PostgresBinaries.locate(environment: ["TENANTRY_PG_BIN": empty])
        }
        #expect(explicit?.description.contains("TENANTRY_PG_BIN") == true)
    }

    @Test("binaries are found under /usr/lib/postgresql/*/bin without PATH")
    func locatesDebianLayout() throws {
        let binaries = try PostgresBinaries.locate(environment: ["PATH": "/nonexistent"])
        #expect(binaries.directory.hasPrefix("/usr/lib/postgresql/"))
        #expect(FileManager.default.isExecutableFile(atPath: binaries.path(of: "initdb")))
    }
}
