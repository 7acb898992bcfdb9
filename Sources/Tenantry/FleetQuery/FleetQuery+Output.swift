import Foundation

extension FleetQuery.Result {
    /// The result as one JSON object, as `tenantry query --format json` prints it and
    /// `POST /api/superadmin/query` answers:
    /// `{"rows": [{"tenant_id": "1", "state": "paid", "n": "3"}, …], "tenants": 4, "missing": [{"tenant": "2", "error": "…"}]}`.
    /// Each row's keys follow the column order (a name met twice keeps its first value); values
    /// are PostgreSQL's text output as JSON strings, `null` for NULL. Combined rows have no
    /// `tenant_id` unless the combine SQL selects one.
    public func json() -> String {
        var text = "{\"rows\":["
        for (index, row) in rows.enumerated() {
            if index > 0 { text += "," }
            text += "{"
            var seen = Set<String>()
            for (position, column) in columns.enumerated() where seen.insert(column.name).inserted {
                if seen.count > 1 { text += "," }
                text += Self.quoted(column.name) + ":" + (position < row.count ? row[position].map(Self.quoted) ?? "null" : "null")
            }
            text += "}"
        }
        text += "],\"tenants\":\(tenants),\"missing\":["
        text += missing.map { "{\"tenant\":\(Self.quoted($0.tenant)),\"error\":\(Self.quoted($0.error))}" }.joined(separator: ",")
        return text + "]}"
    }

    /// A JSON string literal.
    static func quoted(_ value: String) -> String {
        var text = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20: text += String(format: "\\u%04x", scalar.value)
            default: text.unicodeScalars.append(scalar)
            }
        }
        return text + "\""
    }
}
