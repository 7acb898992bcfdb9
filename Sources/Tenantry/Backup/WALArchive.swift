import Foundation
import TenantryCore

/// The directory that holds one server's continuous archive: `wal/` (the WAL segments the
/// server's `archive_command` copies there), `base/<stamp>/` (base backups, each with its
/// `tenantry-base.json`) and `archive.json` (which server archives here, ``Record``).
///
/// One directory per server: WAL file names repeat across servers, and the archive command
/// refuses to overwrite a segment with different content.
public struct WALArchive: Sendable, Equatable {
    /// The archive's directory (absolute, validated).
    public let directory: String

    /// Uses `directory`, after ``validate(_:)``.
    public init(directory: String) throws {
        self.directory = try Self.validate(directory)
    }

    /// Where the server copies WAL segments.
    public var walDirectory: String { "\(directory)/wal" }
    /// Where base backups go, one directory each.
    public var baseDirectory: String { "\(directory)/base" }
    /// `archive.json`: which server archives here.
    public var recordPath: String { "\(directory)/archive.json" }

    /// Characters a directory may hold: the path goes into a shell command PostgreSQL runs, where
    /// `%` is a placeholder and quotes or spaces would need escaping; none is allowed instead.
    static let allowedCharacters = CharacterSet(
        charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+@,=:")

    /// An absolute, normalised `directory` (relative: to the working directory) of the characters
    /// a-z, A-Z, 0-9 and `/ . _ - + @ , = :`, without `..`; anything else is one clear error.
    public static func validate(_ directory: String) throws -> String {
        let absolute = directory.hasPrefix("/")
            ? directory : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(directory)
        let normalised = (absolute as NSString).standardizingPath
        guard !directory.isEmpty, normalised.unicodeScalars.allSatisfy(allowedCharacters.contains),
              !normalised.split(separator: "/").contains(".."), normalised != "/", normalised.utf8.count <= 400 else {
            throw TenantryError(
                code: .invalidArgument,
                message: "archive directory '\(directory.prefix(200))' must be a path of a-z, A-Z, 0-9 and / . _ - + @ , = : only "
                    + "(it goes into the server's archive_command, where other characters would need quoting)")
        }
        return normalised
    }

    /// A marker at the end of the commands Tenantry writes, so it recognises its own.
    static let marker = "# tenantry-wal-archive"

    /// The server's `archive_command`: copies a segment to `wal/` through a temporary name (a
    /// crash never leaves a partial segment under the real name), synced; a segment already there
    /// is accepted only when its content is identical (PostgreSQL may archive one again after a
    /// crash), never overwritten.
    public var archiveCommand: String {
        "f='\(walDirectory)/%f'; if [ -f \"$f\" ]; then cmp -s '%p' \"$f\"; "
            + "else cp '%p' \"$f.tmp\" && sync \"$f.tmp\" && mv \"$f.tmp\" \"$f\"; fi \(Self.marker)"
    }

    /// The `restore_command` of a server recovering from this archive.
    public var restoreCommand: String {
        "cp '\(walDirectory)/%f' '%p'"
    }

    /// The archive a server's `archive_command` copies to, when it is one ``archiveCommand`` wrote.
    public static func directory(ofArchiveCommand command: String) -> String? {
        guard command.hasSuffix(marker), command.hasPrefix("f='"),
              let end = command.range(of: "/wal/%f'") else { return nil }
        let start = command.index(command.startIndex, offsetBy: 3)
        guard start <= end.lowerBound else { return nil }
        return String(command[start..<end.lowerBound])
    }

    /// `archive.json`: which server archives into this directory.
    public struct Record: Sendable, Codable, Equatable {
        /// The format (1).
        public var format: Int = 1
        /// The server's name in Tenantry (`default`, or a registered server).
        public var server: String
        /// `pg_control_system().system_identifier`: the cluster, whatever its name or address.
        public var systemIdentifier: String
        /// The server's `server_version` when archiving was enabled.
        public var postgresVersion: String
        /// When archiving was enabled (or configured again).
        public var enabledAt: Date
        /// The `archive_command` set.
        public var archiveCommand: String

        /// A record.
        public init(server: String, systemIdentifier: String, postgresVersion: String, enabledAt: Date, archiveCommand: String) {
            self.server = server
            self.systemIdentifier = systemIdentifier
            self.postgresVersion = postgresVersion
            self.enabledAt = enabledAt
            self.archiveCommand = archiveCommand
        }

        enum CodingKeys: String, CodingKey {
            case format, server, systemIdentifier = "system_identifier", postgresVersion = "postgres_version"
            case enabledAt = "enabled_at", archiveCommand = "archive_command"
        }
    }

    /// The record, if this directory has one.
    public func record() throws -> Record? {
        guard let data = FileManager.default.contents(atPath: recordPath) else { return nil }
        do {
            return try Self.decoder.decode(Record.self, from: data)
        } catch {
            throw TenantryError(code: .conflict, message: "\(recordPath) is not a Tenantry archive record: fix or remove it")
        }
    }

    /// Writes the record atomically (a temporary file flushed and renamed), mode 0600.
    func write(_ record: Record) throws {
        try BackupStore.writeAtomically(try Self.encoder.encode(record), to: recordPath)
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(PointInTimeFormat.string(date))
        }
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = PointInTimeFormat.date(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a time: \(text)"))
            }
            return date
        }
        return decoder
    }()
}

/// Times as Tenantry's archive files and reports write them: ISO 8601 in UTC with microseconds
/// (PostgreSQL's precision), e.g. `2026-11-30T17:05:03.123456Z`.
public enum PointInTimeFormat {
    /// `date` as text.
    public static func string(_ date: Date) -> String {
        let micros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        let seconds = (micros / 1_000_000).rounded(.down)
        let fraction = Int64(micros - seconds * 1_000_000)
        let base = formatter().string(from: Date(timeIntervalSince1970: seconds)).replacingOccurrences(of: "Z", with: "")
        return base + "." + String(format: "%06lld", fraction) + "Z"
    }

    /// Parses ``string(_:)``'s format (and plain ISO 8601 without fraction).
    public static func date(_ text: String) -> Date? {
        guard text.hasSuffix("Z") else { return nil }
        let parts = text.dropLast().split(separator: ".", maxSplits: 1)
        guard let whole = formatter().date(from: String(parts[0]) + "Z") else { return nil }
        guard parts.count == 2 else { return whole }
        guard let fraction = Double("0." + parts[1]) else { return nil }
        return whole.addingTimeInterval(fraction)
    }

    /// A file-name stamp: `20261130T170503.123Z`.
    static func stamp(_ date: Date) -> String {
        let text = string(date)
        return text.replacingOccurrences(of: "-", with: "").replacingOccurrences(of: ":", with: "")
            .prefix(19).description + "Z"
    }

    private static func formatter() -> ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter
    }
}
