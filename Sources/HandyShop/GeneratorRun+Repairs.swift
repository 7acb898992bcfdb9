extension GeneratorRun {
    static let repairStatuses = [
        "received", "diagnosing", "waiting_for_parts", "in_repair", "ready_for_pickup", "done", "done", "done", "cancelled",
    ]

    func loadRepairs() async throws {
        var rng = random("repairs")
        let slots = layout("repairs")
        let timestamps = HandyShopGenerator.specialTimestamps, intervals = HandyShopGenerator.specialIntervals
        try await loader.load("repairs", columns: [
            "id", "shop_id", "customer_id", "model_id", "assigned_employee_id", "order_code", "status", "device_info",
            "issue_description", "serial_number", "tags", "estimated_cost", "deposit_paid", "estimated_duration",
            "battery_health", "is_warranty", "received_at", "completed_at", "pickup_date", "created_at",
        ], count: slots.count) { row, index in
            let slot = slots[index], nullRow = index == slots.count - 1
            let status = rng.pick(Self.repairStatuses)
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(try parent("customers", slot.shop, &rng))
            row.int(optionalParent("user_models", slot.shop, nullRow, &rng))
            row.int(optionalParent("employees", slot.shop, nullRow, &rng))
            let code = "R-\(slot.shop + 1)-\(Fake.pad(slot.local + 1, 5))"
            row.text(rng.chance(0.05) ? code + " " + rng.pick(HandyShopGenerator.hostileStrings) : code)
            row.text(status)
            row.json(.object([
                ("imei", .string("35\(Fake.pad(rng.int(0...999_999_999), 13))")),
                ("color", .string(rng.text(rng.pick(["Space Grau", "Mitternacht", "Weiß", "Roségold", "Grün"])))),
                ("pin", rng.chance(0.3) ? .null : .string(rng.text(Fake.pad(rng.int(0...9999), 4)))),
                ("accessories", .array(rng.chance(0.5) ? [] : [.string("Hülle"), .string("Ladekabel")])),
                ("condition", .object([("scratches", .bool(rng.chance(0.5))), ("water_indicator", .bool(rng.chance(0.1)))])),
            ]))
            row.text(rng.text(rng.pick(Fake.issues)))
            row.text(rng.maybe(nullRow) { $0.hex(6).uppercased() })
            row.array(rng.tags())
            row.text(rng.maybe(nullRow) { $0.money(20, 900) })
            row.text(rng.chance(0.5) ? "0.00" : rng.money(0, 150))
            row.text(index < intervals.count ? intervals[index] : rng.maybe(nullRow) { $0.interval() })
            row.text(rng.maybe(nullRow) { $0.double(40...100) })
            row.bool(rng.chance(0.15))
            row.text(rng.timestamp())
            if index < timestamps.count {
                row.text(timestamps[index])
            } else {
                row.text(nullRow || !(status == "done" || status == "ready_for_pickup") ? nil : rng.timestamp(days: 300))
            }
            row.text(rng.maybe(nullRow) { $0.date(days: 60, future: true) })
            row.text(rng.recent())
        }
    }

    /// repair_status_history, qr_codes, signatures.
    func loadRepairDetails() async throws {
        var rng = random("repair_status_history")
        let history = layout("repair_status_history")
        try await loader.load("repair_status_history", columns: [
            "id", "shop_id", "repair_id", "old_status", "new_status", "changed_by", "note", "changed_at",
        ], count: history.count) { row, index in
            let slot = history[index], nullRow = index == history.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(try parent("repairs", slot.shop, &rng))
            row.text(rng.maybe(nullRow) { $0.pick(Self.repairStatuses) })
            row.text(rng.pick(Self.repairStatuses))
            row.int(nullRow || rng.chance(0.3) ? nil : Int64(slot.shop + 1))
            row.text(rng.maybe(nullRow) { $0.text("Kunde informiert, wartet auf Freigabe") })
            row.text(rng.timestamp())
        }

        rng = random("qr_codes")
        let codes = layout("qr_codes")
        try await loader.load("qr_codes", columns: [
            "id", "shop_id", "repair_id", "code", "payload", "scan_count", "expires_at", "created_at",
        ], count: codes.count) { row, index in
            let slot = codes[index], nullRow = index == codes.count - 1
            let code = "QR-\(rng.hex(6))-\(index + 1)"
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(optionalParent("repairs", slot.shop, nullRow, &rng))
            row.text(code)
            row.json(rng.maybe(nullRow) { rng in
                .object([
                    ("url", .string("https://handyshop.example/s/\(code)?lang=de&ref=\"qr\"")),
                    ("version", .number("2")), ("label", .string(rng.text("Reparaturstatus"))),
                ])
            })
            row.int(rng.int(0...500))
            row.text(rng.maybe(nullRow) { $0.timestamp() })
            row.text(rng.recent())
        }

        rng = random("signatures")
        let signatures = layout("signatures")
        try await loader.load("signatures", columns: [
            "id", "shop_id", "repair_id", "kind", "signer_name", "image", "signed_at",
        ], count: signatures.count) { row, index in
            let slot = signatures[index], nullRow = index == signatures.count - 1
            row.int(index + 1)
            row.int(slot.shop + 1)
            row.int(try parent("repairs", slot.shop, &rng))
            row.text(rng.pick(["dropoff", "pickup", "cost_approval"]))
            row.text(rng.maybe(nullRow) { $0.fullName() })
            switch index {
            case 0: row.bytea(HandyShopGenerator.allBytes)
            case 1: row.bytea(HandyShopGenerator.allBytes.reversed())
            case 2: row.bytea([])
            default: row.bytea([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] + rng.bytes(rng.int(16...600)))
            }
            row.text(rng.timestamp())
        }
    }
}
