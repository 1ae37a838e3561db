/// A strict RFC 8259 JSON parser that remembers where every value and object key starts, so that configuration
/// files (sandbox profiles) can report problems as `file:line:column`. Foundation's `JSONDecoder` keeps no positions.
///
/// Strictness: no comments, no trailing commas, no single quotes, no NaN/Infinity, no leading zeros or `+`, no raw
/// control characters in strings, lone surrogates in `\u` escapes rejected, duplicate object keys rejected (RFC 8259
/// only says they SHOULD be unique; in a configuration file a duplicate is always a mistake). A leading UTF-8 byte
/// order mark is skipped. Lines and columns are 1-based; columns count Unicode scalars, tabs count as one.

/// A line and column inside a JSON text.
public struct JSONPosition: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
    public var description: String { "\(line):\(column)" }
}

/// A number as written. JSON numbers are arbitrary-precision text; keep the text so that 64-bit integers survive.
public struct JSONNumber: Sendable, Equatable {
    public var text: String
    public init(text: String) { self.text = text }

    public var double: Double { Double(text) ?? .nan }
    /// The value when the literal is an integer (no fraction, no exponent) that fits.
    public var int64: Int64? { Int64(text) }
    public var uint64: UInt64? { UInt64(text) }
    /// The value when it is integral, also when written as `1e9` or `30.0`, and fits in Int64.
    public var integralValue: Int64? {
        if let i = Int64(text) { return i }
        let d = double
        guard d.isFinite, d.rounded(.towardZero) == d, d >= -9.223372036854775e18, d <= 9.223372036854775e18 else {
            return nil
        }
        return Int64(d)
    }
}

/// A parsed JSON value with the position where it starts.
public struct JSONNode: Sendable, Equatable {
    public indirect enum Value: Sendable, Equatable {
        case null
        case bool(Bool)
        case number(JSONNumber)
        case string(String)
        case array([JSONNode])
        /// Members in document order (keys are unique: the parser rejects duplicates).
        case object([JSONMember])
    }
    public var value: Value
    public var position: JSONPosition

    public init(value: Value, position: JSONPosition) {
        self.value = value
        self.position = position
    }

