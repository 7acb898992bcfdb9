import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("copy: the COPY TO session (its own frontend: SCRAM, simple queries, COPY data)", .timeLimit(.minutes(4)))
struct CopyOutSessionTests {
    @Test("SCRAM-SHA-256 matches RFC 7677's example exchange, and a wrong server signature is refused")
    func scramVector() throws {
        var scram = SCRAM(password: "pencil", user: "user", nonce: "rOprNGfwEbeRWgbNEkqO")
        #expect(scram.clientFirst == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        let final = scram.clientFinal(
            serverFirst: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
        #expect(final == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        #expect(scram.verifies(serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
        #expect(!scram.verifies(serverFinal: "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
        // A server nonce that does not extend the client's is refused.
        var other = SCRAM(password: "pencil", user: "user", nonce: "abc")
        #expect(other.clientFinal(serverFirst: "r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096") == nil)
    }

    @Test("against the real server: SCRAM login, COPY text exactly as the server writes it, errors with their SQLSTATE, the session usable after one")
    func copyOut() async throws {
        let url = try await TestPostgres.url()
        let rows = try await CopyOutSession.with(url) { session in
            var data = ByteBuffer()
            let count = try await session.copyOut("""
                COPY (SELECT E'a\\tb\\\\c\\nd', NULL::text, 1.5::float8, '2026-12-01 10:00+00'::timestamptz AT TIME ZONE 'UTC',
                             interval '1 day 2 hours' FROM generate_series(1, 3)) TO STDOUT
                """, chunkSize: 40) { chunk, _ in
                var chunk = chunk
                data.writeBuffer(&chunk)
            }
            #expect(String(buffer: data) == String(repeating: "a\\tb\\\\c\\nd\t\\N\t1.5\t2026-12-01 10:00:00\t1 day 02:00:00\n", count: 3))
            await #expect {
                _ = try await session.copyOut("COPY (SELECT * FROM no_such_table) TO STDOUT") { _, _ in }
            } throws: { error in
                (error as? CopyOutSession.ServerError)?.sqlState == "42P01"
            }
            try await session.execute("SELECT 1; SELECT 2")
            return count
        }
        #expect(rows == 3)
    }

    @Test("a wrong password is one clear error that does not contain it; against a server without TLS, sslmode=require is one clear error and prefer goes on in plain text")
    func refusals() async throws {
        var url = try await TestPostgres.url()
        url.password = "not-the-password-7f3a"
        await #expect {
            try await CopyOutSession.with(url) { _ in }
        } throws: { error in
            let text = "\(error)"
            return (error as? CopyOutSession.ServerError)?.sqlState == "28P01" && !text.contains("not-the-password-7f3a")
        }
        var tls = try await TestPostgres.url()
        tls.tls = .require
        let error = await #expect(throws: TenantryError.self) {
            try await CopyOutSession.with(tls) { _ in }
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(error?.code == .connectionFailed && text.contains("does not support TLS") && !text.contains("\n"), "\(text)")
        #expect(!text.contains(try await TestPostgres.server().password))
        tls.tls = .prefer
        let ssl = try await CopyOutSession.with(tls) { session in
            var data = ByteBuffer()
            _ = try await session.copyOut("COPY (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) TO STDOUT") { chunk, _ in
                var chunk = chunk
                data.writeBuffer(&chunk)
            }
            return String(buffer: data)
        }
        #expect(ssl == "f\n")
    }
}
