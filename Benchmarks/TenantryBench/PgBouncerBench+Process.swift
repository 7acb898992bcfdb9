import EmbeddedPostgres
import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
#if canImport(Glibc)
import Glibc
#endif

/// A private PgBouncer for `tenantry-bench pgbouncer`: a generated config and `auth_file` in its
/// own temporary directory, listening on a free port of 127.0.0.1 (no unix socket), run as the
/// `postgres` OS user when this process is root, always stopped (and a watchdog stops it should
/// this process die first).
struct PgBouncer: Sendable {
    /// How the pooler is configured.
    struct Settings: Sendable {
        var defaultPoolSize = 2
        var maxDBConnections = 2
        /// 0: no cap per user (PgBouncer's default). It caps a user's server connections across
        /// databases only for a user clients log in as: a forced user (`user=` in `[databases]`) is
        /// a separate object per database in PgBouncer 1.18, capped per database.
        var maxUserConnections = 0
    }

    /// A client login: a user of the auth file and a database (the first login is tried at start).
    struct Login: Sendable {
        var user: String
        var password: String
        var database: String
    }

    let directory: String
    let port: Int
    let pid: pid_t

    static let package = "pgbouncer"
    static let osUser = "postgres"

    /// Runs `body` with a started PgBouncer in front of `server` for `databases`, whose clients log
    /// in with `logins` (user, password); the pooler is stopped afterwards, also on failure.
    static func with<T: Sendable>(
        server: PostgresURL, databases: [String], logins: [Login], settings: Settings,
        _ body: (PgBouncer) async throws -> T
    ) async throws -> T {
        let bouncer = try await start(server: server, databases: databases, logins: logins, settings: settings)
        do {
            let result = try await body(bouncer)
            await bouncer.stop()
            return result
        } catch {
            await bouncer.stop()
            throw error
        }
    }

    /// The `pgbouncer` executable; installs Debian's package with apt-get when it is missing and
    /// this process is root, else fails naming the package.
    static func executable() async throws -> String {
        func find() -> String? {
            ProcessRunner.which("pgbouncer") ?? ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
                .first { FileManager.default.isExecutableFile(atPath: $0) }
        }
        if let path = find() { return path }
        guard geteuid() == 0, let apt = ProcessRunner.which("apt-get") ?? ["/usr/bin/apt-get"].first(where: {
            FileManager.default.isExecutableFile(atPath: $0)
        }) else {
            throw TenantryError(code: .configuration, message: "pgbouncer not found: install the Debian package `\(package)` (apt-get install \(package))")
        }
        Bench.note("installing \(package) with apt-get…")
        let environment = ProcessRunner.minimalEnvironment(["DEBIAN_FRONTEND": "noninteractive"])
        var output = try await ProcessRunner().run(apt, ["install", "-y", "-q", package], environment: environment)
        if !output.succeeded {
            _ = try await ProcessRunner().run(apt, ["update", "-q"], environment: environment)
            output = try await ProcessRunner().run(apt, ["install", "-y", "-q", package], environment: environment)
        }
        guard output.succeeded, let path = find() else {
            throw TenantryError(code: .configuration, message: "apt-get install \(package) failed: install the Debian package `\(package)`")
        }
        return path
    }

