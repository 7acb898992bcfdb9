/// Plausible repair-shop vocabulary and value formatting (timestamps without Foundation or time zones).
enum Fake {
    static let firstNames = [
        "Anna", "Lukas", "Zoë", "José", "Mükerrem", "Ævar", "Łukasz", "Søren", "Chloé", "Иван", "محمد",
        "美咲", "Jürgen", "Leonie", "Ben", "Emma", "Noah", "Mia", "Elif", "Dmitrij", "Ana-María", "O'Neil",
    ]
    static let lastNames = [
        "Müller", "Schmidt", "O'Brien", "Nguyễn", "García", "Öztürk", "van der Berg", "Kowalski", "田中",
        "Smith-Jones", "Schäfer", "Weiß", "Bäcker", "Lefèvre", "Çelik", "Ђорђевић", "Cohen", "Fischer",
    ]
    static let cities = ["Berlin", "München", "Köln", "Zürich", "Wien", "Graz", "Basel", "Düsseldorf", "Łódź"]
    static let streets = ["Hauptstraße", "Bahnhofstr.", "Königsallee", "Am Markt", "Rue de la Paix", "Ringstraße"]
    static let deviceTypes = ["Smartphone", "Tablet", "Laptop", "Smartwatch", "Konsole", "Kopfhörer", "E-Reader"]
    static let brands = ["Apple", "Samsung", "Google", "Xiaomi", "OnePlus", "Huawei", "Sony", "Fairphone", "Nokia"]
    static let modelStems = ["Galaxy S", "iPhone ", "Pixel ", "Redmi Note ", "Nord ", "P", "Xperia ", "Fairphone "]
    static let issues = [
        "Display gebrochen", "Akku schwach", "Ladebuchse defekt", "Wasserschaden", "Kamera unscharf",
        "Lautsprecher knistert", "Startet nicht", "Backcover gesplittert", "Face ID funktioniert nicht",
        "Touch reagiert nicht im unteren Bereich",
    ]
    static let parts = [
        "Display OLED", "Akku", "Ladebuchse USB-C", "Rückkamera", "Lautsprecher", "Backcover Glas",
        "Frontkamera", "Vibrationsmotor", "SIM-Halter", "Flexkabel",
    ]
    static let positions = ["Techniker", "Azubi", "Filialleitung", "Empfang", "Mikrolöter"]
    static let tags = ["express", "garantie", "vip", "rückruf", "b2b", "wasserschaden", "stammkunde"]
    static let templateKeys = [
        "repair_received", "repair_ready", "cost_estimate", "pickup_reminder", "invoice", "newsletter",
        "review_request", "loaner_due",
    ]
    static let suppliers = ["iParts4u", "Foneday", "Mobilesentrix", "Ersatzteilwelt GmbH", "深圳配件"]

    /// The fixed epoch all generated times are relative to: 2024-06-01 00:00:00 UTC (Unix seconds).
    static let epoch: Int64 = 1_717_200_000

    /// A timestamptz text for `seconds` after the Unix epoch plus `micros` microseconds, in UTC.
    static func timestamp(_ seconds: Int64, micros: Int = 0) -> String {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let time = "\(pad(Int(secondOfDay / 3600), 2)):\(pad(Int(secondOfDay / 60 % 60), 2)):\(pad(Int(secondOfDay % 60), 2))"
        return "\(date(days: days)) \(time).\(pad(micros, 6))+00"
    }

    /// A date text for `days` after 1970-01-01 (proleptic Gregorian, years 1...9999).
    static func date(days: Int64) -> String {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return "\(pad(Int(year), 4))-\(pad(Int(month), 2))-\(pad(Int(day), 2))"
    }

    static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    /// A money text with exactly two decimals, from a number of cents.
    static func money(cents: Int) -> String {
        let sign = cents < 0 ? "-" : ""
        let magnitude = cents.magnitude
        return "\(sign)\(magnitude / 100).\(pad(Int(magnitude % 100), 2))"
    }
}

extension SeededRandom {
    /// A timestamp within the `days` days before the epoch (microsecond precision).
    mutating func recent(days: Int = 900) -> String {
        Fake.timestamp(Fake.epoch - Int64(int(0...(days * 86_400))), micros: int(0...999_999))
    }

    /// Like ``recent(days:)``, but about 3% of the time one of the special timestamps.
    mutating func timestamp(days: Int = 900) -> String {
        chance(0.03) ? pick(HandyShopGenerator.specialTimestamps) : recent(days: days)
    }

    /// A date within `days` around the epoch (after it when `future`), sometimes a special one.
    mutating func date(days: Int = 900, future: Bool = false) -> String {
        if chance(0.03) { return pick(HandyShopGenerator.specialDates) }
        let offset = Int64(int(0...days))
        return Fake.date(days: Fake.epoch / 86_400 + (future ? offset : -offset))
    }

    /// A double in `range` as text, about 5% of the time one of the special values.
    mutating func double(_ range: ClosedRange<Double>) -> String {
        if chance(0.05) { return pick(HandyShopGenerator.specialDoubles) }
        return "\(range.lowerBound + unit() * (range.upperBound - range.lowerBound))"
    }

    /// A money value between `low` and `high` (in whole currency units), occasionally an extreme.
    mutating func money(_ low: Int, _ high: Int) -> String {
        if chance(0.02) { return pick(["0.00", "9999999999.99", "0.01", "4999999999.99"]) }
        return Fake.money(cents: int((low * 100)...(high * 100)))
    }

    /// A short interval text, about 5% of the time one of the special intervals.
    mutating func interval() -> String {
        if chance(0.05) { return pick(HandyShopGenerator.specialIntervals) }
        return "\(int(0...72)) hours \(int(0...59)) mins"
    }

    /// An inet text, v4 or v6, about 10% of the time one of the special values.
    mutating func inet() -> String {
        if chance(0.1) { return pick(HandyShopGenerator.specialInets) }
        if chance(0.6) { return "\(int(1...223)).\(int(0...255)).\(int(0...255)).\(int(1...254))" }
        return "2001:db8:\(String(int(0...0xffff), radix: 16))::\(String(int(1...0xffff), radix: 16))"
    }

    /// `text` most of the time, about 8% of the time one of the hostile strings.
    mutating func text(_ text: String) -> String {
        chance(0.08) ? pick(HandyShopGenerator.hostileStrings) : text
    }

    /// NULL for the all-NULL row and about 10% of the time; otherwise `value()`.
    mutating func maybe<T>(_ nullRow: Bool, _ value: (inout SeededRandom) -> T) -> T? {
        if nullRow || chance(0.1) { return nil }
        return value(&self)
    }

    /// A text array of 0...4 tags; about 8% of arrays contain hostile elements, including NULLs.
    mutating func tags() -> [String?] {
        if chance(0.08) {
            return [pick(Fake.tags), nil, pick(HandyShopGenerator.hostileStrings), "a,b", "{\"x\"}"]
        }
        return (0..<int(0...4)).map { _ in pick(Fake.tags) }
    }

    /// A person's name, occasionally hostile.
    mutating func fullName() -> String {
        let name = "\(pick(Fake.firstNames)) \(pick(Fake.lastNames))"
        return text(name)
    }
}
