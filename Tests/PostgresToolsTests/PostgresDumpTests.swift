import Foundation
import PostgresTools
import TenantryCore
import TenantryTestSupport
import Testing

/// `PostgresTools` on its own (the library `Tenantry` archives tenant databases through it).
@Suite("PostgresTools: pg_dump through ProcessRunner", .timeLimit(.minutes(2)))
struct PostgresDumpTests {
    @Test("pg_dump -Fc of a real database: pg_restore lists its table; a failed dump leaves no file and no password in its output")
    func dump() async throws {
        let url = try await TestPostgres.makeDatabase("dump")
        _ = try await TestPostgres.strings(url, "CREATE TABLE parts (id int PRIMARY KEY)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pgdump-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // pg_dump may run as the postgres OS user (when this process is root): it must write here.
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let password = try #require(url.password)
        let environment = ProcessRunner.minimalEnvironment(["PGPASSWORD": password])
        let target = PostgresDump.Target(host: url.host, port: url.port, user: url.user, database: url.database)

        let file = directory + "/ok.dump"
        let output = try await PostgresDump.custom(target, to: file, environment: environment)
        #expect(output.succeeded, "\(output.text)")
        let binaries = try PostgresBinaries.locate()
        let listing = try await ProcessRunner().run(binaries.path(of: "pg_restore"), ["--list", file])
        #expect(listing.succeeded && listing.text.contains("TABLE public parts"), "\(listing.text.prefix(500))")

        let failed = directory + "/failed.dump"
        var wrong = target
        wrong.database = "no_such_database"
        let refused = try await PostgresDump.custom(wrong, to: failed, environment: environment)
        #expect(!refused.succeeded && refused.text.contains("no_such_database"), "\(refused.text)")
        #expect(!FileManager.default.fileExists(atPath: failed))
        #expect(!refused.text.contains(password))
    }
}
