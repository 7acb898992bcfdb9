import Foundation
import HandyShop
import PostgresNIO
import Tenantry
import TenantryTestSupport
import Testing

@Suite("HandyShop hostile values round-trip", .timeLimit(.minutes(5)))
struct HandyShopHostileTests {
    /// Byte-wise equality (Swift's `==` on strings ignores Unicode normalization differences).
    func same(_ a: [String?], _ b: [String?]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.map { Array($0.utf8) } == $1.map { Array($0.utf8) } }
    }

    @Test("texts, arrays, JSON, doubles, numerics, times, bytea and inet arrive exactly")
    func hostileValues() async throws {
        let (url, _) = try await HS.generated(shops: 5, rowsPerShop: 200)
        let strings = HandyShopGenerator.hostileStrings
        let notes = try await TestPostgres.strings(url, "SELECT notes FROM customers WHERE id <= \(strings.count) ORDER BY id")
        #expect(same(notes, strings), "customers.notes 1...\(strings.count) are the hostile strings, byte for byte")
        #expect(strings.contains("\\N") && strings.contains("") && strings.contains { $0.contains("\t") })

        let elements = try await TestPostgres.strings(url, """
            SELECT x FROM customers, unnest(tags) WITH ORDINALITY AS u(x, n) WHERE id = 1 ORDER BY n
            """)
        #expect(same(elements, HandyShopGenerator.hostileArray))

        try await Database.withConnection(url, logger: HS.logger) { connection in
            let json = HandyShopGenerator.hostileJSON
            let rows = try await connection.query(
                "SELECT address = \(json)::jsonb, address->>'note' FROM customers WHERE id = 1", logger: HS.logger)
            for try await (equal, note) in rows.decode((Bool, String).self) {
                #expect(equal)
                #expect(Array(note.utf8) == Array("line1\nline2 \"quoted\" back\\slash \\N \u{01}".utf8))
            }
            // Every hostile string is somewhere verbatim (bound as a parameter, compared byte for byte).
            for value in strings {
                let rows = try await connection.query(
                    "SELECT count(*)::int FROM customers WHERE notes = \(value)", logger: HS.logger)
                for try await count in rows.decode(Int.self) { #expect(count >= 1) }
            }
            for value in HandyShopGenerator.specialTimestamps {
                let rows = try await connection.query(
                    "SELECT count(*)::int FROM repairs WHERE completed_at = \(value)::timestamptz", logger: HS.logger)
                for try await count in rows.decode(Int.self) { #expect(count >= 1, "\(value)") }
            }
            for value in HandyShopGenerator.specialIntervals {
                let rows = try await connection.query(
                    "SELECT count(*)::int FROM repairs WHERE estimated_duration = \(value)::interval", logger: HS.logger)
                for try await count in rows.decode(Int.self) { #expect(count >= 1, "\(value)") }
            }
            for value in HandyShopGenerator.specialNumerics {
                let rows = try await connection.query(
                    "SELECT count(*)::int FROM cost_estimates WHERE exchange_rate = \(value)::numeric", logger: HS.logger)
                for try await count in rows.decode(Int.self) { #expect(count >= 1, "\(value)") }
            }
        }

        let doubles = try await TestPostgres.strings(url, """
            SELECT screen_size_inches::text FROM user_models WHERE id <= \(HandyShopGenerator.specialDoubles.count) ORDER BY id
            """)
        #expect(doubles == HandyShopGenerator.specialDoubles)

        let hex = try await TestPostgres.strings(url, "SELECT encode(image, 'hex') FROM signatures WHERE id <= 3 ORDER BY id")
        let all = HandyShopGenerator.allBytes.map { String(format: "%02x", $0) }.joined()
        let reversed = HandyShopGenerator.allBytes.reversed().map { String(format: "%02x", $0) }.joined()
        #expect(hex == [all, reversed, ""])
        #expect(try await HS.int(url, """
            SELECT count(DISTINCT get_byte(image, i)) FROM signatures, generate_series(0, 255) i WHERE id = 1
            """) == 256)

        #expect(try await HS.int(url, "SELECT count(*) FROM kiosk_online_status WHERE family(ip_address) = 4") >= 1)
        #expect(try await HS.int(url, "SELECT count(*) FROM kiosk_online_status WHERE family(ip_address) = 6") >= 1)
    }

    @Test("hostile values are spread: NULL in every nullable tenant column, specials in many rows")
    func spread() async throws {
        let (url, _) = try await HS.generated(shops: 5, rowsPerShop: 200)
        let nullable = try await HS.names(url, """
            SELECT table_name || '.' || column_name FROM information_schema.columns
            WHERE table_schema = 'public' AND is_nullable = 'YES' AND is_generated = 'NEVER' ORDER BY 1
            """)
        var checked = 0
        for entry in nullable {
            let parts = entry.split(separator: ".").map(String.init)
            guard HandyShopSchema.tenantTables.contains(parts[0]) else { continue }
            checked += 1
            let nulls = try await HS.int(url, "SELECT count(*) FROM \(parts[0]) WHERE \(parts[1]) IS NULL")
            #expect(nulls >= 1, "\(entry) has a NULL")
        }
        #expect(checked > 80)
        // Texts with COPY-special characters outside the guaranteed rows.
        let special = "strpos(%@, E'\\t') > 0 OR strpos(%@, E'\\n') > 0 OR strpos(%@, E'\\\\') > 0 OR strpos(%@, E'\\r') > 0"
        let issues = special.replacingOccurrences(of: "%@", with: "issue_description")
        #expect(try await HS.int(url, "SELECT count(*) FROM repairs WHERE \(issues)") >= 2)
        #expect(try await HS.int(url, "SELECT count(*) FROM repairs WHERE array_position(tags, NULL) IS NOT NULL") >= 1)
        #expect(try await HS.int(url, "SELECT count(*) FROM user_models WHERE screen_size_inches = 'NaN'") >= 1)
        #expect(try await HS.int(url, "SELECT count(*) FROM user_models WHERE screen_size_inches IN ('Infinity', '-Infinity')") >= 2)
        #expect(try await HS.int(url, """
            SELECT count(*) FROM repair_status_history
            WHERE changed_at IN ('infinity', '-infinity') OR changed_at < '1901-01-01' OR changed_at > '9000-01-01'
            """) >= 1)
        #expect(try await HS.int(url, "SELECT count(*) FROM customers WHERE email IS NOT NULL AND email <> lower(email)") >= 1)
        #expect(try await HS.int(url, "SELECT count(*) FROM email_templates WHERE template_key LIKE '%📱%'") >= 1)
    }
}

@Suite("HandyShop volume")
struct HandyShopVolumeTests {
    /// Opt-in (`HANDYSHOP_LARGE_ROWS=1000000`): loads about that many tenant rows and reports the time.
    @Test("a large generation loads and counts add up",
          .enabled(if: ProcessInfo.processInfo.environment["HANDYSHOP_LARGE_ROWS"] != nil))
    func large() async throws {
        let rows = Int(ProcessInfo.processInfo.environment["HANDYSHOP_LARGE_ROWS"] ?? "") ?? 1_000_000
        let shops = 20
        let clock = ContinuousClock()
        let start = clock.now
        let (url, report) = try await HS.generated(shops: shops, rowsPerShop: max(1, rows / shops))
        let elapsed = clock.now - start
        print("handyshop: \(report.tenantRows) tenant rows (\(report.totalRows) in all) in \(elapsed)")
        #expect(try await HS.int(url, "SELECT count(*) FROM repair_status_history") == report.rowsByTable["repair_status_history"])
    }
}
