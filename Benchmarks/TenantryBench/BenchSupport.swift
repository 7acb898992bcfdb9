import EmbeddedPostgres
import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore

/// Shared pieces of the benchmarks: a private server, timing, and output.
enum Bench {
    static var logger: Logger {
        var logger = Logger(label: "tenantry.bench")
        logger.logLevel = .error
        return logger
    }

    /// Runs `body` against a throwaway PostgreSQL, stopped afterwards.
    static func withServer<T: Sendable>(
        settings: [String: String] = [:], _ body: (EmbeddedPostgres, PostgresURL) async throws -> T
    ) async throws -> T {
        let server = EmbeddedPostgres(configuration: .temporary(settings: ["max_connections": "400"].merging(settings) { $1 }))
        try await server.start()
        do {
            let result = try await body(server, try PostgresURL(server.url()))
            try await server.stop()
            return result
        } catch {
            try? await server.stop()
            throw error
        }
    }

    /// Seconds taken by `body`.
    static func time(_ body: () async throws -> Void) async rethrows -> Double {
        let start = ContinuousClock.now
        try await body()
        return (ContinuousClock.now - start).totalSeconds
    }

    /// Progress to standard error.
    static func note(_ text: String) {
        FileHandle.standardError.write(Data("tenantry-bench: \(text)\n".utf8))
    }

    /// Prints the result: a human summary on stderr, one JSON object as the last stdout line.
    static func report(_ fields: [String: any Sendable], json: Bool) throws {
        let data = try JSONSerialization.data(withJSONObject: fields.mapValues { $0 as Any }, options: [.sortedKeys])
        if !json {
            for (key, value) in fields.sorted(by: { $0.key < $1.key }) { print("\(key): \(value)") }
        }
        print(String(decoding: data, as: UTF8.self))
    }

    static func round(_ value: Double, _ places: Int = 3) -> Double {
        let factor = pow(10, Double(places))
        return (value * factor).rounded() / factor
    }
}
