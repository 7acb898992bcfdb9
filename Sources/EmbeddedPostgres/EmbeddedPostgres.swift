@_exported import PostgresTools
import Foundation
import Logging
import NIOConcurrencyHelpers

/// A private PostgreSQL server for development, tests, the demo and benchmarks.
///
/// It runs `initdb` into ``Configuration/directory`` on first use, listens on 127.0.0.1 (a free
/// port) and on a unix socket, requires a SCRAM-SHA-256 password for TCP connections, and runs as
/// the `postgres` OS user when this process is root.
///
/// ```swift
/// let server = EmbeddedPostgres(configuration: .temporary())
/// try await server.start()
/// print(server.url(database: "postgres"))
/// try await server.stop()
/// ```
public final class EmbeddedPostgres: Sendable {
    /// The configuration this server was created with.
    public let configuration: Configuration
    private let state = NIOLockedValueBox<State?>(nil)
    private let logger: Logger

    /// Creates a handle; nothing happens on disk until ``start()``.
    public init(configuration: Configuration, logger: Logger = Logger(label: "tenantry.embedded-postgres")) {
        self.configuration = configuration
        self.logger = logger
    }

    var dataDirectory: String { "\(configuration.directory)/data" }
    var logFile: String { "\(configuration.directory)/server.log" }

    /// The server log (`log_statement`, errors, …).
    public var logFilePath: String { logFile }
    var stateFile: String { "\(configuration.directory)/server.json" }
    private var runner: ProcessRunner { ProcessRunner(user: configuration.osUserWhenRoot) }

    /// The TCP port the server listens on (after ``start()``).
    public var port: Int {
        get throws { try currentState().port }
    }

    /// The superuser's name.
    public var superuser: String { configuration.superuser }

    /// The superuser's password (after ``start()``). Keep it out of logs.
    public var password: String {
        get throws { try currentState().password }
    }

    /// The directory of the server's unix socket.
    public var socketDirectory: String {
        get throws { try currentState().socketDirectory }
    }

    /// A `postgres://` URL for `database` as the superuser over TCP.
    public func url(database: String = "postgres") throws -> String {
        let state = try currentState()
        let user = state.superuser.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? state.superuser
        let password = state.password.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        return "postgres://\(user):\(password)@127.0.0.1:\(state.port)/\(database)?sslmode=disable"
    }

    /// Starts the server, creating it first when the directory is new. Starting a server that is
    /// already running attaches to it. A `postmaster.pid` left by a killed server is removed.
    public func start() async throws {
        let binaries = try configuration.binaries ?? PostgresBinaries.locate()
        try prepareDirectory()
        var saved = loadState()
        if !FileManager.default.fileExists(atPath: "\(dataDirectory)/PG_VERSION") {
            saved = try await initialize(binaries: binaries)
        } else if saved == nil, configuration.adoptsDataDirectory {
            saved = try adoptDataDirectory()
        }
        guard var current = saved else {
            throw EmbeddedPostgresError(
                code: .startFailed,
                message: "\(stateFile) is missing or unreadable; remove \(configuration.directory) to start afresh")
        }
        if let running = try await runningPort(binaries: binaries) {
            current.port = running
            try saveState(current)
            state.withLockedValue { $0 = current }
            logger.debug("attached to running server", metadata: ["postgres.port": "\(running)"])
            return
        }
        removeStalePidFile()
        try writeSettings()
        var lastFailure = ""
        for attempt in 0..<3 {
            // The configured port, else the one used last time (stable URLs for dev), else a free one.
            let preferred = configuration.port ?? (current.port > 0 && FreePort.isFree(current.port) ? current.port : nil)
            let port = try (attempt == 0 ? preferred : nil) ?? FreePort.find()
            let timeout = Int(configuration.startTimeout.components.seconds)
            let output = try await runner.run(
                binaries.path(of: "pg_ctl"),
                ["-D", dataDirectory, "-l", logFile, "-w", "-t", "\(timeout)", "-o", "-p \(port)", "start"],
                currentDirectory: configuration.directory)
            if output.succeeded {
                current.port = port
                try saveState(current)
                state.withLockedValue { $0 = current }
                if configuration.stopWhenProcessExits { try await startWatchdog(binaries: binaries) }
                logger.debug("started embedded PostgreSQL", metadata: ["postgres.port": "\(port)"])
                return
            }
            lastFailure = output.text + "\n" + logTail()
            // Another process may have taken the port between choosing and binding: retry.
            guard lastFailure.contains("could not bind") || lastFailure.contains("Address already in use"),
                  configuration.port == nil else { break }
            _ = try? await runner.run(binaries.path(of: "pg_ctl"), ["-D", dataDirectory, "-m", "immediate", "stop"])
        }
        throw EmbeddedPostgresError(
            code: .startFailed,
            message: "PostgreSQL did not start in \(configuration.directory); see \(logFile)",
            details: lastFailure)
    }

