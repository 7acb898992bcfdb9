import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Tenantry
@testable import TenantryHummingbird
import TenantryCore
import TenantryTestSupport
import Testing

@Suite("console against PostgreSQL: fleet mid-move, actions to completion, live values, one catalog query a second", .timeLimit(.minutes(4)))
struct ConsoleFlowTests {
    @Test("copy and verify from the console: confirmation, job progress, audited per tenant with the operator; fleet and tenant pages show the move")
    func actions() async throws {
        let fixture = try await AdminFixture.make(shops: 3, rowsPerShop: 30)
        try await fixture.withConsole { client, _ in
            try #require(try await client.runJob("provision-all", body: #"{"all": true}"#).job["state"] as? String == "succeeded")
            let admin = try await client.logIn(operator: "alice")
            // The API's tenant list (what the fleet table shows), filtered by server; the token is required.
            let listed = try await client.call(.get, "/api/superadmin/tenants")
            #expect((listed.json["tenants"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["1", "2", "3"], "\(listed.text)")
            #expect((listed.json["tenants"] as? [[String: Any]])?.allSatisfy { $0["server"] as? String == "default" } == true)
            #expect((try await client.call(.get, "/api/superadmin/tenants?server=other").json["tenants"] as? [Any])?.isEmpty == true)
            #expect(try await client.call(.get, "/api/superadmin/tenants", token: nil).status == .unauthorized)

            let copy = try await client.runAction("migrate-data", tenants: ["1", "2"], as: admin)
            let copied = try await client.awaitConsoleJob(copy, as: admin)
            #expect(copied.contains("badge state-succeeded"), "\(copied)")
            #expect(copied.contains("id=\"job-result\"") && copied.contains("copied"))

            let fleet = try await client.browse(.get, "/console", cookie: admin.cookie)
            #expect(fleet.text.contains("data-phase=\"syncing\"><span class=\"count\" data-live=\"phase.syncing\">2</span>"), "\(fleet.text.prefix(3000))")
            #expect(fleet.text.contains("data-phase=\"provisioned\"><span class=\"count\" data-live=\"phase.provisioned\">1</span>"))
            for id in ["1", "2", "3"] { #expect(fleet.text.contains("<tr data-tenant=\"\(id)\">")) }
            #expect(fleet.text.contains("id=\"servers\"") && fleet.text.contains("data-server=\"default\""))
            #expect(fleet.element("read-policy")?.hasPrefix("unified") == true, "\(fleet.element("read-policy") ?? "")")

            let verify = try await client.runAction("verify", tenants: ["1"], as: admin)
            let verified = try await client.awaitConsoleJob(verify, as: admin)
            #expect(verified.contains("badge state-succeeded") && verified.contains("&quot;equal&quot; : true"), "\(verified)")

            let tenant = try await client.browse(.get, "/console/tenants/1", cookie: admin.cookie)
            #expect(tenant.status == .ok)
            #expect(tenant.element("tenant-phase") == "syncing", "\(tenant.element("tenant-phase") ?? "")")
            #expect(Int((tenant.element("rows-copied") ?? "").replacingOccurrences(of: ",", with: "")) ?? 0 > 0)
            #expect(tenant.element("queue-depth") == "0")
            #expect(tenant.text.contains("id=\"timeline\"") && tenant.text.contains("<strong>console.migrate-data</strong>")
                    && tenant.text.contains("<strong>console.verify</strong>") && tenant.text.contains("by console:alice@"), "\(tenant.text)")
            #expect(tenant.text.contains("id=\"latency-chart\"") && tenant.text.contains("form method=\"post\" action=\"/console/actions/cutover\""))
            #expect(tenant.element("dead-letters") == "none")

            let audited = try await fixture.audit(action: "console.migrate-data")
            #expect(Set(audited.compactMap(\.tenant)) == ["1", "2"] && audited.allSatisfy { $0.actor.hasPrefix("console:alice@") })
            let finished = try await fixture.audit(action: "api.console.verify")
            #expect(finished.first?.outcome == .ok && finished.first?.actor.hasPrefix("console:alice@") == true)

            // Switching reads for a tenant adds it to the list; the tenants on it stay.
            let first = try await client.runAction("reads", tenants: ["1"], as: admin, extra: [("strategy", "shop-list")])
            #expect(try await client.awaitConsoleJob(first, as: admin).contains("badge state-succeeded"))
            let second = try await client.runAction("reads", tenants: ["2"], as: admin, extra: [("strategy", "shop-list")])
            #expect(try await client.awaitConsoleJob(second, as: admin).contains("badge state-succeeded"))
            let policy = try await Catalog.withCatalog(fixture.url, logger: AdminFixture.logger) { try await $0.readPolicy() }
            #expect(policy.strategy == .shopList && Set(policy.shopIDs.map(\.rawValue)) == ["1", "2"], "\(policy)")

            let performance = try await client.browse(.get, "/console/performance", cookie: admin.cookie)
            #expect(performance.text.contains("id=\"targets\"") && performance.text.contains("P99 latency") && performance.text.contains("id=\"histogram\""))
        }
    }

