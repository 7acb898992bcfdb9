import ArgumentParser
import Foundation
import Tenantry
import TenantryCore

/// How commands print: results to standard output, notes and errors to standard error.
enum Output {
    /// A line of human-readable result.
    static func line(_ text: String) {
        print(text)
    }

    /// A note to standard error (progress, hints).
    static func note(_ text: String) {
        FileHandle.standardError.write(Data("tenantry: \(text)\n".utf8))
    }

    /// One JSON object on one line (keys sorted, so output is stable).
    static func json<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}

/// Runs a command body; any error becomes one line on standard error and a non-zero exit.
func runCommand(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as CleanExit {
        throw error
    } catch {
        Output.note("error: \(userMessage(for: error))")
        throw ExitCode.failure
    }
}

/// A one-line message for any error, safe to print.
func userMessage(for error: any Error) -> String {
    let text = Database.message(of: error)
    return text.split(separator: "\n").first.map(String.init) ?? text
}
