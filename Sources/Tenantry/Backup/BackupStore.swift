import Foundation
import TenantryCore

/// The backup directory: `<root>/<tenant>/<tenant>-<stamp>.dump` and `.json` (the manifest,
/// written last), directories 0700, files 0600, each written under a `.partial` name and renamed.
public struct BackupStore: Sendable {
    /// The directory, made absolute.
    public var root: String

    /// A store at `root` (relative to the working directory unless absolute).
    public init(root: String) {
        self.root = root.hasPrefix("/") ? root : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(root)
    }

    /// The tenant's directory, created (0700) if missing.
    func directory(for tenant: TenantID) throws -> String {
        try createRoot()
        let path = (root as NSString).appendingPathComponent(tenant.rawValue)
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        return path
    }

    /// Creates the store's directory (0700) if missing.
    func createRoot() throws {
        guard !FileManager.default.fileExists(atPath: root) else { return }
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw TenantryError(code: .invalidArgument, message: "cannot create the backup directory \(root): \(error.localizedDescription)")
        }
    }

    /// A new backup's base name: `<tenant>-<UTC time to the millisecond>`.
    static func baseName(_ tenant: TenantID, at date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmssSSS'Z'"
        return "\(tenant.rawValue)-\(formatter.string(from: date))"
    }

    /// Writes `manifest` as `path` atomically (0600).
    static func write(_ manifest: BackupManifest, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Self.timestamp(date))
        }
        try writeAtomically(try encoder.encode(manifest), to: path)
    }

    /// ISO 8601 with milliseconds, UTC.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// `data` into `path` by way of `path.partial` (0600, flushed, renamed).
    static func writeAtomically(_ data: Data, to path: String) throws {
        let partial = path + ".partial"
        guard FileManager.default.createFile(atPath: partial, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw TenantryError(code: .invalidArgument, message: "cannot write \(partial)")
        }
        try sync(partial)
        try rename(partial, to: path)
    }

    /// Flushes `path` to disk.
    static func sync(_ path: String) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.synchronize()
    }

    /// Renames `from` over `to` (POSIX `rename`: atomic in one file system).
    static func rename(_ from: String, to: String) throws {
        guard Foundation.rename(from, to) == 0 else {
            throw TenantryError(code: .invalidArgument, message: "cannot rename \(from) to \(to): \(String(cString: strerror(errno)))")
        }
    }

    /// The manifest at `path`, its `path` set. A missing or unreadable file is one clear error.
    public static func manifest(at path: String) throws -> BackupManifest {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TenantryError(code: .invalidArgument, message: "no backup manifest at \(path)")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            guard let date = formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a time: \(text)"))
            }
            return date
        }
        do {
            var manifest = try decoder.decode(BackupManifest.self, from: data)
            guard manifest.format == 1 else {
                throw TenantryError(code: .invalidArgument, message: "backup manifest \(path) has format \(manifest.format); this Tenantry reads format 1")
            }
            guard !manifest.dumpFile.contains("/") else {
                throw TenantryError(code: .invalidArgument, message: "backup manifest \(path) names a dump outside its directory")
            }
            manifest.path = path
            return manifest
        } catch let error as TenantryError {
            throw error
        } catch {
            throw TenantryError(code: .invalidArgument, message: "\(path) is not a Tenantry backup manifest (\(error))")
        }
    }

    /// Every backup in the store (of `tenant` only, if given), oldest first. Files that are not
    /// manifests (partial writes, other files) are skipped.
    public func list(tenant: TenantID? = nil) throws -> [BackupManifest] {
        let manager = FileManager.default
        guard manager.fileExists(atPath: root) else { return [] }
        let directories = try tenant.map { [$0.rawValue] } ?? manager.contentsOfDirectory(atPath: root)
        var manifests: [BackupManifest] = []
        for name in directories {
            let directory = (root as NSString).appendingPathComponent(name)
            guard let files = try? manager.contentsOfDirectory(atPath: directory) else { continue }
            for file in files where file.hasSuffix(".json") {
                if let manifest = try? Self.manifest(at: (directory as NSString).appendingPathComponent(file)), manifest.tenant.rawValue == name {
                    manifests.append(manifest)
                }
            }
        }
        return manifests.sorted { ($0.startedAt, $0.tenant.rawValue) < ($1.startedAt, $1.tenant.rawValue) }
    }

    /// Resolves what `restore --from` names: a manifest (`.json`), a dump (`.dump`, its manifest
    /// beside it) or a backup directory (the newest backup of `tenant` in it).
    public static func resolve(_ path: String, tenant: TenantID) throws -> BackupManifest {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TenantryError(code: .invalidArgument, message: "no backup at \(path)")
        }
        if isDirectory.boolValue {
            guard let newest = try BackupStore(root: path).list(tenant: tenant).last else {
                throw TenantryError(code: .invalidArgument, message: "no backup of tenant \(tenant) in \(path)", tenant: tenant.rawValue)
            }
            return newest
        }
        if path.hasSuffix(".dump") { return try manifest(at: String(path.dropLast(5)) + ".json") }
        return try manifest(at: path)
    }

    /// The SHA-256 of the file at `path` (lowercase hex) and its size.
    public static func sha256(of path: String) throws -> (hex: String, bytes: Int64) {
        try FileDigest.sha256(of: path)
    }

    /// Removes the `.partial` files (a killed backup's) last modified more than `age` seconds ago;
    /// returns their paths.
    func removeStalePartials(olderThan age: TimeInterval) -> [String] {
        let manager = FileManager.default
        var removed: [String] = []
        for name in (try? manager.contentsOfDirectory(atPath: root)) ?? [] {
            let directory = (root as NSString).appendingPathComponent(name)
            for file in (try? manager.contentsOfDirectory(atPath: directory)) ?? [] where file.hasSuffix(".partial") {
                let path = (directory as NSString).appendingPathComponent(file)
                guard let modified = (try? manager.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                      Date().timeIntervalSince(modified) > age, (try? manager.removeItem(atPath: path)) != nil else { continue }
                removed.append(path)
            }
        }
        return removed
    }

    /// Removes a backup: its manifest first (the backup is gone from then on), then its dump.
    public static func remove(_ manifest: BackupManifest) throws {
        guard let path = manifest.path else { return }
        try FileManager.default.removeItem(atPath: path)
        if let dump = manifest.dumpPath { try? FileManager.default.removeItem(atPath: dump) }
    }
}
