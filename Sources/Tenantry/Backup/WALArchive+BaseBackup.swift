import Foundation
import Logging
import PostgresNIO
import PostgresTools
import TenantryCore

/// One base backup in a ``WALArchive``: `base/<stamp>/base.tar.gz` (`pg_basebackup -Ft -z -X none`:
/// the WAL it needs comes from the archive) and this manifest, `tenantry-base.json`.
public struct BaseBackupManifest: Sendable, Codable, Equatable {
    /// The format (1).
    public var format: Int = 1
    /// The server's name in Tenantry.
    public var server: String
    /// The cluster's `system_identifier`.
    public var systemIdentifier: String
    /// `server_version`.
    public var postgresVersion: String
    /// The server's clock just before the backup started.
    public var startedAt: Date
    /// The server's clock just after it ended: a restore to a time after this can start from it.
    public var finishedAt: Date
    /// Where WAL replay starts (`backup_manifest`'s WAL range).
    public var startLSN: String
    /// Where the backup is consistent.
    public var endLSN: String
    /// The WAL segment that holds ``startLSN``: the oldest one a restore from it needs.
    public var startWALFile: String
    /// The timeline.
    public var timeline: Int
    /// The archive's file name in the backup's directory.
    public var file: String
    /// Its size in bytes.
    public var bytes: Int64
    /// Its SHA-256, lowercase hex (checked before every restore).
    public var sha256: String
    /// The backup's directory (set when read or written; not stored).
    public var path: String?

    /// A manifest.
    public init(
        server: String, systemIdentifier: String, postgresVersion: String, startedAt: Date, finishedAt: Date, startLSN: String,
        endLSN: String, startWALFile: String, timeline: Int, file: String, bytes: Int64, sha256: String
    ) {
        self.server = server
        self.systemIdentifier = systemIdentifier
        self.postgresVersion = postgresVersion
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.startLSN = startLSN
        self.endLSN = endLSN
        self.startWALFile = startWALFile
        self.timeline = timeline
        self.file = file
        self.bytes = bytes
        self.sha256 = sha256
    }

    enum CodingKeys: String, CodingKey {
        case format, server, systemIdentifier = "system_identifier", postgresVersion = "postgres_version"
        case startedAt = "started_at", finishedAt = "finished_at", startLSN = "start_lsn", endLSN = "end_lsn"
        case startWALFile = "start_wal_file", timeline, file, bytes, sha256
    }

    /// The manifest's file name in a backup's directory.
    public static let fileName = "tenantry-base.json"
}

