import TenantryCore

extension QueryKind {
    /// The kind of `sql`, from its main keyword.
    ///
    /// Leading whitespace, comments (`--`, nested `/* */`) and opening parentheses are skipped.
    /// For `WITH`, the main statement is the first `SELECT`/`INSERT`/`UPDATE`/`DELETE` outside the
    /// parentheses of the common table expressions, so `WITH moved AS (DELETE …) INSERT …` is an
    /// insert. Strings, quoted identifiers and dollar quotes never count as keywords.
    public static func classify(sql: String) -> QueryKind {
        var tokens = SQLLexer(sql)
        return mainKeyword(&tokens)?.kind ?? .other
    }

    /// Finds the main keyword and leaves `tokens` just after it.
    static func mainKeyword(_ tokens: inout SQLLexer) -> (word: String, kind: QueryKind)? {
        var depth = 0
        var afterWith = false
        while let token = tokens.nextKind() {
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
        var tokens = SQLLexer(sql)
        guard let main = QueryKind.mainKeyword(&tokens) else { return nil }
        switch main.word {
        case "insert":
            guard tokens.nextKind() == .word("into") else { return nil }
            return relationName(&tokens, rejectCall: false)
        case "update", "table":
            return relationName(&tokens, rejectCall: false)
        case "delete":
            guard tokens.nextKind() == .word("from") else { return nil }
            return relationName(&tokens, rejectCall: false)
        case "select":
            var depth = 0
            while let token = tokens.nextKind() {
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
    private static func relationName(_ tokens: inout SQLLexer, rejectCall: Bool) -> String? {
        var token = tokens.nextKind()
        if token == .word("only") { token = tokens.nextKind() }
        func name(_ token: SQLLexer.Kind?) -> String? {
            switch token {
            case .word(let word) where !notNames.contains(word) && !(word.first?.isNumber ?? true): word
            case .quoted(let name) where !name.isEmpty: name
            default: nil
            }
        }
        guard var result = name(token) else { return nil }
        var following = tokens.nextKind()
        while following == .symbol(UInt8(ascii: ".")) {
            guard let part = name(tokens.nextKind()) else { return nil }
            result = part
            following = tokens.nextKind()
        }
        if rejectCall && following == .symbol(UInt8(ascii: "(")) { return nil }
        return result
    }
}
