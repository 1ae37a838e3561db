import Testing
@testable import InterpreterCore

@Suite struct ProfileJSONTests {
    func syntaxError(_ text: String) -> JSONSyntaxError? {
        do {
            _ = try JSONWithPositions.parse(text)
            return nil
        } catch {
            return error
        }
    }

    @Test func positionsOfValuesAndKeys() throws {
        let node = try JSONWithPositions.parse("{\n  \"a\": [1, true],\n\t\"é\": \"x\", \"b\": null\n}")
        guard case .object(let members) = node.value else { Issue.record("not an object"); return }
        #expect(node.position == JSONPosition(line: 1, column: 1))
        #expect(members.map(\.key) == ["a", "é", "b"])
        #expect(members[0].keyPosition == JSONPosition(line: 2, column: 3))
        #expect(members[0].value.position == JSONPosition(line: 2, column: 8))
        guard case .array(let elements) = members[0].value.value else { Issue.record("not an array"); return }
        #expect(elements[1].position == JSONPosition(line: 2, column: 12))
        // A tab is one column; "é" is one column although it is two UTF-8 bytes.
        #expect(members[1].keyPosition == JSONPosition(line: 3, column: 2))
        #expect(members[2].keyPosition == JSONPosition(line: 3, column: 12))
    }

    @Test func stringsAndNumbersKeepTheirValue() throws {
        let node = try JSONWithPositions.parse(#"["a\"b\\\/\n\u00e9\ud83d\ude00", 18446744073709551615, -0.5e3, 0]"#)
        guard case .array(let e) = node.value else { Issue.record("not an array"); return }
        #expect(e[0].value == .string("a\"b\\/\né😀"))
        guard case .number(let big) = e[1].value, case .number(let neg) = e[2].value else {
            Issue.record("not numbers")
            return
        }
        #expect(big.uint64 == UInt64.max)
        #expect(neg.double == -500)
        #expect(neg.integralValue == -500)
    }

    @Test func malformedJSONIsReportedWithLineAndColumn() {
        let cases: [(String, Int, Int, String)] = [
            ("{\n  \"a\": 1\n  \"b\": 2\n}", 3, 3, "missing ','"),
            ("{\"a\": 1,}", 1, 9, "trailing comma"),
            ("[1, 2,\n]", 2, 1, "trailing comma"),
            ("{\n  // note\n  \"a\": 1\n}", 2, 3, "comments are not allowed"),
            ("{'a': 1}", 1, 2, "double quotes"),
            ("{\"a\": \"unterminated\n}", 1, 20, "unterminated string"),
            ("{\"a\": 01}", 1, 7, "leading zeros"),
            ("{\"a\": True}", 1, 7, "lowercase"),
            ("{\"a\": NaN}", 1, 7, "NaN"),
            ("{\"a\": 1, \"a\": 2}", 1, 10, "duplicate key \"a\""),
            ("{\"a\": 1} x", 1, 10, "after the end"),
            ("{\"a\" 1}", 1, 6, "expected ':'"),
            ("[\"\\x\"]", 1, 3, "invalid escape"),
            ("[\"\\ud800\"]", 1, 3, "lone high surrogate"),
            ("{\"a\": [1, 2}", 1, 12, "must be closed with ']'"),
            ("{\"a\": 0x10}", 1, 7, "hexadecimal"),
            ("", 1, 1, "empty document"),
            ("{\"a\": {", 1, 8, "not closed"),
        ]
        for (text, line, column, fragment) in cases {
            let error = syntaxError(text)
            #expect(error?.position == JSONPosition(line: line, column: column), "\(text.debugDescription): \(String(describing: error))")
            #expect(error?.message.contains(fragment) == true, "\(text.debugDescription): \(String(describing: error))")
        }
    }

    @Test func deepNestingIsAnErrorNotACrash() {
        let text = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(syntaxError(text)?.message.contains("nesting deeper") == true)
    }

    @Test func byteOrderMarkIsSkipped() throws {
        let node = try JSONWithPositions.parse("\u{FEFF}{\"a\": 1}")
        #expect(node.typeName == "object")
    }
}