    /// Stops the server (fast shutdown: open sessions are ended). Stopping a stopped server is a
    /// no-op. Removes the directory when ``Configuration/removeDirectoryOnStop`` is set.
    public func stop() async throws {
        let binaries = try configuration.binaries ?? PostgresBinaries.locate()
        if FileManager.default.fileExists(atPath: "\(dataDirectory)/postmaster.pid") {
            let output = try await runner.run(
                binaries.path(of: "pg_ctl"), ["-D", dataDirectory, "-m", "fast", "-w", "-t", "60", "stop"])
            if !output.succeeded, try await isRunning(binaries: binaries) {
                throw EmbeddedPostgresError(
                    code: .stopFailed, message: "PostgreSQL in \(configuration.directory) did not stop",
                    details: output.text)
            }
        }
        if configuration.removeDirectoryOnStop {
            try? FileManager.default.removeItem(atPath: configuration.directory)
        }
    }

    /// How ``restart(mode:)`` stops the server (`pg_ctl stop -m`).
    public struct StopMode: Sendable, Hashable, CustomStringConvertible {
        fileprivate let name: String
        /// Waits for every session to end.
        public static let smart = StopMode(name: "smart")
        /// Ends sessions, rolls back their transactions, checkpoints.
        public static let fast = StopMode(name: "fast")
        /// Quits at once, without a checkpoint: the next start runs crash recovery (for fault tests).
        public static let immediate = StopMode(name: "immediate")
        /// The `pg_ctl` name of the mode.
        public var description: String { name }
    }

