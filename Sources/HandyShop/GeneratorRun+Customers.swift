extension GeneratorRun {
    /// All 19 tenant tables, parents before children.
    func loadTenantTables() async throws {
        try await loadCustomers()
        try await loadDeviceCatalogue()
        try await loadEmployees()
        try await loadRepairs()
        try await loadRepairDetails()
        try await loadParts()
        try await loadEmail()
        try await loadLoanersAndKiosks()
        try await loadSupportAccessTokens()
    }

    func loadCustomers() async throws {
        var rng = random("customers")
        let slots = layout("customers")
        let hostile = HandyShopGenerator.hostileStrings
        try await loader.load("customers", columns: [
            "id", "shop_id", "first_name", "last_name", "email", "phone", "address", "tags", "notes",
            "referred_by", "newsletter_opt_in", "birthday", "created_at", "deleted_at",
        ], count: slots.count) { row, index in
            let slot = slots[index], id = Int64(index + 1), nullRow = index == slots.count - 1
            let first = rng.text(rng.pick(Fake.firstNames)), last = rng.text(rng.pick(Fake.lastNames))
            row.int(id)
            row.int(slot.shop + 1)
            row.text(first)
            row.text(last)
            row.text(rng.maybe(nullRow) { rng in
                rng.chance(0.08) ? rng.pick(hostile) + "<\(id)>" : rng.chance(0.2)
                    ? "\(first).\(last).\(id)@Example.COM".uppercased() : "\(first).\(last).\(id)@example.com"
            })
            row.text(rng.maybe(nullRow) { "+49 1\($0.int(50...79)) \($0.int(1_000_000...9_999_999))" })
            row.json(index == 0 ? HandyShopGenerator.hostileJSONValue : rng.maybe(nullRow) { rng in
                .object([
                    ("street", .string("\(rng.pick(Fake.streets)) \(rng.int(1...200))")),
                    ("zip", .string(Fake.pad(rng.int(1000...99999), 5))),
                    ("city", .string(rng.text(rng.pick(Fake.cities)))),
                    ("country", rng.chance(0.1) ? .null : .string("DE")),
                    ("floor", rng.chance(0.3) ? .number("\(rng.int(-1...12))") : .object([])),
                ])
            })
            row.array(index == 0 ? HandyShopGenerator.hostileArray : rng.tags())
            row.text(index < hostile.count ? hostile[index] : rng.maybe(nullRow) { $0.text("Ruft lieber an als zu mailen") })
            row.int(nullRow || slot.local == 0 || !rng.chance(0.2) ? nil : ids["customers"]?[slot.shop][rng.int(0..<slot.local)])
            row.bool(rng.chance(0.4))
            row.text(rng.maybe(nullRow) { $0.date(days: 365 * 80) })
            row.text(rng.timestamp())
            row.text(nullRow || !rng.chance(0.05) ? nil : rng.recent())
        }
    }

    /// device_types, user_brands, user_models.
    func loadDeviceCatalogue() async throws {
        var rng = random("device_types")
        let types = layout("device_types")
        try await loader.load("device_types", columns: ["id", "shop_id", "name", "icon", "sort_order", "created_at"],
                              count: types.count) { row, index in
            let slot = types[index], nullRow = index == types.count - 1, names = Fake.deviceTypes
            row.int(index + 1)
            row.int(slot.shop + 1)
            if rng.chance(0.08) {
                row.text(rng.pick(HandyShopGenerator.hostileStrings) + " #\(slot.local)")
            } else {
                row.text(names[slot.local % names.count] + (slot.local < names.count ? "" : " \(slot.local / names.count + 1)"))
            }
            row.text(rng.maybe(nullRow) { $0.pick(["📱", "💻", "⌚", "🎮", "🎧", "tablet", ""]) })
            row.int(slot.local)
            row.text(rng.timestamp())
        }

        rng = random("user_brands")
        let brands = layout("user_brands")
        try await loader.load("user_brands", columns: ["id", "shop_id", "device_type_id", "name", "logo_url", "created_at"],
                              count: brands.count) { row, index in
            let slot = brands[index], nullRow = index == brands.count - 1, names = Fake.brands
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(try parent("device_types", slot.shop, &rng))
            row.text(names[slot.local % names.count] + (slot.local < names.count ? "" : " \(slot.local)"))
            row.text(rng.maybe(nullRow) { "https://cdn.handyshop.example/logos/\(index + 1).png?v=\($0.int(1...9))&size=64" })
            row.text(rng.timestamp())
        }

        rng = random("user_models")
        let models = layout("user_models")
        let doubles = HandyShopGenerator.specialDoubles
        try await loader.load("user_models", columns: [
            "id", "shop_id", "brand_id", "name", "release_year", "screen_size_inches", "aliases", "created_at",
        ], count: models.count) { row, index in
            let slot = models[index], nullRow = index == models.count - 1
            let name = rng.text("\(rng.pick(Fake.modelStems))\(rng.int(3...16))\(rng.pick(["", " Pro", " Max", " Lite", "a"]))")
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(try parent("user_brands", slot.shop, &rng))
            row.text(name)
            row.int(rng.maybe(nullRow) { Int64($0.int(2010...2025)) })
            row.text(index < doubles.count ? doubles[index] : rng.maybe(nullRow) { $0.double(4.0...13.0) })
            row.array(rng.maybe(nullRow) { rng in
                rng.chance(0.1) ? [] : [name.lowercased(), rng.chance(0.2) ? nil : "Modell \(rng.int(1000...9999))"]
            })
            row.text(rng.timestamp())
        }
    }

    func loadEmployees() async throws {
        var rng = random("employees")
        let slots = layout("employees")
        try await loader.load("employees", columns: [
            "id", "shop_id", "user_id", "full_name", "position", "hourly_rate", "hired_on", "is_active", "permissions",
        ], count: slots.count) { row, index in
            let slot = slots[index], nullRow = index == slots.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(slot.local == 0 && !nullRow ? Int64(slot.shop + 1) : nil)
            row.text(rng.fullName())
            row.text(rng.maybe(nullRow) { $0.text($0.pick(Fake.positions)) })
            row.text(rng.maybe(nullRow) { $0.money(12, 65) })
            row.text(rng.maybe(nullRow) { $0.date(days: 4000) })
            row.bool(rng.chance(0.9))
            row.json(.object([
                ("repairs", .bool(true)), ("cash_register", .bool(rng.chance(0.5))), ("admin", .bool(slot.local == 0)),
                ("shops", .array(rng.chance(0.1) ? [] : [.number("\(slot.shop + 1)")])),
            ]))
        }
    }
}
