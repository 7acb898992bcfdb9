extension QueryKind {
    /// The kind of `sql`, from its main keyword.
    ///
    /// Leading whitespace, comments (`--`, nested `/* */`) and opening parentheses are skipped.
    /// For `WITH`, the main statement is the first `SELECT`/`INSERT`/`UPDATE`/`DELETE` outside the
    /// parentheses of the common table expressions, so `WITH moved AS (DELETE …) INSERT …` is an
    /// insert. Strings, quoted identifiers and dollar quotes never count as keywords.
    public static func classify(sql: String) -> QueryKind {
        var tokens = SQLTokens(sql)
        return mainKeyword(&tokens)?.kind ?? .other
    }

    /// Finds the main keyword and leaves `tokens` just after it.
    static func mainKeyword(_ tokens: inout SQLTokens) -> (word: String, kind: QueryKind)? {
        var depth = 0
        var afterWith = false
        while let token = tokens.next() {
            switch token {
            case .symbol(UInt8(ascii: "(")):
                depth += 1
            case .symbol(UInt8(ascii: ")")):
                depth = Swift.max(0, depth - 1)
            case .symbol(UInt8(ascii: ";")) where depth == 0:
                return nil
            case .word(let word) where depth == 0 || !afterWith:
                if afterWith {
                    if let kind = statementKind(word), kind != .other { return (word, kind) }
                } else if word == "with" {
                    afterWith = true
                } else {
                    return (word, statementKind(word) ?? .other)
                }
            case .symbol where !afterWith && depth == 0, .quoted where !afterWith, .literal where !afterWith:
                return nil  // text before the first keyword that is not "(": not a statement we know
            default:
                continue
            }
        }
        return nil
    }

    private static func statementKind(_ word: String) -> QueryKind? {
        switch word {
        case "select", "values", "table": .select
        case "insert": .insert
        case "update": .update
        case "delete": .delete
        default: nil
        }
    }
}

extension QueryMetric {
    /// The main table of `sql`, best effort: the target of `INSERT INTO`, `UPDATE` and
    /// `DELETE FROM`, or the first relation after the top-level `FROM` of a `SELECT` (`TABLE t`
    /// too). A schema-qualified name gives the bare table (`public.orders` → `orders`); unquoted
    /// names are lowercased as PostgreSQL folds them. `nil` when unsure: no `FROM`, a subquery,
    /// a function call, `VALUES`, DDL.
    public static func table(of sql: String) -> String? {
        var tokens = SQLTokens(sql)
        guard let main = QueryKind.mainKeyword(&tokens) else { return nil }
        switch main.word {
        case "insert":
            guard tokens.next() == .word("into") else { return nil }
            return relationName(&tokens, rejectCall: false)
        case "update", "table":
            return relationName(&tokens, rejectCall: false)
        case "delete":
            guard tokens.next() == .word("from") else { return nil }
            return relationName(&tokens, rejectCall: false)
        case "select":
            var depth = 0
            while let token = tokens.next() {
                switch token {
                case .symbol(UInt8(ascii: "(")): depth += 1
                case .symbol(UInt8(ascii: ")")): depth -= 1
                case .symbol(UInt8(ascii: ";")) where depth <= 0: return nil
                case .word("from") where depth == 0: return relationName(&tokens, rejectCall: true)
                case .word("union"), .word("intersect"), .word("except"): if depth == 0 { return nil }
                default: continue
                }
            }
            return nil
        default:
            return nil
        }
    }

    private static let notNames: Set<String> = ["lateral", "select", "values", "with", "rows", "set", "where"]

    /// Reads `[ONLY] name[.name…]`; `nil` when what follows is not a plain relation.
    private static func relationName(_ tokens: inout SQLTokens, rejectCall: Bool) -> String? {
        var token = tokens.next()
        if token == .word("only") { token = tokens.next() }
        func name(_ token: SQLTokens.Token?) -> String? {
            switch token {
            case .word(let word) where !notNames.contains(word) && !(word.first?.isNumber ?? true): word
            case .quoted(let name) where !name.isEmpty: name
            default: nil
            }
        }
        guard var result = name(token) else { return nil }
        var following = tokens.next()
        while following == .symbol(UInt8(ascii: ".")) {
            guard let part = name(tokens.next()) else { return nil }
            result = part
            following = tokens.next()
        }
        if rejectCall && following == .symbol(UInt8(ascii: "(")) { return nil }
        return result
    }
}

/// A minimal SQL lexer for ``QueryKind/classify(sql:)`` and ``QueryMetric/table(of:)``: words
/// (lowercased), quoted identifiers, single symbols; strings, dollar quotes and parameters become
/// `.literal`; whitespace and comments are skipped. It reads lazily, so a long statement costs
/// only as much as is inspected.
struct SQLTokens: IteratorProtocol {
    enum Token: Equatable {
        case word(String)
        case quoted(String)
        case literal
        case symbol(UInt8)
    }

    private let bytes: [UInt8]
    private var index = 0

    init(_ sql: String) { bytes = Array(sql.utf8) }

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

    mutating func next() -> Token? {
        while let c = byte() {
            switch c {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"), 0x0C:
                index += 1
            case UInt8(ascii: "-") where byte(1) == UInt8(ascii: "-"):
                while let b = byte(), b != UInt8(ascii: "\n") { index += 1 }
            case UInt8(ascii: "/") where byte(1) == UInt8(ascii: "*"):
                skipBlockComment()
            case UInt8(ascii: "'"):
                skipString(backslashEscapes: false)
                return .literal
            case UInt8(ascii: "\""):
                return .quoted(readQuotedIdentifier())
            case UInt8(ascii: "$"):
                return readDollar()
            case _ where Self.isWordByte(c):
                let start = index
                while let b = byte(), Self.isWordByte(b) { index += 1 }
                let word = String(decoding: bytes[start..<index], as: UTF8.self).lowercased()
                if word == "e", byte() == UInt8(ascii: "'") {
                    skipString(backslashEscapes: true)
                    return .literal
                }
                return .word(word)
            default:
                index += 1
                return .symbol(c)
            }
        }
        return nil
    }

    private mutating func skipBlockComment() {
        var depth = 0
        while let b = byte() {
            if b == UInt8(ascii: "/"), byte(1) == UInt8(ascii: "*") {
                depth += 1
                index += 2
            } else if b == UInt8(ascii: "*"), byte(1) == UInt8(ascii: "/") {
                depth -= 1
                index += 2
                if depth == 0 { return }
            } else {
                index += 1
            }
        }
    }

    private mutating func skipString(backslashEscapes: Bool) {
        index += 1  // opening quote
        while let b = byte() {
            index += 1
            if backslashEscapes && b == UInt8(ascii: "\\") {
                index += 1
            } else if b == UInt8(ascii: "'") {
                if byte() == UInt8(ascii: "'") { index += 1 } else { return }
            }
        }
    }

    private mutating func readQuotedIdentifier() -> String {
        index += 1
        var name: [UInt8] = []
        while let b = byte() {
            index += 1
            if b == UInt8(ascii: "\"") {
                if byte() == UInt8(ascii: "\"") { name.append(b); index += 1 } else { break }
            } else {
                name.append(b)
            }
        }
        return String(decoding: name, as: UTF8.self)
    }

    /// `$1` (a parameter), `$tag$ … $tag$` or `$$ … $$` (a dollar quote); else the symbol `$`.
    private mutating func readDollar() -> Token {
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
        return .literal
    }
}