extension WALArchive {
    /// Takes a base backup of the server at `url` (an admin login with the REPLICATION attribute)
    /// with `pg_basebackup -Ft -z -X none -c fast`, the password through `PGPASSWORD` only, into a
    /// temporary directory renamed to `base/<stamp>/` once complete and described (files 0600,
    /// directory 0700). Refused unless the server archives into this directory now.
    public func takeBaseBackup(server: String, url: PostgresURL, logger: Logger) async throws -> BaseBackupManifest {
        let (located, facts) = try await Self.locate(server: server, url: url, logger: logger)
        guard located == self else {
            throw TenantryError(
                code: .conflict, message: "server '\(server)' archives into \(located.directory), not into \(directory)")
        }
        let startedAt = try await Self.serverClock(url: url, logger: logger)
        let stamp = PointInTimeFormat.stamp(startedAt)
        let partial = "\(baseDirectory)/.partial-\(stamp)"
        let final = "\(baseDirectory)/\(stamp)"
        // A base backup killed part way left its `.partial-` directory (a copy of the cluster): gone
        // once it is a day old (a base backup running now is younger).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: baseDirectory)) ?? [] where name.hasPrefix(".partial-") {
            let path = "\(baseDirectory)/\(name)"
            if let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
               Date().timeIntervalSince(modified) > 86_400 {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
        try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        do {
            let output = try await ProcessRunner().run(
                try PostgresBinaries.locate().path(of: "pg_basebackup"),
                ["--pgdata=\(partial)", "--format=tar", "--gzip", "--wal-method=none", "--checkpoint=fast",
                 "--label=tenantry \(stamp)", "--host=\(url.host)", "--port=\(url.port)", "--username=\(url.user)", "--no-password"],
                environment: Self.clientEnvironment(for: url))
            guard output.succeeded else {
                throw TenantryError(
                    code: .database,
                    message: "pg_basebackup of server '\(server)' failed: "
                        + (output.text.split(separator: "\n").first.map(String.init) ?? "exit \(output.status)"))
            }
            let finishedAt = try await Self.serverClock(url: url, logger: logger)
            let files = try FileManager.default.contentsOfDirectory(atPath: partial)
            guard files.filter({ $0.hasSuffix(".tar.gz") }) == ["base.tar.gz"] else {
                throw TenantryError(
                    code: .conflict,
                    message: "server '\(server)' has tablespaces outside its data directory (\(files.sorted().joined(separator: ", "))): "
                        + "point-in-time restores support the data directory only")
            }
            let range = try Self.walRange(manifest: "\(partial)/backup_manifest")
            let startWALFile = try await Database.withConnection(url, logger: logger) { connection in
                let rows = try await connection.query("SELECT pg_walfile_name(\(range.start)::pg_lsn)", logger: logger)
                for try await name in rows.decode(String.self) { return name }
                throw TenantryError(code: .database, message: "pg_walfile_name returned nothing")
            }
            for file in files { chmod("\(partial)/\(file)", 0o600) }
            let (sha256, bytes) = try BackupStore.sha256(of: "\(partial)/base.tar.gz")
            var manifest = BaseBackupManifest(
                server: server, systemIdentifier: facts.systemIdentifier, postgresVersion: facts.postgresVersion,
                startedAt: startedAt, finishedAt: finishedAt, startLSN: range.start, endLSN: range.end,
                startWALFile: startWALFile, timeline: range.timeline, file: "base.tar.gz", bytes: bytes, sha256: sha256)
            try BackupStore.writeAtomically(try Self.encoder.encode(manifest), to: "\(partial)/\(BaseBackupManifest.fileName)")
            guard rename(partial, final) == 0 else {
                throw TenantryError(code: .conflict, message: "could not rename \(partial) to \(final)")
            }
            manifest.path = final
            logger.info("base backup taken", metadata: ["backup.path": "\(final)", "backup.bytes": "\(bytes)"])
            return manifest
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
    }

    /// The complete base backups in this archive, oldest first (a directory without a readable
    /// manifest is not a backup: a partial one, or someone else's).
    public func baseBackups() throws -> [BaseBackupManifest] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: baseDirectory)) ?? []
        return names.filter { !$0.hasPrefix(".") }.compactMap { name -> BaseBackupManifest? in
            let path = "\(baseDirectory)/\(name)"
            guard let data = FileManager.default.contents(atPath: "\(path)/\(BaseBackupManifest.fileName)"),
                  var manifest = try? Self.decoder.decode(BaseBackupManifest.self, from: data) else { return nil }
            manifest.path = path
            return manifest
        }.sorted { $0.finishedAt < $1.finishedAt }
    }

    /// Checks a base backup's archive against its manifest (size and SHA-256): one clear error
    /// when it is missing or differs.
    public static func verify(_ backup: BaseBackupManifest) throws {
        let path = "\(backup.path ?? ".")/\(backup.file)"
        let corrupt = "base backup \(backup.path ?? "?") is corrupt"
        guard FileManager.default.fileExists(atPath: path) else {
            throw TenantryError(code: .conflict, message: "\(corrupt): \(backup.file) is missing")
        }
        let (sha256, bytes) = try BackupStore.sha256(of: path)
        guard bytes == backup.bytes, sha256 == backup.sha256 else {
            throw TenantryError(
                code: .conflict,
                message: "\(corrupt): the SHA-256 of \(backup.file) differs from its manifest (remove the directory to use an older one)")
        }
    }

    /// The first WAL range of a `backup_manifest` (PostgreSQL 13+).
    static func walRange(manifest path: String) throws -> (start: String, end: String, timeline: Int) {
        guard let data = FileManager.default.contents(atPath: path),
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let ranges = object["WAL-Ranges"] as? [[String: Any]], let range = ranges.first,
              let start = range["Start-LSN"] as? String, let end = range["End-LSN"] as? String else {
            throw TenantryError(code: .conflict, message: "pg_basebackup wrote no readable backup_manifest (PostgreSQL 13 or newer is needed)")
        }
        return (start, end, (range["Timeline"] as? Int) ?? 1)
    }

    /// The server's `clock_timestamp()`: backup and target times are compared on the server's clock.
    static func serverClock(url: PostgresURL, logger: Logger) async throws -> Date {
        try await Database.withConnection(url, logger: logger) { connection in
            let rows = try await connection.query("SELECT clock_timestamp()", logger: logger)
            for try await now in rows.decode(Date.self) { return now }
            throw TenantryError(code: .database, message: "clock_timestamp() returned nothing")
        }
    }

    /// The environment of a client program (`pg_basebackup`) for `url`: the minimal one, plus its
    /// password and TLS mode; never this process's whole environment.
    static func clientEnvironment(for url: PostgresURL) -> [String: String] {
        var variables = ["PGPASSWORD": url.password ?? "", "PGSSLMODE": url.tls.rawValue]
        if let rootCertificate = url.rootCertificate { variables["PGSSLROOTCERT"] = rootCertificate }
        return ProcessRunner.minimalEnvironment(variables)
    }
}