    /// Stops the running server in `mode` and starts it again on the same port, so URLs stay
    /// valid (for fault tests: `.immediate` is a server crash, recovered on start). Open
    /// connections are ended either way.
    public func restart(mode: StopMode) async throws {
        let binaries = try configuration.binaries ?? PostgresBinaries.locate()
        let port = try currentState().port
        let stopped = try await runner.run(
            binaries.path(of: "pg_ctl"), ["-D", dataDirectory, "-m", mode.name, "-w", "-t", "60", "stop"])
        if !stopped.succeeded, try await isRunning(binaries: binaries) {
            throw EmbeddedPostgresError(
                code: .stopFailed, message: "PostgreSQL in \(configuration.directory) did not stop", details: stopped.text)
        }
        removeStalePidFile()
        var lastFailure = ""
        // The port was just released; a start can still find it briefly busy: retry on it.
        for _ in 0..<20 {
            let timeout = Int(configuration.startTimeout.components.seconds)
            let output = try await runner.run(
                binaries.path(of: "pg_ctl"),
                ["-D", dataDirectory, "-l", logFile, "-w", "-t", "\(timeout)", "-o", "-p \(port)", "start"],
                currentDirectory: configuration.directory)
            if output.succeeded { return }
            lastFailure = output.text + "\n" + logTail()
            guard lastFailure.contains("could not bind") || lastFailure.contains("Address already in use") else { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw EmbeddedPostgresError(
            code: .startFailed, message: "PostgreSQL did not start again in \(configuration.directory); see \(logFile)",
            details: lastFailure)
    }

    /// Kills the server's postmaster with SIGKILL, as a crash would (for fault tests). The
    /// `postmaster.pid` file stays behind.
    public func kill() throws {
        guard let pid = postmasterPID() else {
            throw EmbeddedPostgresError(code: .notRunning, message: "PostgreSQL is not running")
        }
        Foundation.kill(pid, SIGKILL)
    }

    /// Whether a server is running on this directory.
    public func isRunning() async throws -> Bool {
        try await isRunning(binaries: configuration.binaries ?? PostgresBinaries.locate())
    }

    // MARK: - Internals

    private func currentState() throws -> State {
        guard let state = state.withLockedValue({ $0 }) else {
            throw EmbeddedPostgresError(code: .notRunning, message: "the embedded PostgreSQL has not been started")
        }
        return state
    }

    private func isRunning(binaries: PostgresBinaries) async throws -> Bool {
        guard FileManager.default.fileExists(atPath: "\(dataDirectory)/PG_VERSION") else { return false }
        let output = try await runner.run(binaries.path(of: "pg_ctl"), ["-D", dataDirectory, "status"])
        return output.succeeded
    }

    /// The port of a server already running on this data directory, if there is one.
    private func runningPort(binaries: PostgresBinaries) async throws -> Int? {
        guard try await isRunning(binaries: binaries) else { return nil }
        // postmaster.pid: pid, data dir, start time, port, socket dir, listen address, …
        guard let text = try? String(contentsOfFile: "\(dataDirectory)/postmaster.pid", encoding: .utf8) else {
            return nil
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        return lines.count > 3 ? Int(lines[3].trimmingCharacters(in: .whitespaces)) : nil
    }

    private func postmasterPID() -> pid_t? {
        guard let text = try? String(contentsOfFile: "\(dataDirectory)/postmaster.pid", encoding: .utf8),
              let first = text.split(separator: "\n").first,
              let pid = pid_t(first.trimmingCharacters(in: .whitespaces)) else { return nil }
        return pid
    }

    /// Removes `postmaster.pid` when the process it names is gone (a crashed or killed server).
    private func removeStalePidFile() {
        let path = "\(dataDirectory)/postmaster.pid"
        guard FileManager.default.fileExists(atPath: path) else { return }
        if let pid = postmasterPID(), Foundation.kill(pid, 0) == 0 || errno == EPERM {
            // Alive: pg_ctl will report what it is. A recycled pid of an unrelated process is
            // handled by the postmaster itself, which checks the lock file's owner.
            return
        }
        logger.info("removing stale postmaster.pid", metadata: ["postgres.data": "\(dataDirectory)"])
        try? FileManager.default.removeItem(atPath: path)
    }

    private func prepareDirectory() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: configuration.directory, withIntermediateDirectories: true)
        guard let user = runner.user else { return }
        // The server runs as `user`: it needs the directory, and a way to reach it.
        try chown(configuration.directory, to: user)
        var parent = URL(fileURLWithPath: configuration.directory).deletingLastPathComponent()
        while parent.path != "/" {
            var info = stat()
            if stat(parent.path, &info) == 0, info.st_mode & 0o001 == 0, info.st_uid != passwdUID(user) {
                throw EmbeddedPostgresError(
                    code: .directoryNotAccessible,
                    message: "the '\(user)' OS user that runs PostgreSQL cannot reach \(configuration.directory): "
                        + "\(parent.path) is not traversable (chmod o+x it, or use a directory under /tmp)")
            }
            parent.deleteLastPathComponent()
        }
    }

    private func initialize(binaries: PostgresBinaries) async throws -> State {
        let password = configuration.password ?? Self.randomPassword()
        let passwordFile = "\(configuration.directory)/.pwfile"
        _ = FileManager.default.createFile(
            atPath: passwordFile, contents: Data(password.utf8), attributes: [.posixPermissions: 0o600])
        defer { try? FileManager.default.removeItem(atPath: passwordFile) }
        if let user = runner.user { try chown(passwordFile, to: user) }
        try? FileManager.default.removeItem(atPath: dataDirectory)
        let output = try await runner.run(
            binaries.path(of: "initdb"),
            ["-D", dataDirectory, "-U", configuration.superuser, "--pwfile=\(passwordFile)",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"],
            currentDirectory: configuration.directory)
        guard output.succeeded else {
            throw EmbeddedPostgresError(
                code: .initdbFailed, message: "initdb failed in \(dataDirectory)", details: output.text)
        }
        let conf = "\(dataDirectory)/postgresql.conf"
        let include = "\ninclude_if_exists = 'tenantry.conf'\n"
        if let handle = FileHandle(forWritingAtPath: conf) {
            handle.seekToEndOfFile()
            handle.write(Data(include.utf8))
            try? handle.close()
        }
        let state = State(
            superuser: configuration.superuser, password: password, port: 0,
            socketDirectory: socketDirectoryPath())
        try saveState(state)
        return state
    }

    /// Takes over a data directory made elsewhere (a restored base backup): owned by the server's
    /// OS user throughout, mode 0700, reached as the configured superuser and password.
    private func adoptDataDirectory() throws -> State {
        if let user = runner.user {
            guard let uid = passwdUID(user), let gid = passwdGID(user) else {
                throw EmbeddedPostgresError(
                    code: .directoryNotAccessible,
                    message: "the OS user '\(user)' does not exist; install the postgresql package, which creates it")
            }
            let paths = (FileManager.default.enumerator(atPath: dataDirectory)?.compactMap { $0 as? String } ?? [])
            for path in [dataDirectory] + paths.map({ "\(dataDirectory)/\($0)" }) where lchown(path, uid, gid) != 0 {
                throw EmbeddedPostgresError(code: .directoryNotAccessible, message: "could not chown \(path) to \(user)")
            }
        }
        chmod(dataDirectory, 0o700)
        let state = State(
            superuser: configuration.superuser, password: configuration.password ?? "", port: 0,
            socketDirectory: socketDirectoryPath())
        try saveState(state)
        return state
    }

    /// The unix socket directory: inside the server directory when its path is short enough
    /// (sockets paths are limited to 107 bytes), else a directory under /tmp.
    private func socketDirectoryPath() -> String {
        let inside = "\(configuration.directory)/sock"
        if inside.utf8.count < 90 { return inside }
        let name = String(UInt64(bitPattern: Int64(configuration.directory.hashValue)), radix: 36)
        return "/tmp/tenantry-sock-\(name)"
    }

    private func writeSettings() throws {
        guard let state = loadState() else { return }
        try FileManager.default.createDirectory(atPath: state.socketDirectory, withIntermediateDirectories: true)
        if let user = runner.user { try chown(state.socketDirectory, to: user) }
        var settings = configuration.settings
        settings["listen_addresses"] = "127.0.0.1"
        settings["unix_socket_directories"] = state.socketDirectory
        let lines = settings.sorted { $0.key < $1.key }.map { key, value in
            "\(key) = '\(value.replacingOccurrences(of: "'", with: "''"))'"
        }
        let path = "\(dataDirectory)/tenantry.conf"
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        if let user = runner.user { try chown(path, to: user) }
    }

    private func startWatchdog(binaries: PostgresBinaries) async throws {
        let (pgCtl, pgCtlArgs) = runner.commandLine(
            binaries.path(of: "pg_ctl"), ["-D", dataDirectory, "-m", "fast", "-w", "stop"])
        let quoted = ([pgCtl] + pgCtlArgs).map(ProcessRunner.quote).joined(separator: " ")
        var script = "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; \(quoted) >/dev/null 2>&1"
        if configuration.removeDirectoryOnStop {
            script += "; rm -rf \(ProcessRunner.quote(configuration.directory))"
        }
        try await ProcessRunner().spawnDetached(shellScript: script)
    }

    private func loadState() -> State? {
        guard let data = FileManager.default.contents(atPath: stateFile) else { return nil }
        return try? JSONDecoder().decode(State.self, from: data)
    }

    private func saveState(_ state: State) throws {
        let data = try JSONEncoder().encode(state)
        _ = FileManager.default.createFile(atPath: stateFile, contents: data, attributes: [.posixPermissions: 0o600])
    }

    private func logTail() -> String {
        guard let text = try? String(contentsOfFile: logFile, encoding: .utf8) else { return "" }
        return text.split(separator: "\n").suffix(20).joined(separator: "\n")
    }

    private func chown(_ path: String, to user: String) throws {
        guard let uid = passwdUID(user), let gid = passwdGID(user) else {
            throw EmbeddedPostgresError(
                code: .directoryNotAccessible,
                message: "the OS user '\(user)' does not exist; install the postgresql package, which creates it")
        }
        if Glibc.chown(path, uid, gid) != 0 {
            throw EmbeddedPostgresError(code: .directoryNotAccessible, message: "could not chown \(path) to \(user)")
        }
    }

    private func passwdUID(_ user: String) -> uid_t? { getpwnam(user).map { $0.pointee.pw_uid } }
    private func passwdGID(_ user: String) -> gid_t? { getpwnam(user).map { $0.pointee.pw_gid } }

    static func randomPassword() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

}
