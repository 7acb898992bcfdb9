import Foundation
import TenantryTestSupport
import Testing

@Suite("tenantry with an unreachable OTLP collector (CLI)", .timeLimit(.minutes(4)))
struct CLITracingUnreachableTests {
    @Test("the command succeeds as before and its exit waits a few seconds at most for the collector, not the exporter's timeout")
    func unreachableCollector() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 20)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        let untracedStart = ContinuousClock.now
        let untraced = try await fixture.run(["migrate-data", "--tenant", "1"])
        let untracedTime = ContinuousClock.now - untracedStart
        #expect(untraced.status == 0, "\(untraced.stderr)")
        // Nothing listens on port 9 (discard): the exporter retries for about 10 s before it gives up.
        let started = ContinuousClock.now
        let traced = try await CLIRunner.run(
            ["migrate-data", "--tenant", "2"],
            environment: fixture.environment.merging(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"]) { $1 },
            in: fixture.directory)
        let tracedTime = ContinuousClock.now - started
        #expect(traced.status == 0 && traced.stdout.hasPrefix("1 copied ("), "\(traced.stdout) \(traced.stderr)")
        #expect(traced.stderr.contains("tenantry: tracing: the collector did not take the last spans within 3.0 seconds; they were dropped\n"),
                "\(traced.stderr)")
        #expect(tracedTime - untracedTime < .seconds(8), "the exit waited \(tracedTime - untracedTime) longer than without tracing")
    }
}