    private static func start(
        server: PostgresURL, databases: [String], logins: [Login], settings: Settings
    ) async throws -> PgBouncer {
        let executable = try await executable()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenantry-pgbouncer-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let runner = ProcessRunner(user: osUser)
        do {
            var users: [String: String] = [:]
            for login in logins { users[login.user] = login.password }
            // Plain-text passwords: PgBouncer then does SCRAM with the clients and with the server.
            // The file lives only in this 0700 directory, removed on stop.
            try write(users.sorted { $0.key < $1.key }.map { "\(quote($0.key)) \(quote($0.value))" }.joined(separator: "\n") + "\n", to: "\(directory)/userlist.txt")
            var lastFailure = ""
            for _ in 0..<3 {
                let port = try freePort()
                try write(config(server: server, databases: databases, settings: settings, directory: directory, port: port), to: "\(directory)/pgbouncer.ini")
                if let user = runner.user { try chownTree(directory, to: user) }
                let output = try await runner.run(executable, ["-d", "-q", "\(directory)/pgbouncer.ini"], currentDirectory: directory)
                lastFailure = output.text + ((try? String(contentsOfFile: "\(directory)/pgbouncer.log", encoding: .utf8)) ?? "")
                guard output.succeeded, let pid = try await waitForPID(directory) else { continue }
                let bouncer = PgBouncer(directory: directory, port: port, pid: pid)
                try await bouncer.startWatchdog()
                if try await bouncer.waitUntilListening(logins.first) { return bouncer }
                await bouncer.stop(removing: false)
                lastFailure = (try? String(contentsOfFile: "\(directory)/pgbouncer.log", encoding: .utf8)) ?? ""
                guard lastFailure.contains("Address already in use") else { break }
            }
            throw TenantryError(code: .database, message: "pgbouncer did not start: \(lastFailure.split(separator: "\n").suffix(3).joined(separator: " | "))")
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    private static func config(server: PostgresURL, databases: [String], settings: Settings, directory: String, port: Int) -> String {
        let entries = databases.map { "\($0) = host=\(server.host) port=\(server.port) dbname=\($0)" }
        return """
            [databases]
            \(entries.joined(separator: "\n"))

            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(port)
            unix_socket_dir =
            auth_type = scram-sha-256
            auth_file = \(directory)/userlist.txt
            pool_mode = transaction
            default_pool_size = \(settings.defaultPoolSize)
            max_db_connections = \(settings.maxDBConnections)
            max_user_connections = \(settings.maxUserConnections)
            max_client_conn = 10000
            logfile = \(directory)/pgbouncer.log
            pidfile = \(directory)/pgbouncer.pid
            log_connections = 0
            log_disconnections = 0

            """
    }

    /// Stops the pooler (SIGTERM: immediate shutdown, server connections closed; SIGKILL after 5 s)
    /// and removes its directory. Stopping it again is a no-op.
    func stop() async { await stop(removing: true) }

    private func stop(removing: Bool) async {
        if Self.isAlive(pid) { kill(pid, SIGTERM) }
        for attempt in 0..<100 where Self.isAlive(pid) {
            if attempt == 50 { kill(pid, SIGKILL) }
            try? await Task.sleep(for: .milliseconds(100))
        }
        if removing { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// CPU seconds the pooler has used so far (user + system, from /proc; 0 when unreadable).
    func cpuSeconds() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        // After "pid (comm)": state is field 3, utime 14 and stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Whether `pid` runs (a zombie left to an init that does not reap counts as gone).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return !stat[close...].hasPrefix(") Z")
    }

    private func startWatchdog() async throws {
        let quoted = ProcessRunner.quote(directory)
        let script = "while kill -0 \(getpid()) 2>/dev/null && kill -0 \(pid) 2>/dev/null; do sleep 1; done; "
            + "if kill -0 \(pid) 2>/dev/null; then kill -TERM \(pid); sleep 5; kill -KILL \(pid) 2>/dev/null; rm -rf \(quoted); fi"
        try await ProcessRunner().spawnDetached(shellScript: script)
    }

    private static func waitForPID(_ directory: String) async throws -> pid_t? {
        for _ in 0..<50 {
            if let text = try? String(contentsOfFile: "\(directory)/pgbouncer.pid", encoding: .utf8),
               let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), isAlive(pid) {
                return pid
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    /// Logs in through the pooler (checks the auth file too) until it answers, for up to 10 s.
    private func waitUntilListening(_ login: Login?) async throws -> Bool {
        guard let login else { return true }
        for _ in 0..<100 where Self.isAlive(pid) {
            var configuration = PostgresConnection.Configuration(
                host: "127.0.0.1", port: port, username: login.user, password: login.password,
                database: login.database, tls: .disable)
            configuration.options.connectTimeout = .seconds(2)
            if let connection = try? await PostgresConnection.connect(configuration: configuration, id: 0, logger: Bench.logger) {
                defer { Task { try? await connection.close() } }
                if (try? await connection.query("SELECT 1", logger: Bench.logger)) != nil { return true }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    private static func quote(_ value: String) -> String { "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }

    private static func write(_ text: String, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw TenantryError(code: .database, message: "could not write \(path)")
        }
    }

    private static func chownTree(_ directory: String, to user: String) throws {
        guard let entry = getpwnam(user) else {
            throw TenantryError(code: .configuration, message: "no OS user \(user) to run pgbouncer as")
        }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for path in [directory] + files.map({ "\(directory)/\($0)" }) where chown(path, entry.pointee.pw_uid, entry.pointee.pw_gid) != 0 {
            throw TenantryError(code: .database, message: "could not chown \(path) to \(user)")
        }
    }

    /// A TCP port of 127.0.0.1 that is free right now (the kernel's pick for port 0).
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TenantryError(code: .database, message: "no socket for a free port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let found = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard found else { throw TenantryError(code: .database, message: "could not find a free TCP port on 127.0.0.1") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
