import Crypto
import Foundation

/// One fleet migration: a `V<n>__<name>.sql` file with its checksum.
public struct MigrationFile: Sendable, Equatable, Codable {
    /// The version `n`.
    public var version: Int
    /// The name part (`add_notes`).
    public var name: String
    /// The file name.
    public var fileName: String
    /// The SQL text.
    public var sql: String
    /// SHA-256 of the file's bytes, hex.
    public var checksum: String

    /// Creates one from its text (the checksum is computed).
    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.fileName = "V\(version)__\(name).sql"
        self.sql = sql
        self.checksum = SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The statements of the file (validated on load).
    public func statements() throws(TenantryError) -> [String] {
        do {
            return try SQLScript.statements(sql)
        } catch {
            throw TenantryError(code: .invalidArgument, message: "\(fileName): \(error.message)")
        }
    }

    /// Loads every `V<n>__<name>.sql` file of `directory`, sorted by version. Other `.sql` names,
    /// duplicate versions and files whose quoting is unterminated are refused (one error naming
    /// the file); files that are not `.sql` are ignored.
    public static func load(directory: String) throws(TenantryError) -> [MigrationFile] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw TenantryError(
                code: .invalidArgument,
                message: "migrations directory \(directory) does not exist (set --migrations or TENANTRY_MIGRATIONS)")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw TenantryError(code: .invalidArgument, message: "cannot read migrations directory \(directory)")
        }
        var files: [MigrationFile] = []
        for fileName in names.sorted() where fileName.hasSuffix(".sql") {
            guard let (version, name) = parse(fileName) else {
                throw TenantryError(
                    code: .invalidArgument,
                    message: "\(fileName): migration files must be named V<version>__<name>.sql (e.g. V2__add_notes.sql)")
            }
            guard let data = FileManager.default.contents(atPath: "\(directory)/\(fileName)"),
                  let sql = String(data: data, encoding: .utf8) else {
                throw TenantryError(code: .invalidArgument, message: "\(fileName) is not readable UTF-8 text")
            }
            var file = MigrationFile(version: version, name: name, sql: sql)
            file.fileName = fileName
            if let other = files.first(where: { $0.version == version }) {
                throw TenantryError(
                    code: .invalidArgument, message: "\(fileName) and \(other.fileName) have the same version \(version)")
            }
            let statements = try file.statements()
            if statements.isEmpty {
                throw TenantryError(code: .invalidArgument, message: "\(fileName) holds no SQL statement")
            }
            files.append(file)
        }
        return files.sorted { $0.version < $1.version }
    }

    /// `V12__add_notes.sql` → (12, "add_notes").
    static func parse(_ fileName: String) -> (Int, String)? {
        guard fileName.hasPrefix("V"), fileName.hasSuffix(".sql") else { return nil }
        let stem = fileName.dropFirst().dropLast(4)
        guard let separator = stem.range(of: "__") else { return nil }
        let digits = stem[stem.startIndex..<separator.lowerBound]
        let name = stem[separator.upperBound...]
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
              let version = Int(digits), version > 0, !name.isEmpty else { return nil }
        return (version, String(name))
    }
}
