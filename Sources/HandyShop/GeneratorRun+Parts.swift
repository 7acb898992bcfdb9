extension GeneratorRun {
    /// spare_parts, cost_estimates, orders.
    func loadParts() async throws {
        var rng = random("spare_parts")
        let parts = layout("spare_parts")
        try await loader.load("spare_parts", columns: [
            "id", "shop_id", "device_type_id", "sku", "name", "compatible_models", "purchase_price", "sale_price",
            "stock_quantity", "min_stock", "weight_grams", "supplier", "created_at", "deleted_at",
        ], count: parts.count) { row, index in
            let slot = parts[index], nullRow = index == parts.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(optionalParent("device_types", slot.shop, nullRow, &rng))
            row.text(rng.chance(0.1) ? "sku-\(slot.shop + 1)-\(slot.local + 1)" : "SKU-\(slot.shop + 1)-\(slot.local + 1)")
            row.text(rng.text("\(rng.pick(Fake.parts)) \(rng.pick(Fake.brands))"))
            row.array(rng.maybe(nullRow) { rng in
                rng.chance(0.1)
                    ? ["iPhone 12, 12 Pro", nil, "Galaxy \"S21\"", "{Pixel}", rng.pick(HandyShopGenerator.hostileStrings)]
                    : (0..<rng.int(1...3)).map { _ in "\(rng.pick(Fake.modelStems))\(rng.int(3...16))" }
            })
            row.text(rng.maybe(nullRow) { $0.money(2, 300) })
            row.text(rng.maybe(nullRow) { $0.money(5, 500) })
            row.int(rng.int(0...200))
            row.int(rng.maybe(nullRow) { Int64($0.int(0...10)) })
            row.text(rng.maybe(nullRow) { $0.double(0.5...500) })
            row.json(rng.maybe(nullRow) { rng in
                .object([
                    ("name", .string(rng.pick(Fake.suppliers))),
                    ("contact", .object([("email", .string("bestellung@lieferant.example")), ("phone", .null)])),
                    ("lead_days", .number("\(rng.int(1...30))")),
                    ("rating", .number(rng.chance(0.5) ? "4.5" : "-0.0001e-10")),
                ])
            })
            row.text(rng.timestamp())
            row.text(nullRow || !rng.chance(0.05) ? nil : rng.recent())
        }

        rng = random("cost_estimates")
        let estimates = layout("cost_estimates")
        let numerics = HandyShopGenerator.specialNumerics
        try await loader.load("cost_estimates", columns: [
            "id", "shop_id", "repair_id", "parts_cost", "labor_cost", "tax_rate", "exchange_rate", "line_items",
            "accepted", "valid_until", "notes", "created_at",
        ], count: estimates.count) { row, index in
            let slot = estimates[index], nullRow = index == estimates.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(try parent("repairs", slot.shop, &rng))
            let extreme = rng.chance(0.02)
            row.text(extreme ? "4999999999.99" : Fake.money(cents: rng.int(-2_000...60_000)))
            row.text(extreme ? "4999999999.99" : Fake.money(cents: rng.int(0...20_000)))
            row.text(rng.maybe(nullRow) { $0.pick(["0.1900", "0.0700", "0.0810", "0.0000"]) })
            if index < numerics.count {
                row.text(numerics[index])
            } else {
                row.text(rng.maybe(nullRow) { "1.\($0.int(0...999_999_999))\($0.int(0...999_999_999))" })
            }
            row.json(.array((0..<rng.int(0...3)).map { _ in
                .object([
                    ("part", .string(rng.text(rng.pick(Fake.parts)))), ("qty", .number("\(rng.int(1...3))")),
                    ("price", .number(Fake.money(cents: rng.int(100...40_000)))),
                ])
            }))
            row.bool(rng.maybe(nullRow) { $0.chance(0.7) })
            row.text(rng.maybe(nullRow) { $0.date(days: 30, future: true) })
            row.text(rng.maybe(nullRow) { $0.text("Preis gilt nur bei Abholung innerhalb von 14 Tagen") })
            row.text(rng.timestamp())
        }

        rng = random("orders")
        let orders = layout("orders")
        try await loader.load("orders", columns: [
            "id", "shop_id", "spare_part_id", "repair_id", "status", "quantity", "unit_price", "supplier_name",
            "tracking_number", "ordered_at", "expected_on", "received_at", "notes",
        ], count: orders.count) { row, index in
            let slot = orders[index], nullRow = index == orders.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(try parent("spare_parts", slot.shop, &rng))
            row.int(optionalParent("repairs", slot.shop, nullRow, &rng))
            row.text(rng.pick(["pending", "ordered", "shipped", "received", "cancelled"]))
            row.int(rng.int(1...20))
            row.text(rng.maybe(nullRow) { $0.money(1, 400) })
            row.text(rng.maybe(nullRow) { $0.text($0.pick(Fake.suppliers)) })
            row.text(rng.maybe(nullRow) { "1Z\($0.hex(8).uppercased())" })
            row.text(rng.maybe(nullRow) { $0.timestamp() })
            row.text(rng.maybe(nullRow) { $0.date(days: 20, future: true) })
            row.text(rng.maybe(nullRow) { $0.timestamp() })
            row.text(rng.maybe(nullRow) { $0.text("Bitte an Filiale liefern") })
        }
    }
}