    @Test("a number changes live while writes arrive; eight watching pages cost the catalog at most one query a second")
    func live() async throws {
        let fixture = try await AdminFixture.make(shops: 2, rowsPerShop: 20)
        try await fixture.withConsole { client, console in
            try #require(try await client.runJob("provision-all", body: #"{"all": true}"#).job["state"] as? String == "succeeded")
            try #require(try await client.runJob("migrate-data", body: #"{"tenants": ["1"]}"#).job["state"] as? String == "succeeded")
            let admin = try await client.logIn()

            // No relay runs here: writes for shop 1 wait in its queue, and the page's queue depth climbs.
            async let stream = client.browse(.get, "/console/events?tenant=1", cookie: admin.cookie)
            for round in 0..<4 {
                try await Task.sleep(for: .milliseconds(500))
                _ = try await TestPostgres.strings(
                    fixture.url, "INSERT INTO customers (shop_id, first_name, last_name) VALUES (1, 'Live', 'Write\(round)')")
            }
            let events = try await stream
            #expect(events.headers[.contentType]?.hasPrefix("text/event-stream") == true)
            let queues = events.messages.compactMap { $0["tenant.1.queue"] }.compactMap(Int.init)
            #expect(queues.first == 0 || queues.first == 1, "\(events.text)")
            #expect(queues.count >= 2 && queues.last ?? 0 > queues.first ?? 0, "the queue depth changed live: \(events.text)")
            #expect(events.messages.first?["tenant.1.phase"] == "syncing")
            #expect(events.messages.allSatisfy { $0.keys.allSatisfy { $0.hasPrefix("tenant.1.") || $0.hasPrefix("relay.") } })

            // However many pages watch, one fleet read a second at most.
            let before = await console.catalogQueries()
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await client.browse(.get, "/console/events", cookie: admin.cookie).messages.count }
                }
                for try await messages in group { #expect(messages >= 1) }
            }
            let seconds = (ContinuousClock.now - started) / .seconds(1)
            let queries = await console.catalogQueries() - before
            #expect(Double(queries) <= seconds + 1.5, "\(queries) catalog queries in \(seconds) s for 8 pages")
        }
    }
}

extension Answer {
    /// The `data:` messages of a server-sent events body, decoded.
    var messages: [[String: String]] {
        text.components(separatedBy: "\n\n").compactMap { block in
            guard let line = block.split(separator: "\n").first(where: { $0.hasPrefix("data: ") }) else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8))) as? [String: String]
        }
    }
}

extension TestClientProtocol {
    /// Reloads a console job page until the job ends; returns the last page.
    func awaitConsoleJob(_ id: String, as browser: ConsoleBrowser, timeout: Duration = .seconds(120)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let page = try await browse(.get, "/console/jobs/\(id)", cookie: browser.cookie)
            try #require(page.status == .ok, "\(page.status)")
            if page.text.contains("data-final=\"true\"") { return page.text }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("job \(id) did not end in time")
        return ""
    }
}
