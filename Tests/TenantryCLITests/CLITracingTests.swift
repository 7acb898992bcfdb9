import EmbeddedPostgres
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TenantryTestSupport
import Testing

/// A tiny OTLP/HTTP collector on a free local port: accepts `POST /v1/traces` (what swift-otel's
/// OTLP/HTTP exporter sends) and keeps the bodies (protobuf `ExportTraceServiceRequest`s).
struct OTLPCollector: Sendable {
    let bodies = NIOLockedValueBox<[[UInt8]]>([])

    /// Every body received so far, concatenated.
    var received: [UInt8] { bodies.withLockedValue { $0.flatMap { $0 } } }

    /// Runs `body` with the collector listening; its argument is the collector's base URL.
    func withRunning<Result: Sendable>(_ body: @Sendable (String) async throws -> Result) async throws -> Result {
        let bodies = self.bodies
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 64 << 20)
            bodies.withLockedValue { $0.append(Array(buffer.readableBytesView)) }
            return Response(status: .ok, headers: [.contentType: "application/x-protobuf"])
        }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "otlp-collector")
        logger.logLevel = .critical
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                continuation.yield(channel.localAddress?.port ?? 0)
                continuation.finish()
            }, logger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            defer { group.cancelAll() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            return try await body("http://127.0.0.1:\(port)")
        }
    }
}

@Suite("tenantry exports spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (CLI)", .timeLimit(.minutes(4)))
struct CLITracingTests {
    /// `tenantry.tenant_id` = `id` as protobuf puts it in a `KeyValue`: the key, then an `AnyValue`
    /// holding the string.
    static func tenantAttribute(_ id: String) -> [UInt8] {
        let key = Array("tenantry.tenant_id".utf8), value = Array(id.utf8)
        return [0x0A, UInt8(key.count)] + key + [0x12, UInt8(value.count + 2), 0x0A, UInt8(value.count)] + value
    }

    @Test("migrate-data of one tenant sends its spans (move.copy, move.capture) with the tenant id before exit; without the variable nothing is sent")
    func migrateDataSpans() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 20)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        let collector = OTLPCollector()
        try await collector.withRunning { endpoint in
            let traced = try await CLIRunner.run(
                ["migrate-data", "--tenant", "2"],
                environment: fixture.environment.merging(["OTEL_EXPORTER_OTLP_ENDPOINT": endpoint]) { $1 }, in: fixture.directory)
            #expect(traced.status == 0, "\(traced.stderr)")
            #expect(traced.stdout.hasPrefix("1 copied ("), "\(traced.stdout)")
            #expect(!traced.stderr.contains("warning") && !traced.stderr.contains("error"), "no export noise: \(traced.stderr)")
            // The exporter was shut down (so flushed) before the command exited: the spans are there now.
            let received = collector.received
            for name in ["tenantry.migrate-data", "move.copy", "move.capture", "tenantry", "service.name"] {
                #expect(received.contains(Array(name.utf8)), "the export names \(name)")
            }
            #expect(received.contains(Self.tenantAttribute("2")), "a span carries tenantry.tenant_id = 2")

            let before = collector.bodies.withLockedValue { $0.count }
            let untraced = try await fixture.run(["migrate-data", "--tenant", "1"])
            #expect(untraced.status == 0 && untraced.stdout.hasPrefix("1 copied ("), "\(untraced.stderr)")
            #expect(untraced.stderr.contains("] tenant 1: "), "progress as before: \(untraced.stderr)")
            #expect(collector.bodies.withLockedValue { $0.count } == before, "nothing is sent without OTEL_EXPORTER_OTLP_ENDPOINT")
            #expect(!collector.received.contains(Self.tenantAttribute("1")))
        }
    }

    @Test("handyshop serve: a request's routed query and the relay batch of a synced write are exported, the last ones at SIGTERM")
    func serveSpans() async throws {
        let fixture = try await CLIMoveFixture.make(shops: 2, rowsPerShop: 20)
        for step in [["schema", "derive"], ["init"], ["provision", "--all"], ["migrate-data", "--tenant", "1"]] {
            let result = try await fixture.run(step)
            try #require(result.status == 0, "\(step): \(result.stderr)")
        }
        let collector = OTLPCollector()
        try await collector.withRunning { endpoint in
            let stderrFile = "\(fixture.directory)/serve.err"
            func curl(_ arguments: [String]) async throws -> String {
                try await ProcessRunner().run(
                    "/usr/bin/curl", ["-s", "-H", "X-Tenant-ID: 1", "-H", "Content-Type: application/json"] + arguments).text
            }
            // As in CLIHandyShopTests: a port below the ephemeral range, another one if it is taken.
            var (server, port, ready) = (Process(), 0, false)
            defer { if server.isRunning { server.terminate() } }
            for _ in 0..<5 where !ready {
                port = Int.random(in: 20_000..<32_000)
                server = Process()
                server.executableURL = URL(fileURLWithPath: "/bin/sh")
                server.arguments = [
                    "-c", "exec \(ProcessRunner.quote(CLIRunner.binary)) handyshop serve --port \(port) 2>\(ProcessRunner.quote(stderrFile))",
                ]
                server.environment = fixture.environment.merging([
                    "PATH": "/usr/bin:/bin", "HOME": "/tmp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                    "OTEL_BSP_SCHEDULE_DELAY": "600000",  // nothing leaves before the shutdown's flush
                ]) { $1 }
                server.currentDirectoryURL = URL(fileURLWithPath: fixture.directory)
                try server.run()
                for _ in 0..<100 where !ready && server.isRunning {
                    ready = (try? await curl(["-f", "http://127.0.0.1:\(port)/customers?limit=1"]))?.contains("customers") == true
                    if !ready { try await Task.sleep(for: .milliseconds(200)) }
                }
                let notes = (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? ""
                if !ready && !notes.contains("Address already in use") { break }
            }
            try #require(ready, "handyshop serve did not answer: \((try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? "")")
            let created = try await curl([
                "-X", "POST", "http://127.0.0.1:\(port)/customers", "-d", #"{"firstName": "Tra", "lastName": "Ced", "email": "traced@example.com"}"#,
            ])
            #expect(created.contains("traced@example.com"), "\(created)")
            #expect(collector.received.isEmpty, "spans wait for the batch (schedule delay 600 s)")
            server.terminate()
            server.waitUntilExit()
            let received = collector.received
            for name in ["tenantry.query", "route.resolve", "pool.lease", "query", "relay.batch", "tenantry.relay.direction", "forward"] {
                #expect(received.contains(Array(name.utf8)), "the export at shutdown names \(name)")
            }
            #expect(received.contains(Self.tenantAttribute("1")), "spans carry tenantry.tenant_id = 1")
        }
    }

    @Test("a bad OTEL_EXPORTER_OTLP_ENDPOINT is one error line and exit 1")
    func badEndpoint() async throws {
        let result = try await CLIRunner.run(["status"], environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"])
        #expect(result.status == 1)
        #expect(result.stderr == "tenantry: error: OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL, e.g. http://localhost:4318\n",
                "\(result.stderr)")
    }
}

extension Array where Element == UInt8 {
    /// Whether `needle` occurs in the bytes.
    func contains(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        return (0...(count - needle.count)).contains { self[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}
