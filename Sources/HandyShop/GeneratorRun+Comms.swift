extension GeneratorRun {
    /// email_templates (composite primary key), newsletter_subscribers, email_log.
    func loadEmail() async throws {
        var rng = random("email_templates")
        var rows: [(shop: Int, key: String)] = []
        templateKeys = (0..<shops).map { shop in
            let count = plan.count("email_templates", shopIndex: shop)
            return (0..<count).map { $0 < Fake.templateKeys.count ? Fake.templateKeys[$0] : "custom_\($0)" }
                .map { $0 == "review_request" ? "bewertung_anfragen_ÄÖÜ_📱" : $0 }
        }
        for shop in 0..<shops { rows += templateKeys[shop].map { (shop, $0) } }
        try await load("email_templates", [
            "shop_id", "template_key", "subject", "body_html", "body_text", "variables", "is_active", "updated_at",
        ], count: rows.count) { row, index in
            let nullRow = index == rows.count - 1
            row.int(rows[index].shop + 1)
            row.text(rows[index].key)
            row.text(rng.text("Ihre Reparatur {{order_code}}: \(rows[index].key)"))
            row.text(rng.text("<p>Hallo {{first_name}},</p>\n<p>Ihr Gerät ist \"fertig\" – bis bald!</p>\r\n"))
            row.text(rng.maybe(nullRow) { $0.text("Hallo {{first_name}},\n\nIhr Gerät ist fertig.\n\\Ihr Team") })
            row.array(rng.maybe(nullRow) { $0.chance(0.1) ? [] : ["first_name", "order_code", $0.chance(0.2) ? nil : "shop_name"] })
            row.bool(rng.chance(0.85))
            row.text(rng.timestamp())
        }

        rng = random("newsletter_subscribers")
        let subscribers = layout("newsletter_subscribers")
        try await loader.load("newsletter_subscribers", columns: [
            "id", "shop_id", "email", "name", "confirmed", "source", "preferences", "subscribed_at", "unsubscribed_at",
        ], count: subscribers.count) { row, index in
            let slot = subscribers[index], nullRow = index == subscribers.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.text(rng.chance(0.08)
                ? rng.pick(HandyShopGenerator.hostileStrings) + "+\(index + 1)@x.example"
                : rng.pick(["News.\(index + 1)@Example.com", "leser\(index + 1)@müller.example", "a+\(index + 1)@b.co"]))
            row.text(rng.maybe(nullRow) { $0.fullName() })
            row.bool(rng.chance(0.7))
            row.text(rng.maybe(nullRow) { $0.pick(["kiosk", "website", "laden", "import", ""]) })
            row.json(rng.maybe(nullRow) { rng in
                .object([("topics", .array([.string("angebote"), .string("tipps")])), ("frequency", .string("monthly")),
                         ("unicode", .string(rng.text("✓")))])
            })
            row.text(rng.timestamp())
            row.text(nullRow || !rng.chance(0.1) ? nil : rng.recent())
        }

        rng = random("email_log")
        let log = layout("email_log")
        try await loader.load("email_log", columns: [
            "id", "shop_id", "customer_id", "template_key", "recipient", "subject", "status", "error", "metadata", "sent_at",
        ], count: log.count) { row, index in
            let slot = log[index], nullRow = index == log.count - 1
            let status = rng.pick(["queued", "sent", "sent", "sent", "failed", "bounced"])
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(optionalParent("customers", slot.shop, nullRow, &rng))
            row.text(rng.maybe(nullRow) { $0.pick(templateKeys[slot.shop]) })
            row.text(rng.text("kunde\(index + 1)@example.com"))
            row.text(rng.maybe(nullRow) { $0.text("Ihre Reparatur ist fertig ✔") })
            row.text(status)
            row.text(nullRow || status == "sent" || status == "queued" ? nil : rng.text("550 5.1.1 <x@y>: User unknown\r\n"))
            row.json(rng.maybe(nullRow) { rng in
                .object([("message_id", .string("<\(rng.hex(8))@mail.handyshop.example>")), ("attempt", .number("\(rng.int(1...3))"))])
            })
            row.text(rng.maybe(nullRow) { $0.timestamp() })
        }
    }

    /// loaner_devices, kiosk_devices, kiosk_online_status (composite primary and foreign key).
    func loadLoanersAndKiosks() async throws {
        var rng = random("loaner_devices")
        let loaners = layout("loaner_devices")
        try await loader.load("loaner_devices", columns: [
            "id", "shop_id", "customer_id", "repair_id", "name", "imei", "condition", "deposit", "accessories",
            "lent_at", "due_back", "returned_at",
        ], count: loaners.count) { row, index in
            let slot = loaners[index], nullRow = index == loaners.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(optionalParent("customers", slot.shop, nullRow, &rng))
            row.int(optionalParent("repairs", slot.shop, nullRow, &rng))
            row.text(rng.text("Leihgerät \(rng.pick(Fake.brands)) #\(slot.local + 1)"))
            row.text(rng.maybe(nullRow) { _ in "35\(Fake.pad(index + 1, 13))" })
            row.text(rng.maybe(nullRow) { $0.text($0.pick(["wie neu", "Kratzer am Rahmen", "Akku 80%"])) })
            row.text(rng.maybe(nullRow) { $0.money(0, 200) })
            row.array(rng.maybe(nullRow) { $0.chance(0.2) ? [] : ["Ladekabel", "Hülle", $0.chance(0.3) ? nil : "SIM-Tool"] })
            row.text(rng.maybe(nullRow) { $0.timestamp() })
            row.text(rng.maybe(nullRow) { $0.date(days: 14, future: true) })
            row.text(rng.maybe(nullRow) { $0.timestamp() })
        }

        rng = random("kiosk_devices")
        let kiosks = layout("kiosk_devices")
        try await loader.load("kiosk_devices", columns: [
            "id", "shop_id", "name", "location", "api_key_hash", "settings", "screen_brightness", "is_enabled",
            "registered_at",
        ], count: kiosks.count) { row, index in
            let slot = kiosks[index], nullRow = index == kiosks.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.text(rng.text("Kiosk \(slot.local + 1)"))
            row.text(rng.maybe(nullRow) { $0.text($0.pick(["Eingang", "Theke", "Schaufenster"])) })
            row.text(rng.hex(16) + "-\(index + 1)")
            row.json(rng.maybe(nullRow) { rng in
                .object([("language", .string(rng.pick(["de", "en", "tr", "ar"]))), ("idle_seconds", .number("120")),
                         ("welcome", .string(rng.text("Willkommen! 👋")))])
            })
            row.text(rng.maybe(nullRow) { $0.double(0...1) })
            row.bool(rng.chance(0.9))
            row.text(rng.timestamp())
        }

        rng = random("kiosk_online_status")
        let inets = HandyShopGenerator.specialInets
        try await load("kiosk_online_status", [
            "shop_id", "kiosk_id", "is_online", "last_seen_at", "ip_address", "app_version", "uptime", "latency_ms",
        ], count: kiosks.count) { row, index in
            let nullRow = index == kiosks.count - 1
            row.int(kiosks[index].shop + 1)
            row.int(index + 1)
            row.bool(rng.chance(0.7))
            row.text(rng.maybe(nullRow) { $0.timestamp() })
            row.text(index < inets.count ? inets[index] : rng.maybe(nullRow) { $0.inet() })
            row.text(rng.maybe(nullRow) { "2.\($0.int(0...9)).\($0.int(0...30))" })
            row.text(rng.maybe(nullRow) { $0.interval() })
            row.text(rng.maybe(nullRow) { $0.double(0.1...900) })
        }
    }

    func loadSupportAccessTokens() async throws {
        var rng = random("support_access_tokens")
        let tokens = layout("support_access_tokens")
        try await loader.load("support_access_tokens", columns: [
            "id", "shop_id", "created_by", "token_hash", "reason", "scopes", "expires_at", "used_at", "revoked", "created_at",
        ], count: tokens.count) { row, index in
            let slot = tokens[index], nullRow = index == tokens.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(nullRow || rng.chance(0.1) ? nil : superadminID)
            row.text(rng.hex(32))
            row.text(rng.maybe(nullRow) { $0.text("Ticket #\($0.int(1000...9999)): Kunde sieht keine Reparaturen") })
            row.array(rng.chance(0.1) ? [] : ["read:repairs", "read:customers", rng.chance(0.2) ? nil : "write:settings"])
            row.text(rng.timestamp())
            row.text(rng.maybe(nullRow) { $0.timestamp() })
            row.bool(rng.chance(0.2))
            row.text(rng.recent())
        }
    }
}
