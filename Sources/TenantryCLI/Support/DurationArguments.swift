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

/// Parses a duration option: `500ms`, `2s`, `1.5s`, `3m`, or a number of seconds; `option` names
/// it in the error (`--timeout must be …`). Accepts 1 ms up to `maximum`.
func parseDuration(_ text: String, option: String, maximum: Duration = .seconds(3600)) throws -> Duration {
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    let milliseconds: Double?
    if trimmed.hasSuffix("ms") {
        milliseconds = Double(trimmed.dropLast(2))
    } else if trimmed.hasSuffix("s") {
        milliseconds = Double(trimmed.dropLast()).map { $0 * 1000 }
    } else if trimmed.hasSuffix("m") {
        milliseconds = Double(trimmed.dropLast()).map { $0 * 60_000 }
    } else {
        milliseconds = Double(trimmed).map { $0 * 1000 }
    }
    guard let milliseconds, milliseconds.isFinite, milliseconds >= 1, milliseconds <= maximum.totalMilliseconds else {
        throw TenantryError(
            code: .invalidArgument,
            message: "\(option) must be a duration like 500ms, 30s or 2m (1 ms to \(Int(maximum.totalSeconds)) s), not '\(text.prefix(40))'")
    }
    return .milliseconds(Int64(milliseconds.rounded()))
}
