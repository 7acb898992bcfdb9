import EmbeddedPostgres
import Foundation
import Logging
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// A server of its own (archive_mode needs a restart): archiving enabled, restarted, a base
/// backup, rows at t1, the target noted, changes at t2; recovery to the target in a scratch
/// server sees exactly the t1 rows, and the scratch server is gone afterwards, after an error too.
@Suite("point-in-time recovery: WAL archive, base backup, scratch server")
struct PointInTimeRecoveryTests {
    let logger = TestPostgres.logger

    @Test("enable → restart → base backup → recovery to T has the rows as of T, not later changes; bad inputs are clear errors")
    func recoverToTime() async throws {
        let server = try await RestartableServer.start()
        let root = try CLIRunner.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        do {
            try await run(server, root: root)
            try await server.remove()
        } catch {
            try? await server.remove()
            throw error
        }
    }

    private func run(_ server: RestartableServer, root: String) async throws {
        let url = try server.url()
        let archive = try WALArchive(directory: "\(root)/archive")

        let enabled = try await archive.enable(server: "default", url: url, logger: logger)
        #expect(enabled.restartNeeded)
        #expect(enabled.settings.first { $0.name == "archive_mode" }?.needsRestart == true)
        #expect(enabled.baseBackup == nil)
        #expect(enabled.nextSteps.first?.contains("restart PostgreSQL") == true)
        #expect(try archive.record()?.server == "default")
        let notYet = await #expect(throws: TenantryError.self) {
            try await archive.takeBaseBackup(server: "default", url: url, logger: logger)
        }
        #expect(notYet?.message.contains("not active") == true)

        try await server.server.restart(mode: .fast)
        let status = try await WALArchive.status(server: "default", url: url, logger: logger)
        #expect(status.archiving && !status.restartNeeded && status.directory == archive.directory)
        // Enabling again on an archiving server needs no restart and takes the base backup.
        let again = try await archive.enable(server: "default", url: url, logger: logger)
        #expect(!again.restartNeeded)
        let base = try #require(again.baseBackup)
        #expect(base.startWALFile.count == 24 && base.sha256.count == 64)
        #expect(try archive.baseBackups().map(\.path) == [base.path])

        // t1: rows; T; t2: an update, a delete, an insert.
        let shop = url.with(database: "shop")
        try await exec(url, "CREATE DATABASE shop")
        try await exec(shop, "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        try await exec(shop, "INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        let target = try #require(try await TestPostgres.strings(
            url, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'").first ?? nil)
        let targetDate = try #require(PointInTimeFormat.date(target.replacingOccurrences(of: " ", with: "T").replacingOccurrences(of: "+00", with: "Z")))
        try await exec(shop, "UPDATE items SET name = 'changed' WHERE id = 1")
        try await exec(shop, "DELETE FROM items WHERE id = 2")
        try await exec(shop, "INSERT INTO items VALUES (4, 'four')")

        let until = try await archive.archiveNow(server: "default", url: url, logger: logger)
        #expect(targetDate < until)
        let chosen = try PointInTimeRecovery.pick(try archive.baseBackups(), before: targetDate, server: "default")
        let scratch = ScratchPostgres()
        let recovery = PointInTimeRecovery(archive: archive, base: chosen, target: target, superuser: url.user)
        let (rows, timings) = try await recovery.run(scratch: scratch.factory, logger: logger) { scratchURL in
            try await TestPostgres.strings(scratchURL.with(database: "shop"), "SELECT id || ':' || name FROM items ORDER BY id")
        }
        #expect(rows == ["1:one", "2:two", "3:three"])
        #expect(timings.baseExtract > 0 && timings.recovery > 0)
        print("point-in-time recovery timings: extract \(timings.baseExtract) s, recovery \(timings.recovery) s")
        #expect(scratch.directories.count == 1)
        #expect(scratch.directories.allSatisfy { !FileManager.default.fileExists(atPath: $0) })
        #expect(try await TestPostgres.strings(shop, "SELECT id || ':' || name FROM items ORDER BY id") == ["1:changed", "3:three", "4:four"])

        // A target after the newest archived WAL: recovery never reaches it; the scratch server is removed.
        let late = PointInTimeRecovery(archive: archive, base: chosen, target: "2999-01-01 00:00:00+00", superuser: url.user)
        let lateError = await #expect(throws: TenantryError.self) {
            try await late.run(scratch: scratch.factory, logger: logger) { _ in 0 }
        }
        #expect(lateError?.message.contains("after the newest archived WAL") == true, "\(String(describing: lateError))")
        #expect(scratch.directories.count == 2)
        #expect(scratch.directories.allSatisfy { !FileManager.default.fileExists(atPath: $0) })

        // A corrupt base backup: refused before any server starts.
        let tarball = "\(chosen.path ?? "")/\(chosen.file)"
        let handle = try #require(FileHandle(forUpdatingAtPath: tarball))
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data("corrupt".utf8))
        try handle.close()
        let corrupt = await #expect(throws: TenantryError.self) {
            try await recovery.run(scratch: scratch.factory, logger: logger) { _ in 0 }
        }
        #expect(corrupt?.message.contains("is corrupt") == true)
        #expect(scratch.directories.count == 2)
    }

    private func exec(_ url: PostgresURL, _ sql: String) async throws {
        try await Database.withConnection(url, logger: logger) { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
    }
}