    /// "object", "array", "string", "number", "boolean" or "null": for messages such as "expected a string, found
    /// an array".
    public var typeName: String {
        switch value {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

public struct JSONMember: Sendable, Equatable {
    public var key: String
    public var keyPosition: JSONPosition
    public var value: JSONNode
    public init(key: String, keyPosition: JSONPosition, value: JSONNode) {
        self.key = key
        self.keyPosition = keyPosition
        self.value = value
    }
}

public struct JSONSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public var position: JSONPosition
    public var message: String
    public init(position: JSONPosition, message: String) {
        self.position = position
        self.message = message
    }
    public var description: String { "\(position): \(message)" }
}

public enum JSONWithPositions {
    /// Nesting deeper than this is rejected instead of risking the stack.
    public static let maxDepth = 256

    public static func parse(_ text: String) throws(JSONSyntaxError) -> JSONNode {
        var parser = Parser(bytes: Array(text.utf8))
        return try parser.parseDocument()
    }

    public static func parse(bytes: [UInt8]) throws(JSONSyntaxError) -> JSONNode {
        var parser = Parser(bytes: bytes)
        return try parser.parseDocument()
    }
}

private struct Parser {
    let bytes: [UInt8]
    var index = 0
    var line = 1
    var column = 1
    var depth = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    var position: JSONPosition { JSONPosition(line: line, column: column) }

    func error(_ message: String, at position: JSONPosition? = nil) -> JSONSyntaxError {
        JSONSyntaxError(position: position ?? self.position, message: message)
    }

    var atEnd: Bool { index >= bytes.count }
    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    /// Moves past one byte, keeping line and column (columns count scalars: continuation bytes do not advance).
    mutating func advance() {
        let b = bytes[index]
        index += 1
        if b == 0x0A {
            line += 1
            column = 1
        } else if b & 0xC0 != 0x80 {
            column += 1
        }
    }

    mutating func parseDocument() throws(JSONSyntaxError) -> JSONNode {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        skipWhitespace()
        if atEnd { throw error("empty document: expected a JSON value") }
        let node = try parseValue()
        skipWhitespace()
        if !atEnd {
            throw error("unexpected \(describeCurrent()) after the end of the JSON value")
        }
        return node
    }

    mutating func skipWhitespace() {
        while let b = current, b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { advance() }
    }

    /// A readable name for the byte (or character) at the current position.
    func describeCurrent() -> String {
        guard let b = current else { return "end of input" }
        switch b {
        case 0x22: return "'\"'"
        case 0x20..<0x7F: return "'\(Character(Unicode.Scalar(b)))'"
        case 0x0A: return "line break"
        case 0x09: return "tab"
        case 0..<0x20: return "control character U+\(hex4(UInt32(b)))"
        default:
            // Decode the scalar for the message.
            var end = index + 1
            while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
            let s = String(decoding: bytes[index..<end], as: UTF8.self)
            return "'\(s)'"
        }
    }

    mutating func parseValue() throws(JSONSyntaxError) -> JSONNode {
        let start = position
        guard let b = current else { throw error("unexpected end of input: expected a value") }
        switch b {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return JSONNode(value: .string(try parseString()), position: start)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return JSONNode(value: .number(try parseNumber()), position: start)
        case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
            return try parseLiteral()
        case UInt8(ascii: "'"):
            throw error("strings must be in double quotes, not single quotes")
        case UInt8(ascii: "/"):
            throw error("comments are not allowed in JSON")
        case UInt8(ascii: "+"):
            throw error("numbers must not start with '+'")
        case UInt8(ascii: "."):
            throw error("numbers must start with a digit, not '.'")
        case UInt8(ascii: "]"), UInt8(ascii: "}"):
            throw error("unexpected \(describeCurrent()): expected a value")
        default:
            if isIdentifierByte(b) {
                let word = readWord()
                switch word {
                case "NaN", "Infinity": throw error("\(word) is not a JSON value", at: start)
                case "True", "False", "None", "TRUE", "FALSE", "NULL", "Null":
                    throw error("unknown literal '\(word)' (JSON literals are lowercase: true, false, null)", at: start)
                default:
                    throw error("unexpected '\(word)': expected a value (strings must be in double quotes)", at: start)
                }
            }
            throw error("unexpected \(describeCurrent()): expected a value")
        }
    }

    func isIdentifierByte(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || (b >= 0x30 && b <= 0x39)
    }

    mutating func readWord() -> String {
        let s = index
        while let b = current, isIdentifierByte(b) { advance() }
        return String(decoding: bytes[s..<index], as: UTF8.self)
    }

    mutating func parseLiteral() throws(JSONSyntaxError) -> JSONNode {
        let start = position
        let word = readWord()
        switch word {
        case "true": return JSONNode(value: .bool(true), position: start)
        case "false": return JSONNode(value: .bool(false), position: start)
        case "null": return JSONNode(value: .null, position: start)
        default:
            throw error("unexpected '\(word)': expected a value (strings must be in double quotes)", at: start)
        }
    }

    mutating func enter(_ start: JSONPosition) throws(JSONSyntaxError) {
        depth += 1
        if depth > JSONWithPositions.maxDepth {
            throw error("nesting deeper than \(JSONWithPositions.maxDepth) levels", at: start)
        }
    }

    mutating func parseObject() throws(JSONSyntaxError) -> JSONNode {
        let start = position
        try enter(start)
        advance()  // {
        var members: [JSONMember] = []
        var seen: [String: JSONPosition] = [:]
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            advance()
            depth -= 1
            return JSONNode(value: .object([]), position: start)
        }
        while true {
            skipWhitespace()
            let keyPosition = position
            guard let b = current else {
                throw error("unexpected end of input: object opened at \(start) is not closed")
            }
            if b != UInt8(ascii: "\"") {
                if b == UInt8(ascii: "}") && !members.isEmpty {
                    throw error("trailing comma before '}' is not allowed in JSON")
                }
                if b == UInt8(ascii: "'") { throw error("object keys must be in double quotes, not single quotes") }
                if b == UInt8(ascii: "/") { throw error("comments are not allowed in JSON") }
                if isIdentifierByte(b) {
                    let word = readWord()
                    throw error("object keys must be strings in double quotes: write \"\(word)\"", at: keyPosition)
                }
                throw error("unexpected \(describeCurrent()): expected a key in double quotes")
            }
            let key = try parseString()
            if let first = seen[key] {
                throw error("duplicate key \"\(key)\" (first at line \(first.line), column \(first.column))",
                            at: keyPosition)
            }
            seen[key] = keyPosition
            skipWhitespace()
            guard current == UInt8(ascii: ":") else {
                if atEnd { throw error("unexpected end of input: expected ':' after key \"\(key)\"") }
                throw error("expected ':' after key \"\(key)\", found \(describeCurrent())")
            }
            advance()
            skipWhitespace()
            if current == UInt8(ascii: ",") || current == UInt8(ascii: "}") {
                throw error("missing value for key \"\(key)\"")
            }
            let value = try parseValue()
            members.append(JSONMember(key: key, keyPosition: keyPosition, value: value))
            skipWhitespace()
            guard let c = current else {
                throw error("unexpected end of input: object opened at \(start) is not closed")
            }
            if c == UInt8(ascii: ",") {
                advance()
                continue
            }
            if c == UInt8(ascii: "}") {
                advance()
                depth -= 1
                return JSONNode(value: .object(members), position: start)
            }
            if c == UInt8(ascii: "\"") {
                throw error("missing ',' between object members")
            }
            throw error("expected ',' or '}' after the value of \"\(key)\", found \(describeCurrent())")
        }
    }

    mutating func parseArray() throws(JSONSyntaxError) -> JSONNode {
        let start = position
        try enter(start)
        advance()  // [
        var elements: [JSONNode] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") {
            advance()
            depth -= 1
            return JSONNode(value: .array([]), position: start)
        }
        while true {
            skipWhitespace()
            guard let b = current else {
                throw error("unexpected end of input: array opened at \(start) is not closed")
            }
            if b == UInt8(ascii: "]") { throw error("trailing comma before ']' is not allowed in JSON") }
            if b == UInt8(ascii: ",") { throw error("unexpected ',': expected a value") }
            elements.append(try parseValue())
            skipWhitespace()
            guard let c = current else {
                throw error("unexpected end of input: array opened at \(start) is not closed")
            }
            if c == UInt8(ascii: ",") {
                advance()
                continue
            }
            if c == UInt8(ascii: "]") {
                advance()
                depth -= 1
                return JSONNode(value: .array(elements), position: start)
            }
            if c == UInt8(ascii: "}") {
                throw error("unexpected '}': array opened at \(start) must be closed with ']'")
            }
            throw error("expected ',' or ']' in array, found \(describeCurrent())")
        }
    }

