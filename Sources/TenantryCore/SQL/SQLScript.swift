import Foundation

/// Splits a SQL script into statements, so each can be sent on its own (PostgresNIO speaks only the
/// extended query protocol, which takes one statement at a time).
///
/// Understands everything that can hide a `;`: single-quoted strings (`''` escapes), `E'…'` strings
/// (backslash escapes), quoted identifiers, dollar-quoted bodies (`$$…$$`, `$tag$…$tag$`), line
/// comments and nested block comments, and `BEGIN ATOMIC … END` bodies of SQL functions.
public enum SQLScript {
    /// The statements of `script`, trimmed, without their `;`, empty ones (and comment-only ones)
    /// dropped.
    public static func statements(_ script: String) throws(TenantryError) -> [String] {
        let chars = Array(script.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var hasCode = false
        var atomicDepth = 0
        var word = ""
        var previousWord = ""
        var index = 0

        func flushWord() {
            guard !word.isEmpty else { return }
            let upper = word.uppercased()
            if upper == "ATOMIC", previousWord == "BEGIN" { atomicDepth += 1 }
            if upper == "END", atomicDepth > 0 { atomicDepth -= 1 }
            // CASE … END inside an atomic body also ends with END: count CASE as an opener.
            if upper == "CASE", atomicDepth > 0 { atomicDepth += 1 }
            previousWord = upper
            word = ""
        }

        while index < chars.count {
            let c = chars[index]
            let next: Unicode.Scalar? = index + 1 < chars.count ? chars[index + 1] : nil
            // Line comment.
            if c == "-", next == "-" {
                flushWord()
                while index < chars.count, chars[index] != "\n" { current.append(chars[index]); index += 1 }
                continue
            }
            // Block comment (nested).
            if c == "/", next == "*" {
                flushWord()
                var depth = 0
                repeat {
                    if chars[index] == "/", index + 1 < chars.count, chars[index + 1] == "*" {
                        depth += 1; current.append(chars[index]); current.append(chars[index + 1]); index += 2
                    } else if chars[index] == "*", index + 1 < chars.count, chars[index + 1] == "/" {
                        depth -= 1; current.append(chars[index]); current.append(chars[index + 1]); index += 2
                    } else {
                        current.append(chars[index]); index += 1
                    }
                } while depth > 0 && index < chars.count
                if depth > 0 { throw unterminated("block comment") }
                continue
            }
            // Strings and quoted identifiers.
            if c == "'" || c == "\"" {
                let backslashEscapes = c == "'" && (word.uppercased() == "E")
                flushWord()
                hasCode = true
                current.append(c); index += 1
                var closed = false
                while index < chars.count {
                    let d = chars[index]
                    current.append(d); index += 1
                    if backslashEscapes, d == "\\", index < chars.count { current.append(chars[index]); index += 1; continue }
                    if d == c {
                        if index < chars.count, chars[index] == c { current.append(chars[index]); index += 1; continue }
                        closed = true
                        break
                    }
                }
                if !closed { throw unterminated(c == "'" ? "string" : "quoted identifier") }
                continue
            }
            // Dollar quoting: $tag$ … $tag$ (tag: letters, digits, _; not starting with a digit).
            if c == "$", word.isEmpty || !(word.unicodeScalars.last.map(isWordChar) ?? false) {
                var end = index + 1
                while end < chars.count, isWordChar(chars[end]) { end += 1 }
                let tagBody = chars[(index + 1)..<min(end, chars.count)]
                if end < chars.count, chars[end] == "$", !(tagBody.first.map { $0.properties.numericType != nil } ?? false) {
                    flushWord()
                    hasCode = true
                    let tag = Array(chars[index...end])
                    current.append(contentsOf: tag)
                    index = end + 1
                    var closed = false
                    while index < chars.count {
                        if chars[index] == "$", index + tag.count <= chars.count, Array(chars[index..<(index + tag.count)]) == tag {
                            current.append(contentsOf: tag); index += tag.count; closed = true; break
                        }
                        current.append(chars[index]); index += 1
                    }
                    if !closed { throw unterminated("dollar-quoted string \(String(String.UnicodeScalarView(tag)))") }
                    continue
                }
            }
            if c == ";" { flushWord() }
            if c == ";", atomicDepth == 0 {
                if hasCode { statements.append(trimmed(current)) }
                current = String.UnicodeScalarView()
                hasCode = false
                previousWord = ""
                index += 1
                continue
            }
            if isWordChar(c) {
                word.unicodeScalars.append(c)
            } else {
                flushWord()
            }
            if !c.properties.isWhitespace { hasCode = true }
            current.append(c)
            index += 1
        }
        flushWord()
        if hasCode { statements.append(trimmed(current)) }
        return statements
    }

    private static func isWordChar(_ c: Unicode.Scalar) -> Bool {
        c.properties.isAlphabetic || c.properties.numericType != nil || c == "_"
    }

    private static func trimmed(_ view: String.UnicodeScalarView) -> String {
        String(view).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func unterminated(_ what: String) -> TenantryError {
        TenantryError(code: .invalidArgument, message: "the SQL script has an unterminated \(what)")
    }
}
