import EmbeddedPostgres
import Foundation
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The archive directory's rules and the archive command, without a server.
@Suite("WAL archive: directory, archive command, base backup choice")
struct WALArchiveTests {
    @Test("a directory with characters the archive command could not carry safely is refused")
    func directoryValidation() throws {
        #expect(try WALArchive(directory: "/backups/wal-archive_1/").directory == "/backups/wal-archive_1")
        for bad in ["/tmp/with space", "/tmp/quote'd", "/tmp/per%cent", "/tmp/semi;colon", "/tmp/$(rm)", "/", "", "/tmp/ü"] {
            #expect(throws: TenantryError.self, "\(bad)") { try WALArchive(directory: bad) }
        }
    }

    @Test("the archive command names its directory, copies once, accepts the same segment again and refuses a different one")
    func archiveCommand() async throws {
        let root = try CLIRunner.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let archive = try WALArchive(directory: "\(root)/archive")
        #expect(WALArchive.directory(ofArchiveCommand: archive.archiveCommand) == archive.directory)
        #expect(WALArchive.directory(ofArchiveCommand: "cp %p /somewhere/%f") == nil)
        try FileManager.default.createDirectory(atPath: archive.walDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(root)/pg_wal", withIntermediateDirectories: true)
        let segment = "000000010000000000000001"
        func archiveOnce(_ content: String) async throws -> Int32 {
            try content.write(toFile: "\(root)/pg_wal/\(segment)", atomically: true, encoding: .utf8)
            let command = archive.archiveCommand.replacingOccurrences(of: "%p", with: "pg_wal/\(segment)")
                .replacingOccurrences(of: "%f", with: segment)
            return try await ProcessRunner().run("/bin/sh", ["-c", command], currentDirectory: root).status
        }
        #expect(try await archiveOnce("first") == 0)
        #expect(try await archiveOnce("first") == 0)
        #expect(try await archiveOnce("different") != 0)
        #expect(try String(contentsOfFile: "\(archive.walDirectory)/\(segment)", encoding: .utf8) == "first")
        #expect(try FileManager.default.contentsOfDirectory(atPath: archive.walDirectory) == [segment])
    }

    @Test("the newest base backup that ended before the target is chosen; an earlier target is one clear error")
    func pickBaseBackup() throws {
        func backup(_ name: String, _ finished: TimeInterval) -> BaseBackupManifest {
            var manifest = BaseBackupManifest(
                server: "default", systemIdentifier: "1", postgresVersion: "15", startedAt: Date(timeIntervalSince1970: finished - 5),
                finishedAt: Date(timeIntervalSince1970: finished), startLSN: "0/1", endLSN: "0/2", startWALFile: "x", timeline: 1,
                file: "base.tar.gz", bytes: 1, sha256: "x")
            manifest.path = "/a/base/\(name)"
            return manifest
        }
        let backups = [backup("one", 1000), backup("two", 2000)]
        #expect(try PointInTimeRecovery.pick(backups, before: Date(timeIntervalSince1970: 1500), server: "s").path == "/a/base/one")
        #expect(try PointInTimeRecovery.pick(backups, before: Date(timeIntervalSince1970: 2500), server: "s").path == "/a/base/two")
        let early = #expect(throws: TenantryError.self) {
            try PointInTimeRecovery.pick(backups, before: Date(timeIntervalSince1970: 900), server: "s")
        }
        #expect(early?.message.contains("is before the oldest base backup") == true)
        let none = #expect(throws: TenantryError.self) { try PointInTimeRecovery.pick([], before: Date(), server: "s") }
        #expect(none?.message.contains("no base backup") == true)
    }

    @Test("times round-trip through the archive's text format with microseconds")
    func timeFormat() throws {
        let date = Date(timeIntervalSince1970: 1_796_058_303.123456)
        let text = PointInTimeFormat.string(date)
        #expect(text == "2026-11-30T17:05:03.123456Z")
        let back = try #require(PointInTimeFormat.date(text))
        #expect(abs(back.timeIntervalSince(date)) < 0.000_002)
    }
}
