import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// The COPY TO session's TLS (``TLSNegotiation``) against a PostgreSQL with `ssl = on`
/// (``TLSTestPostgres``): encrypted for every `sslmode` but `disable`, certificates verified as the
/// main connections verify them, and the copier reading through COPY TO without its fall back.
@Suite("copy: the COPY TO session over TLS (SSLRequest, NIOSSL, sslmode as libpq reads it)", .timeLimit(.minutes(4)))
struct CopyOutSessionTLSTests {
    static let logger = TestPostgres.logger

    @Test("sslmode=require and prefer against a TLS server: the session is encrypted (pg_stat_ssl of its tenantry-copy backend), COPY text exact across many TLS records", arguments: [PostgresURL.TLSMode.require, .prefer])
    func encrypted(mode: PostgresURL.TLSMode) async throws {
        let url = try await TLSTestPostgres.server().url(tls: mode)
        try await CopyOutSession.with(url) { session in
            #expect(try await Self.copyText(session, "COPY (SELECT s.ssl, a.application_name FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.pid = pg_backend_pid()) TO STDOUT") == "t\ttenantry-copy\n")
            #expect(try await Self.copyText(session, """
                COPY (SELECT E'a\\tb\\\\c\\nd', NULL::text, 1.5::float8, '2026-12-01 10:00+00'::timestamptz AT TIME ZONE 'UTC',
                             interval '1 day 2 hours' FROM generate_series(1, 3)) TO STDOUT
                """) == String(repeating: "a\\tb\\\\c\\nd\t\\N\t1.5\t2026-12-01 10:00:00\t1 day 02:00:00\n", count: 3))
            // About 2.5 MB: many TLS records, each read split into whole rows.
            let big = try await Self.copyText(session, "COPY (SELECT g, repeat('x', g * 5) FROM generate_series(1, 1000) g) TO STDOUT")
            #expect(big == (1...1000).map { "\($0)\t\(String(repeating: "x", count: $0 * 5))\n" }.joined())
            await #expect(throws: CopyOutSession.ServerError.self) {
                _ = try await session.copyOut("COPY (SELECT * FROM no_such_table) TO STDOUT") { _, _ in }
            }
            try await session.execute("SELECT 1")
            // Seen from another connection too.
            let pid = try await Self.copyText(session, "COPY (SELECT pg_backend_pid()) TO STDOUT").dropLast()
            #expect(try await TestPostgres.strings(url, """
                SELECT s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                WHERE s.pid = \(Int32(pid) ?? 0) AND a.application_name = 'tenantry-copy'
                """) == ["true"])
        }
        // The server saw no connection give up on its TLS answer (what the session did before it spoke TLS).
        let log = (try? String(contentsOfFile: try await TLSTestPostgres.server().server.logFilePath, encoding: .utf8)) ?? ""
        let abandoned = log.split(separator: "\n").filter { $0.contains("could not accept SSL connection") && $0.lowercased().contains("eof") }
        #expect(abandoned.isEmpty, "\(abandoned)")
    }

    @Test("verify-full with the CA as sslrootcert: host name localhost and address 127.0.0.1 verify, verify-ca too; a CA that did not sign the certificate is one clear error without the password, for the session as for the main connection")
    func verification() async throws {
        let server = try await TLSTestPostgres.server()
        let ssl = "COPY (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) TO STDOUT"
        for url in [
            try server.url(tls: .verifyFull, host: "localhost", rootCertificate: server.authority),
            try server.url(tls: .verifyFull, rootCertificate: server.authority),
            try server.url(tls: .verifyCA, rootCertificate: server.authority),
        ] {
            #expect(try await CopyOutSession.with(url) { try await Self.copyText($0, ssl) } == "t\n", "\(url)")
        }
        let password = try server.server.password
        for url in [
            try server.url(tls: .verifyFull, host: "localhost", rootCertificate: server.otherAuthority),
            try server.url(tls: .verifyCA, rootCertificate: server.otherAuthority),
        ] {
            let error = await #expect(throws: TenantryError.self, "\(url)") {
                try await CopyOutSession.with(url) { _ in }
            }
            let text = error.map { "\($0)" } ?? ""
            #expect(error?.code == .connectionFailed && text.contains("TLS") && text.contains("sslmode=\(url.tls.rawValue)"), "\(text)")
            #expect(!text.contains(password) && !text.contains("\n"), "\(text)")
            // The main connection refuses the same URL: the copy never reads it in plain text.
            await #expect(throws: (any Error).self) {
                try await Database.withConnection(url, logger: Self.logger) { _ in }
            }
        }
        // A missing sslrootcert file: one clear error before anything is sent.
        let missing = try server.url(tls: .verifyFull, rootCertificate: "/nonexistent/ca.pem")
        let error = await #expect(throws: TenantryError.self) { try await CopyOutSession.with(missing) { _ in } }
        #expect(error?.code == .connectionFailed && !"\(error.map { "\($0)" } ?? "")".contains(password))
    }

    @Test("SNI and verification get the host only when it is a name, as PostgresNIO sends it")
    func serverHostname() {
        #expect(CopyOutSession.serverHostname("db.example.com") == "db.example.com")
        #expect(CopyOutSession.serverHostname("localhost") == "localhost")
        #expect(CopyOutSession.serverHostname("127.0.0.1") == nil)
        #expect(CopyOutSession.serverHostname("::1") == nil)
    }

    @Test("the copier reads a shared source over TLS through COPY TO (no fall-back notice): hostile values exact; with an untrusted CA (verify-full) the copy fails as the main connection fails, nothing copied")
    func copier() async throws {
        let server = try await TLSTestPostgres.server()
        let admin = try server.url(tls: .require)
        let tag = "c\(UUID().uuidString.prefix(8).lowercased())"
        for database in ["\(tag)_src", "\(tag)_dst"] { _ = try await TestPostgres.strings(admin, "CREATE DATABASE \(database)") }
        let source = admin.with(database: "\(tag)_src"), target = admin.with(database: "\(tag)_dst")
        let (plan, ddl) = try await Database.withConnection(source, logger: Self.logger) { connection in
            try await CopierTests.loadHostile(connection)
            let unified = try await SchemaIntrospector(logger: Self.logger).read(connection)
            let derived = try TenantSchemaDeriver().derive(from: unified)
            return (try MovePlan.make(unified: unified, discriminator: "shop_id"), try SchemaDDL.render(derived.schema))
        }
        try await Database.withConnection(target, logger: Self.logger) {
            try await Database.execute(script: ddl, on: $0, logger: Self.logger)
        }
        let id = try TenantID("1")
        let notices = NIOLockedValueBox<[String]>([])
        let copier: @Sendable (Catalog, PostgresURL) -> Copier = { catalog, url in
            Copier(
                catalog: catalog,
                servers: ServerDirectory(databaseURL: url, superuser: nil, superuserPassword: nil, servers: [], keyring: nil),
                unifiedURL: url, plan: plan, capture: Capture(unifiedURL: url, enableTimeout: .seconds(20), logger: Self.logger),
                actor: "test", logger: Logger(label: "copier") { _ in RecordingLogHandler(records: notices) })
        }
        try await Catalog.withCatalog(source, logger: Self.logger) { catalog in
            let (_, counts) = try await copier(catalog, source).copyRows(
                .toDedicated(id, unified: source, tenantDatabase: target, plan: plan), progress: { _ in })
            #expect(counts["hostile"] == HandyShopGenerator.hostileStrings.count + 1)
        }
        #expect(notices.withLockedValue { $0 } == [], "the copy fell back to SELECT")
        for table in plan.tables {
            let columns = table.columns.map { "\"\($0.name)\"" }.joined(separator: ", ")
            let expected = try await TestPostgres.strings(
                source, "SELECT ROW(\(columns))::text FROM \"\(table.name)\" WHERE shop_id = 1 ORDER BY 1")
            #expect(try await TestPostgres.strings(target, "SELECT ROW(\(columns))::text FROM \"\(table.name)\" ORDER BY 1") == expected)
        }

        // An untrusted CA: the copy fails with the main connection's error; the target is untouched.
        _ = try await TestPostgres.strings(target, "TRUNCATE hostile")
        let untrusted = try server.url(
            database: source.database, tls: .verifyFull, host: "localhost", rootCertificate: server.otherAuthority)
        let password = try server.server.password
        try await Catalog.withCatalog(source, logger: Self.logger) { catalog in
            let error = await #expect(throws: TenantryError.self) {
                _ = try await copier(catalog, untrusted).copyRows(
                    .toDedicated(id, unified: untrusted, tenantDatabase: target, plan: plan), progress: { _ in })
            }
            #expect(error?.code == .connectionFailed && !"\(error.map { "\($0)" } ?? "")".contains(password))
        }
        #expect(try await TestPostgres.strings(target, "SELECT count(*)::text FROM hostile") == ["0"])
    }

    /// The text of `sql`, a `COPY … TO STDOUT`, read through `session`.
    static func copyText(_ session: CopyOutSession, _ sql: String) async throws -> String {
        var data = ByteBuffer()
        _ = try await session.copyOut(sql, chunkSize: 1 << 16) { chunk, _ in
            var chunk = chunk
            data.writeBuffer(&chunk)
        }
        return String(buffer: data)
    }
}
