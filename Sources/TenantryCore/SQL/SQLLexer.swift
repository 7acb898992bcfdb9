/// The one SQL lexer of the project: splits SQL text into words, quoted identifiers, literals and
/// symbols, skipping whitespace and comments. ``SQLScript`` splits scripts into statements with it;
/// the query monitor classifies statements and finds their tables with it.
///
/// Understands everything that can hide a `;` or a keyword: single-quoted strings (`''` escapes),
/// `E'…'` strings (backslash escapes), quoted identifiers (`""` escapes), dollar-quoted bodies
/// (`$$…$$`, `$tag$…$tag$`), parameters (`$1`), line comments and nested block comments.
package struct SQLLexer: IteratorProtocol {
    /// What a token is.
    package enum Kind: Equatable, Sendable {
        /// A keyword or unquoted name, lowercased.
        case word(String)
        /// A quoted identifier's name (quotes removed, `""` unescaped).
        case quoted(String)
        /// A string, dollar-quoted body, number-like parameter (`$1`).
        case literal
        /// Any other byte (`;`, `(`, `,`, …).
        case symbol(UInt8)
        /// A string, quoted identifier, dollar quote or block comment that never ends; names which.
        case unterminated(String)
    }

    /// One token: its kind and where it is in the text (UTF-8 byte offsets).
    package struct Token: Equatable, Sendable {
        /// What it is.
        package var kind: Kind
        /// Its UTF-8 byte range in the text.
        package var range: Range<Int>
    }

    /// The text's UTF-8 bytes.
    package let bytes: [UInt8]
    private var index = 0

    /// A lexer over `sql`.
    package init(_ sql: String) { bytes = Array(sql.utf8) }

    /// The next token, or nil at the end.
    package mutating func next() -> Token? {
        while let c = byte() {
            let start = index
            switch c {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), 0x0C:
                index += 1
            case UInt8(ascii: "-") where byte(1) == UInt8(ascii: "-"):
                while let b = byte(), b != UInt8(ascii: "\n") { index += 1 }
            case UInt8(ascii: "/") where byte(1) == UInt8(ascii: "*"):
                if !skipBlockComment() { return token(.unterminated("block comment"), from: start) }
            case UInt8(ascii: "'"):
                let closed = skipString(backslashEscapes: false)
                return token(closed ? .literal : .unterminated("string"), from: start)
            case UInt8(ascii: "\""):
                let name = readQuotedIdentifier()
                guard let name else { return token(.unterminated("quoted identifier"), from: start) }
                return token(.quoted(name), from: start)
            case UInt8(ascii: "$"):
                let kind = readDollar()
                return token(kind, from: start)
            case _ where Self.isWordByte(c):
                while let b = byte(), Self.isWordByte(b) { index += 1 }
                let word = String(decoding: bytes[start..<index], as: UTF8.self).lowercased()
                if word == "e", byte() == UInt8(ascii: "'") {
                    let closed = skipString(backslashEscapes: true)
                    return token(closed ? .literal : .unterminated("string"), from: start)
                }
                return token(.word(word), from: start)
            default:
                index += 1
                return token(.symbol(c), from: start)
            }
        }
        return nil
    }

    /// The next token's kind, or nil at the end (for readers that need no positions).
    package mutating func nextKind() -> Kind? { next()?.kind }

    /// The text of `range` (byte offsets).
    package func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

    /// A token from `start` to the current position (call it after the token's bytes are consumed:
    /// an argument that consumes them would run after `self` was read).
    private func token(_ kind: Kind, from start: Int) -> Token { Token(kind: kind, range: start..<index) }

    private func byte(_ offset: Int = 0) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    private static func isWordByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "$"), 0x80...:
            true
        default: false
        }
    }

    /// Skips a (nested) block comment; false when it never ends.
    private mutating func skipBlockComment() -> Bool {
        var depth = 0
        while let b = byte() {
            if b == UInt8(ascii: "/"), byte(1) == UInt8(ascii: "*") {
                depth += 1
                index += 2
            } else if b == UInt8(ascii: "*"), byte(1) == UInt8(ascii: "/") {
                depth -= 1
                index += 2
                if depth == 0 { return true }
            } else {
                index += 1
            }
        }
        return false
    }

    /// Skips a string from its opening quote; false when it never ends.
    private mutating func skipString(backslashEscapes: Bool) -> Bool {
        index += 1  // opening quote
        while let b = byte() {
            index += 1
            if backslashEscapes && b == UInt8(ascii: "\\") {
                index += 1
            } else if b == UInt8(ascii: "'") {
                if byte() == UInt8(ascii: "'") { index += 1 } else { return true }
            }
        }
        return false
    }

    /// Reads a quoted identifier from its opening quote; nil when it never ends.
    private mutating func readQuotedIdentifier() -> String? {
        index += 1
        var name: [UInt8] = []
        while let b = byte() {
            index += 1
            if b == UInt8(ascii: "\"") {
                if byte() == UInt8(ascii: "\"") { name.append(b); index += 1 } else { return String(decoding: name, as: UTF8.self) }
            } else {
                name.append(b)
            }
        }
        return nil
    }

    /// `$1` (a parameter), `$tag$ … $tag$` or `$$ … $$` (a dollar quote); else the symbol `$`.
    private mutating func readDollar() -> Kind {
        if let d = byte(1), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) {
            index += 1
            while let b = byte(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) { index += 1 }
            return .literal
        }
        var end = index + 1
        while end < bytes.count, Self.isWordByte(bytes[end]), bytes[end] != UInt8(ascii: "$") { end += 1 }
        guard end < bytes.count, bytes[end] == UInt8(ascii: "$") else {
            index += 1
            return .symbol(UInt8(ascii: "$"))
        }
        let tag = Array(bytes[index...end])
        index = end + 1
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "$"), bytes.count - index >= tag.count,
                bytes[index..<(index + tag.count)].elementsEqual(tag)
            {
                index += tag.count
                return .literal
            }
            index += 1
        }
        return .unterminated("dollar-quoted string \(String(decoding: tag, as: UTF8.self))")
    }
}
