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

    /// Notes for a library operation's progress events: `[2/5] tenant 7: <message>`, followed by
    /// ` — <detail>` when `detail` is given; an event without a tenant is noted as it is. `nil`
    /// (no notes) when `quiet`.
    static func progress(quiet: Bool, detail: (@Sendable (OperationProgress) -> String)? = nil) -> ProgressHandler? {
        guard !quiet else { return nil }
        return { event in
            guard let tenant = event.tenant else { return note(event.message) }
            note("[\(event.done)/\(event.total)] tenant \(tenant): \(event.message)" + (detail.map { " — \($0(event))" } ?? ""))
        }
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
    } catch is CancellationError {
        // SIGTERM or SIGINT under a ServiceGroup: the work was stopped gracefully.
        Output.note("stopped by a signal before the end")
        throw ExitCode.failure
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
