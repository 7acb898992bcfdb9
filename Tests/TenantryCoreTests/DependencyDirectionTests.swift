import Foundation
import Testing

/// Dependencies run one way (issue #13): the library `Tenantry` uses PostgresNIO, swift-log,
/// swift-metrics and swift-distributed-tracing (plus modules of PostgresNIO's own packages, hdrhistogram-swift for the
/// performance monitor, and the internal TenantryCore and PostgresTools); never Hummingbird,
/// Prometheus, the embedded server or the example app. Checked in Package.swift and in every import.
@Suite("dependency direction: what the library Tenantry may use")
struct DependencyDirectionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Modules a `Tenantry` source may import, each with its reason.
    static let allowedModules: [String: String] = [
        "Foundation": "platform", "Glibc": "platform", "Darwin": "platform",
        "TenantryCore": "internal: pure logic", "PostgresTools": "internal: pg_dump through ProcessRunner",
        "PostgresNIO": "the driver", "Logging": "swift-log", "Metrics": "swift-metrics",
        "NIOCore": "PostgresNIO's swift-nio (event loops, ByteBuffer)",
        "NIOConcurrencyHelpers": "PostgresNIO's swift-nio (locks)",
        "NIOPosix": "PostgresNIO's swift-nio (the socket of the copy's COPY TO session, which PostgresNIO cannot do)",
        "NIOSSL": "PostgresNIO's swift-nio-ssl (TLS to servers)",
        "NIOTLS": "PostgresNIO's swift-nio (the TLS handshake's end, for the COPY TO session's TLS)",
        "ServiceLifecycle": "PostgresNIO's swift-service-lifecycle (Service conformances)",
        "DequeModule": "PostgresNIO's swift-collections (pool wait queues)",
        "Histogram": "hdrhistogram-swift (the performance monitor's percentiles)",
        "Crypto": "TenantryCore's swift-crypto (catalog migration checksums, the COPY TO session's SCRAM login)",
        "Tracing": "swift-distributed-tracing (spans; exported only by the executable, issue #16)",
    ]

    /// Packages the `Tenantry` target's products may come from.
    static let allowedPackages: Set<String> = [
        "postgres-nio", "swift-log", "swift-metrics", "swift-nio", "swift-nio-ssl", "swift-service-lifecycle",
        "swift-collections", "hdrhistogram-swift", "swift-distributed-tracing",
    ]

    @Test("every import in Sources/Tenantry is an allowed module")
    func imports() throws {
        let directory = Self.root.appendingPathComponent("Sources/Tenantry")
        let files = try #require(FileManager.default.enumerator(atPath: directory.path)).compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        #expect(files.count > 50)
        for file in files {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for line in text.split(separator: "\n") where line.hasPrefix("import ") || line.contains(" import ") && line.hasPrefix("@") {
                let module = String(line.split(separator: " ").last ?? "")
                #expect(Self.allowedModules[module] != nil, "\(file): \(line)")
            }
        }
    }

    @Test("Package.swift: the Tenantry target depends on TenantryCore, PostgresTools and allowed packages only")
    func packageManifest() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let start = try #require(manifest.range(of: "name: \"Tenantry\",\n            dependencies: ["))
        let end = try #require(manifest.range(of: "swiftSettings", range: start.upperBound..<manifest.endIndex))
        let target = manifest[start.upperBound..<end.lowerBound]
        let packages = Set(target.components(separatedBy: "package: \"").dropFirst().compactMap { $0.split(separator: "\"").first.map(String.init) })
        #expect(packages.isSubset(of: Self.allowedPackages) && packages.contains("postgres-nio"), "\(packages.sorted())")
        let targets = Set(target.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("\"") }.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\",")) })
        #expect(targets == ["TenantryCore", "PostgresTools"], "\(targets.sorted())")
    }
}
