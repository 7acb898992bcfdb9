import EmbeddedPostgres
import Foundation
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry sync run: a service under a ServiceGroup", .timeLimit(.minutes(3)))
struct CLISyncTests {
    @Test("SIGTERM and SIGINT stop the relay gracefully: exit 0, not killed by the signal; what was captured is applied", arguments: ["TERM", "INT"])
    func gracefulShutdown(_ signal: String) async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 20)
        for arguments in [["schema", "derive"], ["init"], ["provision", "--all"], ["migrate-data", "--all"]] {
            let step = try await fixture.run(arguments)
            try #require(step.status == 0, "\(arguments): \(step.stderr)")
        }
        _ = try await TestPostgres.strings(fixture.url, "UPDATE customers SET notes = 'while syncing' WHERE shop_id = 1 RETURNING 'x'")
        let (status, stderr) = try await fixture.runSignalled(["sync", "run"], signal: signal, after: 2.5)
        #expect(status == 0, "a graceful stop exits 0 (143/130 would be the signal's default): \(stderr)")
        #expect(stderr.contains("relay running"), "\(stderr)")
        #expect(try await fixture.differences(try TenantID("1")) == [], "the change captured before the signal was applied")
    }
}

extension CLIMoveFixture {
    /// ``runSignalled(_:environment:directory:signal:after:)`` in this fixture's directory and environment.
    func runSignalled(_ arguments: [String], signal: String, after seconds: Double) async throws -> (Int32, String) {
        try await TenantryCLITests.runSignalled(arguments, environment: environment, directory: directory, signal: signal, after: seconds)
    }
}

/// Starts `tenantry arguments…` in `directory` with only `environment` (plus PATH and HOME), sends
/// it SIG`signal` after `seconds`, waits for it, and returns its exit status (128 + the signal when
/// the signal killed it) and standard error.
func runSignalled(
    _ arguments: [String], environment: [String: String], directory: String, signal: String, after seconds: Double
) async throws -> (Int32, String) {
    let envArgs = environment.merging(["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": "/tmp"]) { $1 }
        .map { ProcessRunner.quote("\($0.key)=\($0.value)") }.joined(separator: " ")
    let log = directory + "/signalled-\(UUID().uuidString.prefix(6)).log"
    let command = "cd \(ProcessRunner.quote(directory)) && env -i \(envArgs) "
        + ([CLIRunner.binary] + arguments).map(ProcessRunner.quote).joined(separator: " ")
        + " >/dev/null 2>\(ProcessRunner.quote(log)) & pid=$!; sleep \(String(format: "%.2f", seconds)); "
        + "kill -\(signal) $pid 2>/dev/null; wait $pid; echo status=$?"
    let output = try await ProcessRunner().run("/bin/sh", ["-c", command])
    let status = Int32(output.text.components(separatedBy: "status=").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
    return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
}
