import Foundation
import HandyShop
import Logging
import NIOConcurrencyHelpers
import PostgresNIO
@testable import Tenantry
import TenantryCore
import TenantryTestSupport
import Testing

/// Retire-legacy's batches (several tenants in one transaction: one archive read per table, one
/// delete statement, one integrity check) and its fingerprint verification (one statement per
/// side and tenant, the chunked comparison only when they differ).
@Suite("retire-legacy batches and fingerprint verification: same rows, same refusals, complete archive", .timeLimit(.minutes(4)))
struct RetireBatchTests {
    let logger = MoveFixture.logger

    /// Four HandyShop shops; shops 1–3 copied and cut over (dedicated), shop 4 stays shared. One
    /// worker, batches of 8: the three tenants go in one batch.
    func withDedicated(_ body: @Sendable (MoveFixture, Relay, Catalog, Retirement) async throws -> Void) async throws {
        let fixture = try await MoveFixture.make(shops: 4, rowsPerShop: 40, provision: 3)
        try await fixture.withDedicatedTenants(concurrency: 1, batchSize: 8) { try await body(fixture, $0, $1, $2) }
    }

    /// Every row of shop `shop` in every tenant table, as text, per table, sorted.
    static func rows(of shop: Int, _ fixture: MoveFixture) async throws -> [String: [String?]] {
        var rows: [String: [String?]] = [:]
        for table in fixture.plan.tables {
            rows[table.name] = try await TestPostgres.strings(
                fixture.unifiedURL, "SELECT t::text FROM \"\(table.name)\" t WHERE shop_id = \(shop) ORDER BY 1")
        }
        return rows
    }

    static func paused(_ fixture: MoveFixture, _ id: TenantID) async throws -> [String?] {
        try await TestPostgres.strings(
            try await fixture.tenantURL(id), "SELECT sync_paused::text FROM tenantry.capture_state WHERE tenant_id = '\(id.rawValue)'")
    }

    @Test("three tenants in one batch: exactly their rows go, the archive holds every row of each, restore brings back the same rows")
    func batchArchiveComplete() async throws {
        try await withDedicated { fixture, _, catalog, retirement in
            let before = try await [1, 2, 3].asyncMap { try await Self.rows(of: $0, fixture) }
            let shared = try await Self.rows(of: 4, fixture)
            let steps = NIOLockedValueBox<[String]>([])
            var retirement = retirement
            retirement.timing = { step, _ in steps.withLockedValue { $0.append(step) } }
            let archiveRoot = try CLIRunner.makeDirectory()
            let report = try await retirement.retire(archiveDirectory: archiveRoot, dryRun: false)
            #expect(report.tenants == fixture.ids)
            #expect(steps.withLockedValue { $0 }.filter { $0 == "check" }.count == 1, "one integrity check for the batch: \(steps.withLockedValue { $0 })")
            for (index, id) in fixture.ids.enumerated() {
                let deleted = report.tables.filter { $0.tenant == id }
                #expect(deleted.count == fixture.plan.tables.count)
                for table in deleted {
                    #expect(table.rows == before[index][table.table]?.count, "tenant \(id) \(table.table): deleted = the rows it had")
                }
                #expect(try await Self.rows(of: index + 1, fixture).values.allSatisfy(\.isEmpty))
                #expect(try await catalog.move(id)?.phase == .retired)
                #expect(try await Self.paused(fixture, id) == ["true"])
            }
            #expect(try await Self.rows(of: 4, fixture) == shared, "the shared shop keeps every row")
            #expect(try await RetireSetBasedTests.dangling(fixture).isEmpty)
            // The manifest: one entry per tenant and table, with the rows each tenant had.
            let archive = try #require(report.archive)
            let manifest = try JSONSerialization.jsonObject(
                with: try Data(contentsOf: URL(fileURLWithPath: archive + "/manifest.json"))) as? [String: Any]
            let entries = manifest?["tables"] as? [[String: Any]] ?? []
            #expect(entries.count == fixture.ids.count * fixture.plan.tables.count)
            for (index, id) in fixture.ids.enumerated() {
                for entry in entries where entry["tenant"] as? String == id.rawValue {
                    let table = entry["table"] as? String ?? ""
                    #expect(entry["rows"] as? Int == before[index][table]?.count, "archive of tenant \(id) \(table)")
                    let file = archive + "/" + (entry["file"] as? String ?? "")
                    let lines = String(decoding: try Data(contentsOf: URL(fileURLWithPath: file)), as: UTF8.self)
                        .split(separator: "\n", omittingEmptySubsequences: true)
                    #expect(lines.count == before[index][table]?.count, "file of tenant \(id) \(table)")
                    #expect(lines.allSatisfy { $0.hasPrefix("\(id.rawValue)\t") }, "only tenant \(id)'s rows in its file")
                }
            }
            _ = try await retirement.restore(archive: archive)
            for (index, shop) in [1, 2, 3].enumerated() {
                #expect(try await Self.rows(of: shop, fixture) == before[index], "shop \(shop) restored row for row")
            }
        }
    }

