import Foundation
import TenantryCore

/// Parses `500ms`, `2s` or a number of milliseconds.
func parsePause(_ text: String) throws -> Duration {
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    let value: Double?
    if trimmed.hasSuffix("ms") {
        value = Double(trimmed.dropLast(2))
    } else if trimmed.hasSuffix("s") {
        value = Double(trimmed.dropLast()).map { $0 * 1000 }
    } else {
        value = Double(trimmed)
    }
    guard let value, value >= 1, value <= 600_000 else {
        throw TenantryError(code: .invalidArgument, message: "--max-pause must be a duration like 500ms or 2s (1 ms to 10 min)")
    }
    return .milliseconds(Int64(value))
}

/// Parses `1,2,4` (seconds) into durations.
func parseDelays(_ text: String) throws -> [Duration] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap(Double.init)
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 && $0 <= 3600 }) else {
        throw TenantryError(code: .invalidArgument, message: "--retry-delays must be seconds separated by commas, like 1,2,4")
    }
    return values.map { .milliseconds(Int64($0 * 1000)) }
}
