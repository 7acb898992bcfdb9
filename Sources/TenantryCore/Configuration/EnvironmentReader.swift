import Foundation

/// Reads and validates single environment variables; every failure names its variable.
struct EnvironmentReader {
    let environment: [String: String]

    /// The value, or `nil` when unset or empty.
    func string(_ name: String) -> String? {
        guard let value = environment[name], !value.isEmpty else { return nil }
        return value
    }

    func url(_ name: String) throws(TenantryError) -> PostgresURL? {
        guard let text = string(name) else { return nil }
        return try PostgresURL(text, variable: name)
    }

    func integer(_ name: String, in range: ClosedRange<Int>) throws(TenantryError) -> Int? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else {
            throw TenantryError(
                code: .configuration,
                message: "\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    func milliseconds(_ name: String, minimum: Int) throws(TenantryError) -> Duration? {
        guard let text = string(name) else { return nil }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= minimum, value <= 86_400_000 else {
            throw TenantryError(
                code: .configuration,
                message: "\(name) must be a whole number of milliseconds from \(minimum) to 86400000")
        }
        return .milliseconds(value)
    }

    func boolean(_ name: String) throws(TenantryError) -> Bool? {
        guard let text = string(name) else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw TenantryError(code: .configuration, message: "\(name) must be true or false")
        }
    }

    func identifier(_ name: String, what: String) throws(TenantryError) -> String? {
        guard let text = string(name) else { return nil }
        do {
            try SQLIdentifier.validateName(text, what: name)
        } catch {
            throw TenantryError(
                code: .configuration,
                message: "\(name) must be \(what): 1-63 characters of a-z, 0-9 and _, not starting with a digit")
        }
        return text
    }

    func nameTemplate(_ name: String) throws(TenantryError) -> String? {
        guard let text = string(name) else { return nil }
        let sample = text.replacingOccurrences(of: "{id}", with: String(repeating: "9", count: TenantID.maximumLength))
        let valid = text.contains("{id}") && (try? SQLIdentifier.validateName(sample, what: name)) != nil
        guard valid else {
            throw TenantryError(
                code: .configuration,
                message: "\(name) must contain {id} and make names of a-z, 0-9 and _ (at most 63 characters with a 40-character id), e.g. shop_{id}_db")
        }
        return text
    }
}
