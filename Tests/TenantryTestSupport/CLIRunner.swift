import EmbeddedPostgres
import Foundation

/// Runs the real `tenantry` executable built next to the test bundle.
public enum CLIRunner {
    /// The executable's path: `TENANTRY_BIN`, or `tenantry` beside the test runner.
    public static var binary: String {
        if let explicit = ProcessInfo.processInfo.environment["TENANTRY_BIN"] { return explicit }
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = runner.deletingLastPathComponent()
        // The runner may sit inside a bundle directory (…/X.xctest/…); walk up to the build dir.
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("tenantry").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return "tenantry"
    }

    /// The result of one run: exit status, standard output, standard error.
    public struct Result: Sendable {
        /// The exit status.
        public var status: Int32
        /// Standard output.
        public var stdout: String
        /// Standard error.
        public var stderr: String
        /// The last non-empty line of standard output.
        public var lastLine: String {
            stdout.split(separator: "\n").last.map(String.init) ?? ""
        }
    }

    /// Runs `tenantry arguments…` in `directory` with `environment` added to a minimal environment
    /// (PATH, HOME; none of the caller's TENANT_*/DATABASE_* variables leak in); `input`, when
    /// given, is its standard input.
    public static func run(
        _ arguments: [String], environment: [String: String] = [:], in directory: String? = nil, input: String? = nil
    ) async throws -> Result {
        let outFile = FileManager.default.temporaryDirectory.appendingPathComponent("cli-out-\(UUID().uuidString)").path
        let errFile = outFile + ".err"
        let inFile = outFile + ".in"
        defer {
            try? FileManager.default.removeItem(atPath: outFile)
            try? FileManager.default.removeItem(atPath: errFile)
            try? FileManager.default.removeItem(atPath: inFile)
        }
        if let input { try input.write(toFile: inFile, atomically: true, encoding: .utf8) }
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": "/tmp"]
        env.merge(environment) { $1 }
        let script = ([binary] + arguments).map(ProcessRunner.quote).joined(separator: " ")
            + " >\(ProcessRunner.quote(outFile)) 2>\(ProcessRunner.quote(errFile))"
            + (input == nil ? "" : " <\(ProcessRunner.quote(inFile))")
        let envArgs = env.map { "\($0.key)=\($0.value)" }
        var shell = "cd \(ProcessRunner.quote(directory ?? FileManager.default.currentDirectoryPath)) && exec \(script)"
        shell = "exec /usr/bin/env -i " + envArgs.map(ProcessRunner.quote).joined(separator: " ")
            + " /bin/sh -c \(ProcessRunner.quote(shell))"
        let output = try await ProcessRunner().run("/bin/sh", ["-c", shell])
        return Result(
            status: output.status,
            stdout: (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? "",
            stderr: ((try? String(contentsOfFile: errFile, encoding: .utf8)) ?? "") + output.text)
    }

    /// A new empty directory under /tmp (reachable by the `postgres` OS user).
    public static func makeDirectory() throws -> String {
        let path = "/tmp/tenantry-cli-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}