    mutating func parseString() throws(JSONSyntaxError) -> String {
        let start = position
        advance()  // opening quote
        var out: [UInt8] = []
        while true {
            guard let b = current else {
                throw error("unterminated string (opened at \(start))")
            }
            switch b {
            case UInt8(ascii: "\""):
                advance()
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                let escapePosition = position
                advance()
                guard let e = current else { throw error("unterminated string (opened at \(start))") }
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    advance()
                    var scalar = try readHex4(escapePosition)
                    if scalar >= 0xD800 && scalar <= 0xDBFF {
                        guard current == UInt8(ascii: "\\"), index + 1 < bytes.count,
                              bytes[index + 1] == UInt8(ascii: "u") else {
                            throw error("lone high surrogate \\u\(hex4(scalar)) (it must be followed by a low "
                                        + "surrogate escape)", at: escapePosition)
                        }
                        advance()
                        advance()
                        let low = try readHex4(escapePosition)
                        guard low >= 0xDC00 && low <= 0xDFFF else {
                            throw error("high surrogate \\u\(hex4(scalar)) followed by \\u\(hex4(low)), "
                                        + "which is not a low surrogate", at: escapePosition)
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                        throw error("lone low surrogate \\u\(hex4(scalar))", at: escapePosition)
                    }
                    // Valid by construction (surrogates handled above).
                    let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                    continue  // readHex4 already advanced
                default:
                    throw error("invalid escape '\\\(describeEscape(e))' in string (valid: \\\" \\\\ \\/ \\b \\f "
                                + "\\n \\r \\t \\uXXXX)", at: escapePosition)
                }
                advance()
            case 0..<0x20:
                if b == 0x0A {
                    throw error("unterminated string (opened at \(start)): line break inside a string "
                                + "(write \\n)")
                }
                throw error("control character U+\(hex4(UInt32(b))) must be escaped inside a string")
            default:
                out.append(b)
                advance()
            }
        }
    }

    func describeEscape(_ e: UInt8) -> String {
        if e >= 0x20 && e < 0x7F { return String(Character(Unicode.Scalar(e))) }
        return "U+" + hex4(UInt32(e))
    }

    mutating func readHex4(_ escapePosition: JSONPosition) throws(JSONSyntaxError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let h = current else { throw error("unterminated \\u escape", at: escapePosition) }
            let d: UInt32
            switch h {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(h - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(h - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(h - UInt8(ascii: "A") + 10)
            default: throw error("\\u must be followed by four hex digits", at: escapePosition)
            }
            v = v * 16 + d
            advance()
        }
        return v
    }

    mutating func parseNumber() throws(JSONSyntaxError) -> JSONNumber {
        let start = position
        let s = index
        if current == UInt8(ascii: "-") { advance() }
        guard let first = current, isDigit(first) else {
            throw error("'-' must be followed by a digit", at: start)
        }
        if first == UInt8(ascii: "0") {
            advance()
            if let c = current, isDigit(c) { throw error("numbers must not have leading zeros", at: start) }
        } else {
            while let c = current, isDigit(c) { advance() }
        }
        if current == UInt8(ascii: ".") {
            advance()
            guard let c = current, isDigit(c) else {
                throw error("a digit must follow the decimal point")
            }
            while let c = current, isDigit(c) { advance() }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            advance()
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { advance() }
            guard let c = current, isDigit(c) else { throw error("a digit must follow the exponent") }
            while let c = current, isDigit(c) { advance() }
        }
        if let c = current, isIdentifierByte(c) {
            if c == UInt8(ascii: "x") || c == UInt8(ascii: "X") {
                throw error("hexadecimal numbers are not allowed in JSON; write the decimal value", at: start)
            }
            throw error("unexpected \(describeCurrent()) in number")
        }
        return JSONNumber(text: String(decoding: bytes[s..<index], as: UTF8.self))
    }

    func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
}

private func hex4(_ v: UInt32) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - s.count)) + s
}
