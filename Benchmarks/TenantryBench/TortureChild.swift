import EmbeddedPostgres
import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// The real `tenantry` executable, run as a child process of the torture: started with
/// `posix_spawn` (every descriptor above 2 closed, output to a file: a grandchild such as
/// `pg_dump` that outlives a killed parent keeps nothing of ours open), awaited with `waitpid`
/// on a thread, killed with SIGKILL when asked.
struct TenantryChild: Sendable {
    /// The `tenantry` executable.
    let binary: String
    /// The complete environment of the child.
    let environment: [String: String]
    /// The working directory (migrations/, archives/).
    let directory: String

    /// `tenantry` in the directory of this executable (the same build directory).
    static func locate() -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        return me.deletingLastPathComponent().appendingPathComponent("tenantry").path
    }

    /// Warns about a `tenantry` binary built well before this `tenantry-bench` (`swift build
    /// --product tenantry-bench` alone leaves the other one as it was): an older CLI against the
    /// newer code's databases tests the wrong thing. A torture run with one a day older reported
    /// lost writes (that CLI turned capture on the way it did before the list triggers). A warning,
    /// not a refusal: an incremental build relinks only what changed.
    static func warnIfOlder(_ binary: String) {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        let files = FileManager.default
        guard let mine = (try? files.attributesOfItem(atPath: me))?[.modificationDate] as? Date,
              let its = (try? files.attributesOfItem(atPath: binary))?[.modificationDate] as? Date,
              mine.timeIntervalSince(its) > 15 * 60 else { return }
        Bench.note("WARNING: \(binary) was built \(Int(mine.timeIntervalSince(its) / 60)) min before tenantry-bench; "
            + "if the library changed since, rebuild it (swift build --product tenantry, same configuration)")
    }

    /// One finished run.
    struct Outcome: Sendable {
        var status: Int32
        var output: String
        var seconds: Double
        /// Killed by our SIGKILL while it was still running.
        var killed: Bool
        var succeeded: Bool { status == 0 }
        /// The last line of output, for one-line progress.
        var lastLine: String {
            output.split(separator: "\n").last.map { String($0.prefix(160)) } ?? ""
        }
    }

    /// A started child.
    final class Running: Sendable {
        let pid: pid_t
        let outputPath: String
        let started = ContinuousClock.now
        private let exitStatus = NIOLockedValueBox<Int32?>(nil)
        private let killedBox = NIOLockedValueBox(false)

        init(pid: pid_t, outputPath: String) {
            self.pid = pid
            self.outputPath = outputPath
            let box = exitStatus
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1, errno == EINTR {}
                let exited = status & 0x7f == 0
                box.withLockedValue { $0 = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f) }
            }
        }

        /// The exit status, once it has ended.
        var status: Int32? { exitStatus.withLockedValue { $0 } }

        /// Waits until the child ends, or `timeout` passes (then `nil`).
        func wait(timeout: Duration? = nil) async -> Int32? {
            let deadline = timeout.map { ContinuousClock.now + $0 }
            while true {
                if let status { return status }
                if let deadline, ContinuousClock.now >= deadline { return nil }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }

        /// SIGKILL, if it still runs; whether it did (a kill point).
        @discardableResult
        func kill() -> Bool {
            guard status == nil else { return false }
            killedBox.withLockedValue { $0 = true }
            return Glibc.kill(pid, SIGKILL) == 0
        }

        /// Waits for the end and collects the outcome.
        func finish() async -> Outcome {
            let status = await wait() ?? -1
            let data = FileManager.default.contents(atPath: outputPath) ?? Data()
            unlink(outputPath)
            let killed = killedBox.withLockedValue { $0 } && status == 128 + SIGKILL
            return Outcome(
                status: status, output: String(decoding: data, as: UTF8.self),
                seconds: (ContinuousClock.now - started).totalSeconds, killed: killed)
        }
    }

    /// Starts `tenantry arguments…`.
    func start(_ arguments: [String]) throws -> Running {
        let outputPath = directory + "/child-\(UUID().uuidString.prefix(8)).out"
        let pid: pid_t
        do {
            pid = try ProcessRunner.spawn(binary, arguments, environment: environment, currentDirectory: directory, outputPath: outputPath)
        } catch {
            throw TortureError("could not run \(binary): \(error)")
        }
        return Running(pid: pid, outputPath: outputPath)
    }

    /// Runs to the end (an hour at most).
    func run(_ arguments: [String]) async throws -> Outcome {
        let child = try start(arguments)
        if await child.wait(timeout: .seconds(3600)) == nil { child.kill() }
        return await child.finish()
    }
}

/// A failure of the torture harness itself (not a finding).
struct TortureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