    @Test("row by row (per-row triggers) in a batch: the same rows go, per tenant and table, nothing else changes, nothing dangles")
    func rowByRowBatch() async throws {
        try await withDedicated { fixture, _, catalog, retirement in
            let before = try await [1, 2, 3].asyncMap { try await Self.rows(of: $0, fixture) }
            let shared = try await Self.rows(of: 4, fixture)
            var rowByRow = retirement
            rowByRow.deleteMethod = .rowTriggers
            let report = try await rowByRow.retire(archiveDirectory: nil, dryRun: false)
            #expect(report.tenants == fixture.ids)
            for (index, id) in fixture.ids.enumerated() {
                for table in report.tables where table.tenant == id {
                    #expect(table.rows == before[index][table.table]?.count, "tenant \(id) \(table.table)")
                }
                #expect(try await Self.rows(of: index + 1, fixture).values.allSatisfy(\.isEmpty))
                #expect(try await catalog.move(id)?.phase == .retired)
            }
            #expect(try await Self.rows(of: 4, fixture) == shared)
            #expect(try await RetireSetBasedTests.dangling(fixture).isEmpty)
        }
    }

    @Test("a batch refused by one tenant's outside reference rolls back whole; one by one, the tenant before commits, the refused one and the one after keep everything")
    func batchRefusedRetriedAlone() async throws {
        try await withDedicated { fixture, _, catalog, retirement in
            // Shop 4 (shared) lends a loaner against a repair of shop 2.
            _ = try await TestPostgres.strings(fixture.unifiedURL, """
                INSERT INTO loaner_devices (shop_id, repair_id, name)
                SELECT 4, min(id), 'borrowed across shops' FROM repairs WHERE shop_id = 2 RETURNING 'x'
                """)
            let second = try await Self.rows(of: 2, fixture)
            let third = try await Self.rows(of: 3, fixture)
            let shared = try await Self.rows(of: 4, fixture)
            let archiveRoot = try CLIRunner.makeDirectory()
            let error = await #expect(throws: TenantryError.self) {
                _ = try await retirement.retire(archiveDirectory: archiveRoot, dryRun: false)
            }
            let message = error?.message ?? ""
            #expect(message.contains("tenant 2") && message.contains("loaner_devices") && message.contains("nothing of this tenant was deleted"),
                    "\(message)")
            #expect(try await catalog.move(fixture.ids[0])?.phase == .retired)
            #expect(try await Self.rows(of: 1, fixture).values.allSatisfy(\.isEmpty))
            #expect(try await catalog.move(fixture.ids[1])?.phase == .dedicated)
            #expect(try await Self.rows(of: 2, fixture) == second)
            #expect(try await catalog.move(fixture.ids[2])?.phase == .dedicated)
            #expect(try await Self.rows(of: 3, fixture) == third)
            #expect(try await Self.rows(of: 4, fixture) == shared)
            #expect(try await Self.paused(fixture, fixture.ids[1]) == ["false"], "the refused tenant's stream resumed")
            #expect(try await Self.paused(fixture, fixture.ids[2]) == ["false"], "the tenant after it resumed too")
            let root = archiveRoot + "/" + (try FileManager.default.contentsOfDirectory(atPath: archiveRoot).first ?? "")
            #expect(try FileManager.default.contentsOfDirectory(atPath: root).sorted() == ["1", "manifest.json"])
            #expect(try await RetireSetBasedTests.dangling(fixture).isEmpty)
        }
    }

    @Test("a reference between two tenants of one batch is refused as one at a time would refuse it: nothing of either deleted")
    func crossTenantReferenceInBatch() async throws {
        try await withDedicated { fixture, relay, catalog, _ in
            // Not verified first: shop 3's database cannot hold the row (its repair is not there).
            var retirement = Retirement(
                catalog: catalog, servers: fixture.directory(), unifiedURL: fixture.unifiedURL, plan: fixture.plan, relay: relay,
                verifyFirst: false, actor: "test", logger: logger)
            retirement.concurrency = 1
            // Shop 3 lends a loaner against a repair of shop 2 (both in the batch).
            try await Database.withConnection(fixture.unifiedURL, logger: logger) { connection in
                try await connection.query("SET tenantry.applying = 'on'", logger: MoveFixture.logger)
                try await connection.query("""
                    INSERT INTO loaner_devices (shop_id, repair_id, name)
                    SELECT 3, min(id), 'borrowed across shops' FROM repairs WHERE shop_id = 2
                    """, logger: MoveFixture.logger)
            }
            let set = Retirement.TenantSet(ids: fixture.ids, plan: fixture.plan)
            let keys = try await Database.withConnection(fixture.unifiedURL, logger: logger) {
                try await TenantForeignKey.load(fixture.plan, on: $0, logger: MoveFixture.logger)
            }
            let loaners = keys.filter { $0.table == "loaner_devices" }
            let check = TenantForeignKey.outsideReferencesSQL(loaners, plan: fixture.plan, tenants: set)
                .replacingOccurrences(of: "$1", with: "'{1,2,3}'")
            let counts = try await TestPostgres.strings(fixture.unifiedURL, "SELECT a::text FROM (\(check)) s(a)")
            let expected = "{" + loaners.map { $0.referencedTable == "repairs" ? "1" : "0" }.joined(separator: ",") + "}"
            #expect(counts == [expected], "the batch check counts the cross-tenant row once, on its foreign key")
            let second = try await Self.rows(of: 2, fixture)
            let error = await #expect(throws: TenantryError.self) {
                _ = try await retirement.retire(archiveDirectory: try CLIRunner.makeDirectory(), dryRun: false)
            }
            let message = error?.message ?? ""
            #expect(message.contains("refused for tenant 2") && message.contains("loaner_devices"), "\(message)")
            #expect(try await catalog.move(fixture.ids[0])?.phase == .retired, "tenant 1, retried alone, commits")
            #expect(try await catalog.move(fixture.ids[1])?.phase == .dedicated, "tenant 2 is refused: shop 3's row references it")
            #expect(try await catalog.move(fixture.ids[2])?.phase == .dedicated)
            #expect(try await Self.rows(of: 2, fixture) == second)
            #expect(try await RetireSetBasedTests.dangling(fixture).isEmpty)
        }
    }

    @Test("a row that differs between unified and a tenant database: its fingerprints differ, the chunked comparison names it, nothing of any tenant is deleted")
    func fingerprintFindsDrift() async throws {
        try await withDedicated { fixture, _, catalog, retirement in
            let verifier = Verifier(plan: fixture.plan, logger: logger)
            let third = fixture.ids[2]
            let tenantURL = try await fixture.tenantURL(third)
            let equal = try await Database.withConnection(fixture.unifiedURL, logger: logger) { unified in
                try await verifier.prepareForFingerprints(unified)
                return try await verifier.verifyByFingerprint(third, unified: unified, unifiedURL: fixture.unifiedURL, tenantURL: tenantURL)
            }
            #expect(equal.equal && equal.tables.allSatisfy { $0.chunks == 1 && $0.unifiedRows == $0.tenantRows })
            #expect(equal.tables.first { $0.table == "customers" }?.unifiedRows ?? 0 > 0)
            // Drift in shop 3's database, behind capture's back.
            try await Database.withConnection(tenantURL, logger: logger) { connection in
                try await connection.query("SET tenantry.applying = 'on'", logger: logger)
                try await connection.query("UPDATE customers SET notes = 'drift' WHERE id = (SELECT min(id) FROM customers)", logger: logger)
            }
            let found = try await Database.withConnection(fixture.unifiedURL, logger: logger) { unified in
                try await verifier.prepareForFingerprints(unified)
                let unifiedSide = try await verifier.fingerprint(third, on: unified)
                let tenantSide = try await Database.withConnection(tenantURL, logger: MoveFixture.logger) { tenantDatabase in
                    try await verifier.prepareForFingerprints(tenantDatabase)
                    return try await verifier.fingerprint(nil, on: tenantDatabase)
                }
                #expect(unifiedSide != tenantSide)
                #expect(zip(unifiedSide.tables, tenantSide.tables).filter { $0 != $1 }.map(\.0.table) == ["customers"])
                return try await verifier.verifyByFingerprint(third, unified: unified, unifiedURL: fixture.unifiedURL, tenantURL: tenantURL)
            }
            #expect(!found.equal)
            #expect(found.tables.first { $0.table == "customers" }?.differences.map(\.kind) == [.changed], "named row by row")
            let before = try await [1, 2, 3].asyncMap { try await Self.rows(of: $0, fixture) }
            let error = await #expect(throws: TenantryError.self) {
                _ = try await retirement.retire(archiveDirectory: try CLIRunner.makeDirectory(), dryRun: false)
            }
            let message = error?.message ?? ""
            #expect(message.contains("refused") && message.contains("tenant 3 (customers: 1 row(s))") && message.contains("nothing was deleted"),
                    "\(message)")
            for (index, shop) in [1, 2, 3].enumerated() {
                #expect(try await Self.rows(of: shop, fixture) == before[index], "shop \(shop) keeps every row")
                #expect(try await catalog.move(fixture.ids[index])?.phase == .dedicated)
                #expect(try await Self.paused(fixture, fixture.ids[index]) == ["false"])
            }
        }
    }
}

extension Array where Element: Sendable {
    /// `map` with an async transform, in order (retire batch tests).
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
