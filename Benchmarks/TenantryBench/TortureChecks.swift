import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryCore

/// What the checks after each round found. Each finding is a string naming the row, kept in a
/// set over the run, so a row found again in a later round counts once.
struct TortureFindings: Sendable {
    var lost: Set<String> = []
    var duplicated: Set<String> = []
    var crossTenant: Set<String> = []
    var differences: Set<String> = []
    /// HandyShop writes whose COMMIT failed but committed (a server restart): not losses.
    var inDoubt = 0

    var clean: Bool { lost.isEmpty && duplicated.isEmpty && crossTenant.isEmpty && differences.isEmpty }
}

extension TortureWorld {
    /// Everything captured is applied (the relay, once, through the CLI), dead letters handled
    /// as the runbook says; returns a note when it did not end clean.
    func settle() async throws -> String? {
        var stalled = 0
        for _ in 0..<60 {
            // Dead letters first: `sync run --until-caught-up` exits 0 while a tenant is paused by
            // a reverse dead letter (it looks for "dead letter" at the start of the reason). Each
            // colliding id recorded while a tenant was retired becomes a letter of its own, one at
            // a time as the stream reaches it: discard, sync, until none is left.
            let (discarded, replayed) = try await resolveDeadLetters()
            let outcome = try await child.run(["sync", "run", "--until-caught-up", "--timeout", "120"])
            let letters = try await DeadLetters(unifiedURL: bed.unifiedURL, logger: Bench.logger).list()
            if outcome.succeeded && letters.isEmpty { return nil }
            stalled = discarded == 0 && replayed == 0 ? stalled + 1 : 0
            if stalled >= 3 {
                let list = try await child.run(["dlq", "list"])
                return "sync not clean: \(outcome.lastLine); \(list.output.split(separator: "\n").prefix(3).joined(separator: " | "))"
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        return "sync not clean after 60 rounds of dead letters"
    }

    /// Every acknowledged write looked up row by row where its shop's data lives now; unified and
    /// the tenant databases searched for rows written by a tenant other than their owner; every
    /// tenant with two copies compared table by table.
    func check(into findings: inout TortureFindings) async throws {
        let collisions = writers.collisions
        let byShop = Dictionary(grouping: writers.rows, by: \.shop)
        for shop in bed.shops {
            let home = try await home(shop)
            let found = try await customerNotes(shop, home: home)
            for row in byShop[shop] ?? [] {
                guard let acked = row.acked else { continue }
                let copies = found[row.label] ?? []
                guard let notes = copies.first else {
                    findings.lost.insert("shop \(shop): customer \(row.label) missing (acknowledged v\(acked))")
                    continue
                }
                if copies.count > 1 { findings.duplicated.insert("shop \(shop): customer \(row.label) ×\(copies.count)") }
                let version = TortureWriters.version(of: notes) ?? -1
                if version < acked {
                    findings.lost.insert("shop \(shop): customer \(row.label) at v\(version), acknowledged v\(acked)")
                }
            }
        }
        for load in loads.withLockedValue({ $0 }) {
            for line in try await load.lostWrites() {
                if Self.inDoubt(line) { findings.inDoubt += 1 } else { findings.lost.insert(line) }
            }
        }
        for line in try await crossTenantRows() { findings.crossTenant.insert(line) }
        for shop in bed.shops where !quarantined.withLockedValue({ $0.contains(shop) }) {
            let excluded = collisions.filter { $0.shop == shop }.map(\.id)
            for line in try await copyDifferences(shop, excludingCustomers: excluded) { findings.differences.insert(line) }
        }
    }

    /// Label → `notes` of the writers' customers of `shop` where its data lives.
    private func customerNotes(_ shop: TenantID, home: PostgresURL?) async throws -> [String: [String]] {
        let sql = home == nil
            ? "SELECT email, notes FROM customers WHERE shop_id = \(shop.rawValue) AND email LIKE 'tw-%'"
            : "SELECT email, notes FROM customers WHERE email LIKE 'tw-%'"
        var result: [String: [String]] = [:]
        try await Database.withConnection(home ?? bed.unifiedURL, logger: Bench.logger) { connection in
            for try await (email, notes) in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Bench.logger)
                .decode((String, String?).self) {
                result[email, default: []].append(notes ?? "")
            }
        }
        return result
    }

    /// A HandyShop status one step past the acknowledged one: that change's COMMIT failed (the
    /// server restarted under it) yet committed, so the load never heard of it. Not a loss.
    static func inDoubt(_ line: String) -> Bool {
        let statuses = ["received", "diagnosing", "waiting_for_parts", "in_repair", "ready_for_pickup", "done"]
        guard let has = line.range(of: " has status "), let acked = line.range(of: ", acknowledged ") else { return false }
        let status = String(line[has.upperBound..<acked.lowerBound])
        let acknowledged = String(line[acked.upperBound...])
        guard let index = statuses.firstIndex(of: acknowledged) else { return false }
        return statuses[(index + 1) % statuses.count] == status
    }

    /// Rows whose `notes` say they were written by another tenant than the one owning them:
    /// `shop_id` in unified, the database's tenant in a tenant database (both of a server move).
    func crossTenantRows() async throws -> [String] {
        var result = try await TestQueries.strings(bed.unifiedURL, """
            SELECT 'unified customers.id ' || id || ' (shop ' || shop_id || ') has ' || notes FROM customers
            WHERE notes LIKE 'tw:%' AND split_part(notes, ':', 2) <> shop_id::text
            """)
        for shop in bed.shops {
            for (name, url) in try await tenantDatabases(shop) {
                result += try await TestQueries.strings(url, """
                    SELECT 'tenant \(shop.rawValue) (\(name)) customers.id ' || id || ' has ' || notes FROM customers
                    WHERE notes LIKE 'tw:%' AND split_part(notes, ':', 2) <> '\(shop.rawValue)'
                    """)
            }
        }
        return result
    }

    /// Rows of `shop` that differ between two of its copies (unified, a tenant database), table by
    /// table (independent of the Verifier), leaving out the customers the colliding writers made.
    func differences(_ shop: TenantID, _ left: TortureCopy, _ right: TortureCopy, excludingCustomers excluded: [Int64]) async throws -> [String] {
        var result: [String] = []
        let skip = excluded.isEmpty ? "" : " AND id NOT IN (\(excluded.map(String.init).joined(separator: ",")))"
        for table in bed.plan.tables {
            let columns = try table.columns.map { try SQLIdentifier.quoted($0.name) }.joined(separator: ", ")
            let extra = table.name == "customers" ? skip : ""
            func rows(_ copy: TortureCopy) async throws -> Set<String> {
                Set(try await TestQueries.strings(copy.url, copy.unified
                    ? "SELECT ROW(\(columns))::text FROM \(bed.plan.unifiedName(table)) WHERE shop_id = \(shop.rawValue)\(extra)"
                    : "SELECT ROW(\(columns))::text FROM \(table.quoted) WHERE true\(extra)"))
            }
            let (a, b) = (try await rows(left), try await rows(right))
            for row in a.subtracting(b).sorted().prefix(20) {
                result.append("shop \(shop) \(table.name): only in \(left.name) (not \(right.name)): \(row.prefix(120))")
            }
            for row in b.subtracting(a).sorted().prefix(20) {
                result.append("shop \(shop) \(table.name): only in \(right.name) (not \(left.name)): \(row.prefix(120))")
            }
        }
        return result
    }

    /// The runbook's answer to dead letters: a reverse change refused because it would overwrite
    /// another tenant's row in unified (a colliding id) is dropped once its row is removed from
    /// the tenant database (`tenantry dlq discard`: it must never apply); any other letter is
    /// replayed (`tenantry dlq replay`).
    /// Returns how many were discarded and replayed.
    func resolveDeadLetters() async throws -> (discarded: Int, replayed: Int) {
        let letters = DeadLetters(unifiedURL: bed.unifiedURL, logger: Bench.logger)
        let all = try await letters.list()
        guard !all.isEmpty else { return (0, 0) }
        let crossTenant = all.filter { $0.error.contains("would overwrite") }
        var discarded = 0
        if !crossTenant.isEmpty {
            _ = try await removeCollisions()
            for tenant in Set(crossTenant.map(\.tenant)) {
                let ids = crossTenant.filter { $0.tenant == tenant }.map { String($0.id) }
                let outcome = try await child.run(["dlq", "discard", "--tenant", tenant.rawValue] + ids.flatMap { ["--id", $0] })
                if outcome.succeeded {
                    discarded += ids.count
                } else {
                    Bench.note("    dlq discard --tenant \(tenant) failed: \(outcome.lastLine)")
                }
            }
            discardedLetters.withLockedValue { [discarded] in $0 += discarded }
        }
        let others = all.count - crossTenant.count
        if others > 0 {
            let list = try await child.run(["dlq", "list"])
            Bench.note("    dead letters: \(list.output.split(separator: "\n").prefix(3).joined(separator: " | "))")
            _ = try await child.run(["dlq", "replay"])
        }
        return (discarded, others)
    }

    /// The operator's fix for the colliding writers' rows (an application bug: ids that belong to
    /// another shop): removed from the tenant databases once checked.
    func removeCollisions() async throws -> Int {
        var removed = 0
        for collision in writers.collisions {
            // Where the shop's writes go now (the live database during a server move).
            let situation = try await situation(collision.shop)
            guard situation.provisioned else { continue }
            let url = try databaseURL(situation)
            do {
                try await Database.withConnection(url, logger: Bench.logger) { connection in
                    var query = PostgresQuery(unsafeSQL: "DELETE FROM customers WHERE id = \(collision.id) AND email = $1")
                    query.binds.append(collision.label)
                    try await connection.query(query, logger: Bench.logger)
                }
                removed += 1
            } catch {
                let state = try await TestQueries.strings(url, "SELECT row(tenantry.capture_state.*)::text FROM tenantry.capture_state")
                Bench.note("    could not remove colliding row \(collision.id) of shop \(collision.shop): "
                    + "\(Database.message(of: error)); tenant capture_state: \(state); \(situation)")
            }
        }
        writers.clearCollisions()
        return removed
    }
}
