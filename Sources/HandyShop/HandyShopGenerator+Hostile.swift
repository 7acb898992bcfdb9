extension HandyShopGenerator {
    /// Text values that break naive copiers: empty, tab, newline, CR, backslashes, a literal `\N`,
    /// quotes, emoji, CJK, combining characters, right-to-left text, control characters, a long
    /// value and more. Customer `k` (`customers.id = k`, 1-based) has `notes = hostileStrings[k - 1]`
    /// for every `k` up to `hostileStrings.count` that exists; elsewhere, about 8% of the text
    /// values are drawn from this list.
    public static let hostileStrings: [String] = [
        "",
        "tab\there\t",
        "line one\nline two\n",
        "carriage\rreturn\r\nwindows line",
        "back\\slash \\\\ double \\t not a tab",
        "\\N",
        "\\.",
        "NULL",
        "single ' and double \" quotes '' \"\"",
        "emoji 📱🔧 👩🏽‍🔧 🇩🇪 ❤️",
        "日本語の修理 中文维修 한국어 수리",
        "combining: e\u{301} n\u{303} a\u{30A}\u{323} Z\u{324}\u{354}\u{367}\u{311}\u{313}",
        "RTL: مرحبا بالعالم — שלום עולם",
        "array-ish {a,\"b\",NULL} , (1,2)",
        "json-ish {\"key\": [1, 2, {\"x\": null}]}",
        "'; DROP TABLE customers; --",
        "   leading and trailing spaces   ",
        "control \u{01}\u{07}\u{08}\u{0B}\u{0C}\u{1B}\u{7F} chars",
        "invisible: zero\u{200B}width, nbsp\u{00A0}, bom\u{FEFF}, line\u{2028}sep",
        "percent % underscore _ dollar $1 $$ at @ hash #",
        "\\x00ff not bytea",
        String(repeating: "long value 🔋 ", count: 800),
    ]

    /// A text array whose elements contain commas, quotes, braces, backslashes, whitespace, the word
    /// NULL and real NULL elements. Stored in `customers.tags` of customer 1.
    public static let hostileArray: [String?] = [
        "display", "a,b", "quote\"d", "{brace}", nil, "back\\slash", "", " space ", "NULL",
        "tab\tnew\nline", "ümlaut 😀", "}{", "\\N",
    ]

    /// A nested JSON document with unicode, escapes and big numbers. Stored in
    /// `customers.address` of customer 1.
    public static let hostileJSON: String = hostileJSONValue.text

    static let hostileJSONValue: JSON = .object([
        ("street", .string("Königstraße 7\tHinterhaus")),
        ("city", .string("Zürich")),
        ("note", .string("line1\nline2 \"quoted\" back\\slash \\N \u{01}")),
        ("geo", .object([("lat", .number("47.376886")), ("lon", .number("8.541694")), ("alt", .null)])),
        ("tags", .array([.string("東京"), .string("مرحبا"), .string("📱"), .bool(true), .null])),
        ("big", .number("123456789012345678901234567890.123456789")),
        ("empty", .object([])),
        ("nested", .object([("a", .object([("b", .object([("c", .array([.array([])]))]))]))])),
    ])

    /// Double precision values as PostgreSQL input text: NaN, the infinities, negative zero and
    /// extremes. User model `k` has `screen_size_inches = specialDoubles[k - 1]` for every
    /// existing `k` up to the count; about 5% of other double values are drawn from this list.
    public static let specialDoubles: [String] = [
        "NaN", "Infinity", "-Infinity", "-0", "1e-300", "1.7976931348623157e+308",
        "2.2250738585072014e-308", "0.1", "-123456.789012345",
    ]

    /// Timestamps (timestamptz input text): the infinities, far past (BC) and far future. Repair `k`
    /// has `completed_at = specialTimestamps[k - 1]` for every existing `k` up to the count; about
    /// 3% of other timestamps are drawn from this list.
    public static let specialTimestamps: [String] = [
        "infinity", "-infinity", "4713-01-01 00:00:00+00 BC", "0001-01-01 00:00:00+00",
        "1900-02-28 23:59:59.999999+00", "9999-12-31 23:59:59.999999+00", "294276-12-31 23:59:59+00",
        "2000-02-29 12:00:00.000001+00",
    ]

    /// Dates (date input text) at the edges. About 3% of date values are drawn from this list.
    public static let specialDates: [String] = [
        "infinity", "-infinity", "4713-01-01 BC", "0001-01-01", "9999-12-31", "2000-02-29",
    ]

    /// Intervals (input text), including mixed signs and fractional seconds. Repair `k` has
    /// `estimated_duration = specialIntervals[k - 1]` for every existing `k` up to the count.
    public static let specialIntervals: [String] = [
        "1 year 2 mons -3 days 04:05:06.789", "-00:00:00.000001", "0", "178000000 years",
        "-1 days +02:00:00", "1000000 hours", "P1Y2M3DT4H5M6S",
    ]

    /// inet values, v4 and v6, with and without prefixes. The first kiosk status rows (in kiosk
    /// id order) carry them; other rows get random addresses of both families.
    public static let specialInets: [String] = [
        "192.168.1.10", "10.0.0.0/8", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::1",
        "::ffff:192.0.2.1", "2001:db8:85a3::8a2e:370:7334/64", "fe80::1",
    ]

    /// Unconstrained numerics with many digits (and NaN / ±Infinity). Cost estimate `k` has
    /// `exchange_rate = specialNumerics[k - 1]` for every existing `k` up to the count.
    public static let specialNumerics: [String] = [
        "12345678901234567890.123456789012345678901234567890", "-0.000000000000000000000000000001",
        "NaN", "Infinity", "-Infinity", "0", "1e100", "3.14159265358979323846264338327950288419716939937510",
    ]

    /// The bytes of signature 1's image: every byte value 0...255 once, in order.
    public static let allBytes: [UInt8] = (0...255).map { UInt8($0) }
}
