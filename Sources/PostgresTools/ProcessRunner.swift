import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs external programs (initdb, pg_ctl, pg_dump …) and collects their output.
///
/// Programs are started with `posix_spawn` and awaited with `waitpid` on a background thread,
/// with every descriptor above 2 closed in the child. (Foundation's `Process` learns of the end of
/// a child through a descriptor the child inherits; a server that `pg_ctl start` forks keeps it
/// open, and the wait would never end.) Output goes to a temporary file, not a pipe, for the same
/// reason.
public struct ProcessRunner: Sendable {
    /// The outcome of one finished program.
    public struct Output: Sendable {
        /// The exit status (128 + the signal number when the program was killed by a signal).
        public var status: Int32
        /// Standard output and standard error, interleaved in the order they were written.
        public var text: String
        /// Whether the program exited normally with status 0.
        public var succeeded: Bool { status == 0 }
    }

    /// The OS user to run programs as, through `runuser`, when the current process is root.
    public var user: String?

    /// Creates a runner; `user` is honoured only when the current process runs as root.
    public init(user: String? = nil) {
        self.user = geteuid() == 0 ? user : nil
    }

    /// The executable and arguments that actually run, wrapped in `runuser` when needed.
    public func commandLine(_ executable: String, _ arguments: [String]) -> (String, [String]) {
        guard let user else { return (executable, arguments) }
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/runuser"
        return (runuser, ["-u", user, "--", executable] + arguments)
    }

    /// Variables a child program may inherit from this process: where programs are, the home
    /// directory, locale and time zone. Nothing else: the parent's environment holds secrets
    /// (`TENANT_ENCRYPTION_KEY`, `TENANTRY_ADMIN_TOKEN`, `POSTGRES_SUPERUSER_PASSWORD`, …) that a
    /// child (pg_dump, pg_ctl and the server it starts) must never see.
    public static let inheritedVariables: Set<String> = ["PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR"]

    /// The environment of a child program: the ``inheritedVariables`` (and `LC_*`) of `base`, plus
    /// `extra` (for example `PGPASSWORD` for the one login the program needs).
    public static func minimalEnvironment(
        _ extra: [String: String] = [:], from base: [String: String] = ProcessInfo.processInfo.environment
    ) -> [String: String] {
        var environment = base.filter { inheritedVariables.contains($0.key) || $0.key.hasPrefix("LC_") }
        if environment["PATH"] == nil { environment["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        environment.merge(extra) { $1 }
        return environment
    }

    /// Runs a program to completion and returns its status and output. Without `environment` the
    /// program gets ``minimalEnvironment(_:from:)`` (never this process's whole environment).
    public func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        currentDirectory: String? = nil
    ) async throws -> Output {
        let (path, args) = commandLine(executable, arguments)
        let outputPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("tenantry-proc-\(UUID().uuidString)").path
        defer { unlink(outputPath) }
        let pid = try Self.spawn(
            path, args, environment: environment, currentDirectory: currentDirectory ?? "/tmp", outputPath: outputPath)
        let status = await Self.wait(for: pid)
        let data = FileManager.default.contents(atPath: outputPath) ?? Data()
        return Output(status: status, text: String(decoding: data, as: UTF8.self))
    }

    /// Starts a shell script in the background, detached from this process (it keeps running
    /// after this process exits), and does not wait for it.
    public func spawnDetached(shellScript script: String) async throws {
        // The outer shell starts the script in its own session and exits at once.
        let pid = try Self.spawn(
            "/bin/sh", ["-c", "setsid /bin/sh -c \(Self.quote(script)) >/dev/null 2>&1 </dev/null &"],
            environment: nil, currentDirectory: "/tmp", outputPath: "/dev/null")
        _ = await Self.wait(for: pid)
    }

    /// Finds an executable by name on `PATH`.
    public static func which(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        let path = path ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Quotes a string for `/bin/sh`.
    public static func quote(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    // MARK: - posix_spawn

    /// Starts `path` with `arguments` (standard input from /dev/null, standard output and error to
    /// `outputPath`, no other descriptor inherited, `environment` or the minimal one) and returns its
    /// pid without waiting: for a caller that signals or waits for the child itself.
    public static func spawn(
        _ path: String, _ arguments: [String], environment: [String: String]?, currentDirectory: String, outputPath: String
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // glibc extensions the Glibc module does not import; looked up at run time.
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        if let addChdir = Self.addChdir { _ = addChdir(&actions, currentDirectory) }

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let env = (environment ?? Self.minimalEnvironment()).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { env.forEach { free($0) } }

        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, nil, argv, env)
        guard result == 0 else {
            throw EmbeddedPostgresError(
                code: .commandFailed, message: "could not run \(path): \(String(cString: strerror(result)))")
        }
        return pid
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32

    private static let addCloseFrom: AddCloseFrom? = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }
    private static let addChdir: AddChdir? = dlsym(nil, "posix_spawn_file_actions_addchdir_np")
        .map { unsafeBitCast($0, to: AddChdir.self) }

    private static func wait(for pid: pid_t) async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1, errno == EINTR {}
                let exited = status & 0x7f == 0
                continuation.resume(returning: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }
        }
    }
}
