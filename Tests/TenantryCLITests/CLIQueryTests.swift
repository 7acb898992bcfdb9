import Foundation
import PostgresNIO
import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("tenantry query: one read-only query across tenants from the CLI", .timeLimit(.minutes(3)))
struct CLIQueryTests {
    /// Tenants 1 and 2 dedicated (their databases hold `customers`), tenant 3 shared (its rows in
    /// the unified database, next to shop 9's, which is no tenant).
    static func fleet() async throws -> CLIProvisioningFixture {
        let fixture = try await CLIProvisioningFixture.make("q")
        let provision = try await fixture.run(["provision", "1", "2"])
        try #require(provision.status == 0, "provision failed: \(provision.stderr)")
        let rows = ["1": "(1, 'Ada'), (2, 'Bo, \"the\" Builder')", "2": "(1, 'slow')"]
        for (id, values) in rows {
            try await Database.withConnection(try await TestPostgres.url(database: fixture.database(id)), logger: TestPostgres.logger) {
                try await $0.query(PostgresQuery(unsafeSQL: "INSERT INTO customers (id, name) VALUES \(values)"), logger: TestPostgres.logger)
            }
        }
        try await Database.withConnection(fixture.url, logger: TestPostgres.logger) { connection in
            for sql in [
                "CREATE TABLE customers (shop_id bigint NOT NULL, id bigint NOT NULL, name text NOT NULL, PRIMARY KEY (shop_id, id))",
                "INSERT INTO customers VALUES (3, 1, 'Cy'), (9, 1, 'not a tenant'), (1, 1, 'stale')",
                "UPDATE tenantry.tenants SET placement = 'dedicated' WHERE id IN ('1', '2')",
                "INSERT INTO tenantry.tenants (id) VALUES ('3')",
            ] {
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: TestPostgres.logger)
            }
        }
        return fixture
    }

    struct Answer: Decodable, Equatable {
        struct Missing: Decodable, Equatable { var tenant: String; var error: String }
        var rows: [[String: String?]]
        var tenants: Int
        var missing: [Missing]
    }

    @Test("json, csv and table output; combine; an unknown tenant and a write refused are one clear error")
    func formats() async throws {
        let fixture = try await Self.fleet()
        let sql = "select id, name from customers order by id"
        let json = try await fixture.run(["query", "--tenants", "all", sql, "--format", "json"])
        #expect(json.status == 0, "\(json.stderr)")
        #expect(json.stdout.split(separator: "\n").count == 1)
        let answer = try JSONDecoder().decode(Answer.self, from: Data(json.lastLine.utf8))
        #expect(answer.tenants == 3 && answer.missing.isEmpty)
        #expect(answer.rows.sorted { ($0["tenant_id"]! ?? "", $0["id"]! ?? "") < ($1["tenant_id"]! ?? "", $1["id"]! ?? "") } == [
            ["tenant_id": "1", "id": "1", "name": "Ada"], ["tenant_id": "1", "id": "2", "name": "Bo, \"the\" Builder"],
            ["tenant_id": "2", "id": "1", "name": "slow"], ["tenant_id": "3", "id": "1", "name": "Cy"]])
        #expect(json.lastLine.hasPrefix("{\"rows\":[{\"tenant_id\":"))

        let csv = try await fixture.run(["query", "--tenants", "1,3", sql, "--format", "csv"])
        #expect(csv.status == 0, "\(csv.stderr)")
        let lines = csv.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "tenant_id,id,name")
        #expect(Set(lines.dropFirst()) == ["1,1,Ada", "1,2,\"Bo, \"\"the\"\" Builder\"", "3,1,Cy"])
        #expect(csv.stderr.contains("3 rows from 2 of 2 tenants"))

        let table = try await fixture.run(["query", "--tenants", "3", sql])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout == "tenant_id  id  name\n---------  --  ----\n3          1   Cy\n")

        let combined = try await fixture.run([
            "query", "--tenants", "all", "select count(*) as n from customers", "--combine", "select sum(n) as total from results",
            "--format", "csv"])
        #expect(combined.status == 0, "\(combined.stderr)")
        #expect(combined.stdout == "total\n4\n")

        let unknown = try await fixture.run(["query", "--tenants", "1,7", sql])
        #expect(unknown.status != 0 && unknown.stderr.contains("unknown tenant 7"), "\(unknown.stderr)")
        let write = try await fixture.run(["query", "--tenants", "all", "delete from customers"])
        #expect(write.status != 0 && write.stderr.contains("cannot execute DELETE in a read-only transaction"), "\(write.stderr)")
        #expect(try await TestPostgres.strings(fixture.url, "SELECT count(*)::text FROM customers") == ["3"])
        let badFormat = try await fixture.run(["query", "--tenants", "all", sql, "--format", "xml"])
        #expect(badFormat.status != 0 && badFormat.stderr.contains("--format must be table, json or csv"))
    }

    @Test("a tenant past --timeout: --partial names it in missing; without it the command fails naming it")
    func timeout() async throws {
        let fixture = try await Self.fleet()
        let sql = "select count(*) as n, pg_sleep(case when bool_or(name = 'slow') then 5 else 0 end)::text as slept from customers"
        let partial = try await fixture.run(["query", "--tenants", "all", sql, "--timeout", "300ms", "--partial", "--format", "json"])
        #expect(partial.status == 0, "\(partial.stderr)")
        let answer = try JSONDecoder().decode(Answer.self, from: Data(partial.lastLine.utf8))
        #expect(answer.missing == [.init(tenant: "2", error: "timed out after 300 ms (statement_timeout)")])
        #expect(answer.rows.map { $0["tenant_id"]! ?? "" }.sorted() == ["1", "3"])
        let failed = try await fixture.run(["query", "--tenants", "all", sql, "--timeout", "300ms"])
        #expect(failed.status != 0)
        #expect(failed.stderr.contains("1 of 3 tenants failed: tenant 2: timed out after 300 ms"), "\(failed.stderr)")
        let badTimeout = try await fixture.run(["query", "--tenants", "all", sql, "--timeout", "soon"])
        #expect(badTimeout.status != 0 && badTimeout.stderr.contains("--timeout must be a duration"))
    }
}
