import Testing
import TenantryCore

@Suite("SQL script splitting")
struct SQLScriptTests {
    @Test("splits on semicolons outside strings, identifiers, comments and dollar quotes")
    func splits() throws {
        let script = """
            -- a comment; with a semicolon
            CREATE TABLE "we;ird" (v text DEFAULT 'a;b', w text DEFAULT E'it\\'s;');
            /* block ; /* nested ; */ still comment; */
            CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$;
            DO $$ BEGIN PERFORM 1; END $$;
            CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;
            SELECT 'it''s'
            """
        let statements = try SQLScript.statements(script)
        try #require(statements.count == 5, "\(statements)")
        #expect(statements[0].hasSuffix("DEFAULT E'it\\'s;')"))
        #expect(statements[1].contains("RETURN 1; END $body$"))
        #expect(statements[2].hasPrefix("DO $$"))
        #expect(statements[3].hasSuffix("THEN 2 END; END"))
        #expect(statements[4] == "SELECT 'it''s'")
    }

    @Test("comment-only and empty statements are dropped")
    func empty() throws {
        #expect(try SQLScript.statements(";;\n-- nothing\n/* x */;").isEmpty)
    }

    @Test("unterminated quotes are an error", arguments: ["select 'abc", "select \"abc", "select $$abc", "/* open"])
    func unterminated(_ script: String) {
        #expect(throws: TenantryError.self) { try SQLScript.statements(script) }
    }

    @Test("the lexer: words lowercased, quoted names unescaped, literals and comments opaque, byte ranges exact")
    func lexer() {
        let sql = "SELECT \"A\"\"b\", E'x\\';' /* c; */ FROM t -- x\n WHERE v = $1 AND w = $q$;$q$;"
        var lexer = SQLLexer(sql)
        var kinds: [SQLLexer.Kind] = []
        var texts: [String] = []
        while let token = lexer.next() {
            kinds.append(token.kind)
            texts.append(lexer.text(token.range))
        }
        #expect(kinds == [
            .word("select"), .quoted("A\"b"), .symbol(UInt8(ascii: ",")), .literal, .word("from"), .word("t"),
            .word("where"), .word("v"), .symbol(UInt8(ascii: "=")), .literal, .word("and"), .word("w"),
            .symbol(UInt8(ascii: "=")), .literal, .symbol(UInt8(ascii: ";")),
        ])
        #expect(texts[1] == "\"A\"\"b\"")
        #expect(texts[3] == "E'x\\';'")
        #expect(texts[13] == "$q$;$q$")
        var open = SQLLexer("select 'abc")
        _ = open.next()
        #expect(open.next()?.kind == .unterminated("string"))
    }
}
