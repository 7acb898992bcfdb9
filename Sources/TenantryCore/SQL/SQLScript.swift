import Foundation

/// Splits a SQL script into statements, so each can be sent on its own (PostgresNIO speaks only the
/// extended query protocol, which takes one statement at a time).
///
/// Tokens come from ``SQLLexer`` (strings, quoted identifiers, dollar quotes and comments can hide
/// a `;`); `BEGIN ATOMIC … END` bodies of SQL functions are kept whole.
public enum SQLScript {
    /// The statements of `script`, trimmed, without their `;`, empty ones (and comment-only ones)
    /// dropped.
    public static func statements(_ script: String) throws(TenantryError) -> [String] {
        var lexer = SQLLexer(script)
        var statements: [String] = []
        var start = 0
        var hasCode = false
        var atomicDepth = 0
        var previousWord = ""
        while let token = lexer.next() {
            switch token.kind {
            case .unterminated(let what):
                throw TenantryError(code: .invalidArgument, message: "the SQL script has an unterminated \(what)")
            case .symbol(UInt8(ascii: ";")) where atomicDepth == 0:
                if hasCode { statements.append(trimmed(lexer.text(start..<token.range.lowerBound))) }
                start = token.range.upperBound
                hasCode = false
                previousWord = ""
                continue
            case .word(let word):
                if word == "atomic", previousWord == "begin" { atomicDepth += 1 }
                if word == "end", atomicDepth > 0 { atomicDepth -= 1 }
                // CASE … END inside an atomic body also ends with END: count CASE as an opener.
                if word == "case", atomicDepth > 0 { atomicDepth += 1 }
                previousWord = word
            default:
                break
            }
            hasCode = true
        }
        if hasCode { statements.append(trimmed(lexer.text(start..<lexer.bytes.count))) }
        return statements
    }

    private static func trimmed(_ text: String) -> String {
        text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
