import Foundation
import TenantryCore

/// Byte counts as people write them (`10GB`, `500MB`, `1.5 TB`) and read them (`12.1 GB`).
///
/// Units are powers of 1024, as PostgreSQL's `pg_size_pretty` counts them: `kB`/`KB`/`KiB`,
/// `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`; a number alone (or with `B`) is bytes. The one place that
/// parses and prints sizes for the CLI, the admin API and the rebalance plan.
public enum ByteSize {
    private static let units: [(names: [String], factor: Double)] = [
        (["", "b", "byte", "bytes"], 1),
        (["k", "kb", "kib"], 1024),
        (["m", "mb", "mib"], 1024 * 1024),
        (["g", "gb", "gib"], 1024 * 1024 * 1024),
        (["t", "tb", "tib"], 1024 * 1024 * 1024 * 1024),
    ]

    /// Parses `text` (`10GB`, `500 MB`, `1.5TB`, `1048576`); a clear error naming `what` when it
    /// is not a positive size.
    public static func parse(_ text: String, what: String = "size") throws -> Int64 {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        guard let number = Double(digits), number > 0, number.isFinite,
              let factor = units.first(where: { $0.names.contains(unit) })?.factor,
              number * factor < Double(Int64.max), (number * factor).rounded() >= 1 else {
            throw TenantryError(
                code: .invalidArgument,
                message: "\(what) '\(text.prefix(40))' is not a size: write a positive number with a unit, like 10GB, 500MB or 1.5TB")
        }
        return Int64((number * factor).rounded())
    }

    /// `bytes` for people: `512 B`, `7.5 MB`, `12.1 GB` (one decimal from MB up, powers of 1024).
    public static func format(_ bytes: Int64) -> String {
        let names = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(bytes)
        var index = 0
        while abs(value) >= 1024, index < names.count - 1 {
            value /= 1024
            index += 1
        }
        if index == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        let text = rounded == rounded.rounded() ? String(Int(rounded)) : String(format: "%.1f", rounded)
        return "\(text) \(names[index])"
    }
}
