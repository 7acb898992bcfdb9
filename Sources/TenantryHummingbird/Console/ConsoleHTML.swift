import Foundation
import Hummingbird

/// Server-side HTML for the console: escaping, the page shell, and small inline-SVG charts.
/// Every value from the catalog, a tenant or an error is escaped with ``escape(_:)``; pages carry
/// no inline script or style (the Content-Security-Policy forbids both).
enum ConsoleHTML {
    /// `text` with `& < > " '` escaped, for element text and attribute values.
    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.unicodeScalars.append(character)
            }
        }
        return result
    }

    /// An error or progress message as a page may show it: escaped, with every connection URL
    /// (`postgres://user:***@host:port/db`) replaced, so no user, host or port reaches a page.
    static func message(_ text: String) -> String {
        escape(sanitize(text))
    }

    /// `text` with connection URLs replaced by `postgres://…`.
    static func sanitize(_ text: String) -> String {
        guard text.contains("://") else { return text }
        return text.replacingOccurrences(of: #"postgres(ql)?://[^\s'"<>,;)]*[^\s'"<>,;):.]"#, with: "postgres://…", options: .regularExpression)
    }

    /// A whole page: the navigation (with the operator and a logout form), `body`, and the
    /// console's script and style (served by Tenantry itself).
    static func page(title: String, session: ConsoleSessions.Session?, live: String? = nil, body: String) -> String {
        var html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title)) · Tenantry</title>
            <link rel="stylesheet" href="/console/assets/console.css">
            <script src="/console/assets/console.js" defer></script>
            </head><body\(live.map { " data-events=\"\(escape($0))\"" } ?? "")>
            <header><nav><a class="brand" href="/console">Tenantry</a>
            """
        if let session {
            html += """
                <a href="/console">Fleet</a><a href="/console/performance">Performance</a><a href="/console/jobs">Jobs</a>
                <span class="spacer"></span>
                <span id="live-status" class="live-status">\(live == nil ? "" : "connecting")</span>
                <span class="operator">\(escape(session.operator)) (\(session.role.rawValue))</span>
                <form method="post" action="/console/logout" class="inline"><input type="hidden" name="csrf" value="\(escape(session.csrf))"><button type="submit" class="link">Log out</button></form>
                """
        }
        html += "</nav></header>\n<main>\n\(body)\n</main></body></html>\n"
        return html
    }

    /// A `text/html` response with `status`.
    static func response(_ html: String, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        var headers = extra
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// A 303 to `location` (after a form POST, and for a browser without a session).
    static func redirect(_ location: String, headers extra: HTTPFields = [:]) -> Response {
        var headers = extra
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    /// A number with thousands separators (`12,034`).
    static func count(_ value: some BinaryInteger) -> String {
        let digits = String(value.magnitude)
        var result = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(digit)
        }
        return value < 0 ? "-" + result : result
    }

    /// Seconds as `0.4 s`, `12 s`, `3 min`, `2.1 h`.
    static func seconds(_ value: Double) -> String {
        if value < 10 { return String(format: "%.1f s", value) }
        if value < 120 { return String(format: "%.0f s", value) }
        if value < 7200 { return String(format: "%.0f min", value / 60) }
        return String(format: "%.1f h", value / 3600)
    }

    /// A date as `2026-11-30 19:04:05 UTC`.
    static func date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: date)
    }

    /// A bar chart as inline SVG: groups of bars (`series` names the bars of each group), values
    /// labelled, for latency percentiles before and after.
    static func barChart(id: String, groups: [(label: String, values: [Double])], series: [String], unit: String) -> String {
        let width = 560.0, height = 220.0, left = 48.0, bottom = 30.0, top = 24.0
        let maximum = max(groups.flatMap(\.values).max() ?? 0, 0.001)
        let groupWidth = (width - left - 10) / Double(max(groups.count, 1))
        let barWidth = min(40, (groupWidth - 16) / Double(max(series.count, 1)))
        var svg = "<svg id=\"\(escape(id))\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" "
            + "aria-label=\"\(escape(series.joined(separator: " vs ")))\" xmlns=\"http://www.w3.org/2000/svg\">"
        svg += "<line class=\"axis\" x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - 5)\" y2=\"\(height - bottom)\"/>"
        for (groupIndex, group) in groups.enumerated() {
            let x0 = left + Double(groupIndex) * groupWidth + 8
            for (index, value) in group.values.enumerated() {
                let barHeight = (height - bottom - top) * value / maximum
                let x = x0 + Double(index) * barWidth
                let y = height - bottom - barHeight
                svg += "<rect class=\"bar s\(index)\" x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(barWidth - 3))\" height=\"\(fmt(barHeight))\">"
                    + "<title>\(escape(series[safe: index] ?? "")) \(escape(group.label)): \(fmt(value)) \(escape(unit))</title></rect>"
                svg += "<text class=\"value\" x=\"\(fmt(x + barWidth / 2 - 1.5))\" y=\"\(fmt(y - 4))\" text-anchor=\"middle\">\(fmt(value))</text>"
            }
            svg += "<text class=\"label\" x=\"\(fmt(x0 + barWidth * Double(group.values.count) / 2))\" y=\"\(fmt(height - 10))\" text-anchor=\"middle\">\(escape(group.label))</text>"
        }
        for (index, name) in series.enumerated() {
            svg += "<rect class=\"bar s\(index)\" x=\"\(fmt(left + Double(index) * 150))\" y=\"4\" width=\"10\" height=\"10\"/>"
                + "<text class=\"legend\" x=\"\(fmt(left + Double(index) * 150 + 14))\" y=\"13\">\(escape(name))</text>"
        }
        svg += "<text class=\"unit\" x=\"4\" y=\"\(fmt(top + 8))\">\(escape(unit))</text></svg>"
        return svg
    }

    /// A line chart as inline SVG of `points` (x: seconds ago → now, y ≥ 0).
    static func lineChart(id: String, points: [(x: Double, y: Double)], unit: String) -> String {
        let width = 560.0, height = 160.0, left = 48.0, bottom = 24.0, top = 10.0
        var svg = "<svg id=\"\(escape(id))\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" "
            + "aria-label=\"\(escape(unit)) over time\" xmlns=\"http://www.w3.org/2000/svg\">"
        svg += "<line class=\"axis\" x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - 5)\" y2=\"\(height - bottom)\"/>"
        guard let first = points.first, let last = points.last, points.count > 1 else {
            return svg + "<text class=\"label\" x=\"\(left + 10)\" y=\"\(height / 2)\">no samples yet (this page samples while it is watched)</text></svg>"
        }
        let span = max(last.x - first.x, 0.001)
        // At least 1 on the scale: a lag of milliseconds stays a flat line at the bottom.
        let maximum = max(points.map(\.y).max() ?? 0, 1)
        let path = points.map { point in
            let x = left + (width - left - 10) * (point.x - first.x) / span
            let y = height - bottom - (height - bottom - top) * point.y / maximum
            return "\(fmt(x)),\(fmt(y))"
        }.joined(separator: " ")
        svg += "<polyline class=\"line\" points=\"\(path)\"/>"
        svg += "<text class=\"unit\" x=\"4\" y=\"\(fmt(top + 8))\">\(fmt(maximum)) \(escape(unit))</text>"
        svg += "<text class=\"label\" x=\"\(left)\" y=\"\(height - 6)\">\(escape(seconds(span))) ago</text>"
        svg += "<text class=\"label\" x=\"\(width - 40)\" y=\"\(height - 6)\">now</text></svg>"
        return svg
    }

    private static func fmt(_ value: Double) -> String {
        value >= 100 ? String(format: "%.0f", value) : String(format: "%.1f", value)
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
