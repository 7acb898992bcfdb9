extension GeneratorRun {
    static let shopNames = [
        "Handy-Klinik Müller & Söhne", "📱 Phone Doctor", "修理屋 東京", "Repair \"Pro\"\tShop", "iFix O'Connor",
        "Smartphone Service\\Nord", "Reparatur-Café Łódź", "مركز إصلاح الهواتف", "Display Express",
    ]

    /// shops, users, shop_settings, subscription_packages, shop_subscriptions, multi_shop_permissions,
    /// support_access_logs, password_reset_tokens, system_config.
    func loadGlobalTables() async throws {
        var rng = random("global")
        try await load("shops", ["id", "name", "slug", "owner_email", "phone", "is_active", "created_at"],
                       count: shops) { row, index in
            row.int(index + 1)
            row.text(Self.shopNames[index % Self.shopNames.count] + (index < Self.shopNames.count ? "" : " \(index + 1)"))
            row.text("shop-\(index + 1)")
            row.text(index % 4 == 3 ? nil : "owner\(index + 1)@handyshop.example")
            row.text(rng.maybe(index == 1) { "+49 30 \($0.int(1_000_000...9_999_999))" })
            row.bool(index % 7 != 6)
            row.text(Fake.timestamp(Fake.epoch - 3 * 365 * 86_400 + Int64(index) * 3_600))
        }
        // Users: the owner of shop s is user s; then one superadmin without a shop.
        try await load("users", ["id", "email", "password_hash", "role", "shop_id", "display_name", "is_active",
                                 "last_login_at", "created_at"], count: shops + 1) { row, index in
            let superadmin = index == shops
            row.int(index + 1)
            row.text(superadmin ? "root@handyshop.example" : "Owner\(index + 1)@Shop-\(index + 1).example")
            row.text("$2b$12$" + rng.hex(26))
            row.text(superadmin ? "superadmin" : "owner")
            row.int(superadmin ? nil : Int64(index + 1))
            row.text(superadmin ? nil : rng.fullName())
            row.bool(true)
            row.text(rng.maybe(superadmin) { $0.timestamp() })
            row.text(Fake.timestamp(Fake.epoch - 3 * 365 * 86_400 + Int64(index) * 3_600 + 60))
        }
        try await load("shop_settings", ["shop_ref", "currency", "timezone", "locale", "vat_rate", "opening_hours",
                                         "invoice_footer", "updated_at"], count: shops) { row, index in
            row.int(index + 1)
            row.text(index % 5 == 4 ? "CHF" : "EUR")
            row.text(index % 5 == 4 ? "Europe/Zurich" : "Europe/Berlin")
            row.text(index % 5 == 4 ? "de-CH" : "de-DE")
            row.text(index % 5 == 4 ? "0.0810" : "0.1900")
            row.json(.object([("mo-fr", .string("09:00–18:00")), ("sa", .string("10:00–14:00")), ("so", .null)]))
            row.text(rng.maybe(index == 0) { $0.text("Vielen Dank für Ihren Auftrag!\nUSt-IdNr. DE123456789") })
            row.text(rng.recent())
        }
        let packages = [("Basic", "19.00", 2), ("Pro", "49.00", 10), ("Enterprise", "199.00", -1)]
        try await load("subscription_packages", ["id", "name", "price_monthly", "max_users", "features", "is_active"],
                       count: packages.count) { row, index in
            let (name, price, users) = packages[index]
            row.int(index + 1)
            row.text(name)
            row.text(price)
            row.int(users < 0 ? nil : Int64(users))
            row.json(.array(["repairs", "kiosk", "newsletter"].prefix(index + 1).map { .string($0) }))
            row.bool(true)
        }
        try await load("shop_subscriptions", ["id", "shop_ref", "package_id", "status", "started_at", "ends_at"],
                       count: shops) { row, index in
            row.int(index + 1)
            row.int(index + 1)
            row.int(index < max(1, shops / 10) ? 3 : Int64(1 + index % 2))
            row.text(["active", "trial", "active", "past_due", "cancelled"][index % 5])
            row.text(rng.recent())
            row.text(index % 5 == 4 ? rng.recent(days: 30) : nil)
        }
        try await load("multi_shop_permissions", ["id", "user_id", "granted_shop_ref", "granted_by", "permissions",
                                                  "created_at"],
                       count: shops > 1 ? 1 : 0) { row, _ in
            row.int(1)
            row.int(1)
            row.int(2)
            row.int(superadminID)
            row.array(["read", "repairs:write"])
            row.text(Fake.timestamp(Fake.epoch - 86_400))
        }
        try await load("support_access_logs", ["id", "superadmin_id", "accessed_shop_ref", "action", "details",
                                               "ip_address", "created_at"], count: shops) { row, index in
            row.int(index + 1)
            row.int(index == 0 ? nil : superadminID)
            row.int(index == 0 ? nil : Int64(index + 1))
            row.text(rng.text("viewed repairs"))
            row.json(index == 0 ? nil : .object([("ticket", .number("\(1000 + index)")), ("reason", .string("Kunde ruft an"))]))
            row.text(index == 0 ? nil : rng.inet())
            row.text(rng.recent())
        }
        try await load("password_reset_tokens", ["id", "user_id", "token_hash", "expires_at", "used_at"],
                       count: max(1, shops / 10)) { row, index in
            row.int(index + 1)
            row.int(index + 1)
            row.text(rng.hex(32))
            row.text(Fake.timestamp(Fake.epoch + 3_600))
            row.text(index == 0 ? nil : rng.recent())
        }
        let config: [(String, JSON, String?)] = [
            ("maintenance_mode", .bool(false), nil),
            ("max_upload_mb", .number("25"), "Größe von Fotos und Signaturen"),
            ("feature_flags", .object([("kiosk_v2", .bool(true)), ("ai_diagnosis", .bool(false))]), "JSON\tflags"),
        ]
        try await load("system_config", ["key", "value", "description", "updated_at"], count: config.count) { row, index in
            row.text(config[index].0)
            row.json(config[index].1)
            row.text(config[index].2)
            row.text(rng.recent())
        }
    }
}
