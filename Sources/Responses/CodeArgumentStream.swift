import Foundation
import InterpreterCore

/// Streams the `code` of a tool call while the model is still writing its JSON arguments
/// (`{"code": "import num` ... ): each `feed` returns the code characters that became certain, so that
/// `response.code_interpreter_call_code.delta` events follow the model's writing. Escapes split across pieces
/// (`\` then `n`, a `\uD83D\uDE00` pair) wait for the rest.
public struct CodeArgumentStream: Sendable {
    private var buffer: [Unicode.Scalar] = []
    /// The code emitted so far.
    public private(set) var emitted = ""

    public init() {}

    /// Adds a piece of the arguments; returns the new code characters (possibly "").
    public mutating func feed(_ piece: String) -> String {
        buffer.append(contentsOf: piece.unicodeScalars)
        guard let code = Self.partialCode(buffer), code.count > emitted.count, code.hasPrefix(emitted) else { return "" }
        let delta = String(code.dropFirst(emitted.count))
        emitted = code
        return delta
    }

    /// The rest of `finalCode` not emitted yet ("" when the stream went elsewhere).
    public mutating func finish(finalCode: String) -> String {
        guard finalCode.hasPrefix(emitted) else { return "" }
        let rest = String(finalCode.dropFirst(emitted.count))
        emitted = finalCode
        return rest
    }

    /// The code of the arguments' top-level `"code"` string so far, decoded; nil until that value has begun.
    static func partialCode(_ s: [Unicode.Scalar]) -> String? {
        var i = 0
        func skipSpace() { while i < s.count, s[i] == " " || s[i] == "\n" || s[i] == "\t" || s[i] == "\r" { i += 1 } }
        skipSpace()
        guard i < s.count, s[i] == "{" else { return nil }
        i += 1
        while true {
            skipSpace()
            guard i < s.count, s[i] == "\"" else { return nil }
            guard case .complete(let key, let next) = decodeString(s, from: i) else { return nil }
            i = next
            skipSpace()
            guard i < s.count, s[i] == ":" else { return nil }
            i += 1
            skipSpace()
            guard i < s.count else { return nil }
            if key == "code" {
                guard s[i] == "\"" else { return nil }
                switch decodeString(s, from: i) {
                case .complete(let value, _): return value
                case .partial(let value): return value
                }
            }
            guard let after = skipValue(s, from: i) else { return nil }
            i = after
            skipSpace()
            guard i < s.count, s[i] == "," else { return nil }
            i += 1
        }
    }

    enum Decoded {
        case complete(String, next: Int)
        case partial(String)
    }

    /// Decodes the JSON string starting at the quote `s[start]`.
    static func decodeString(_ s: [Unicode.Scalar], from start: Int) -> Decoded {
        var out = String.UnicodeScalarView()
        var i = start + 1
        while i < s.count {
            let c = s[i]
            if c == "\"" { return .complete(String(out), next: i + 1) }
            if c != "\\" {
                out.append(c)
                i += 1
                continue
            }
            guard i + 1 < s.count else { return .partial(String(out)) }
            let e = s[i + 1]
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "u":
                guard let (scalar, length) = unicodeEscape(s, at: i) else { return .partial(String(out)) }
                out.append(scalar)
                i += length
                continue
            default: out.append(e)  // \" \\ \/ (and anything else, leniently)
            }
            i += 2
        }
        return .partial(String(out))
    }

    /// `\uXXXX` (or a surrogate pair) at `s[i]`: the scalar and the escape's length; nil while incomplete.
    static func unicodeEscape(_ s: [Unicode.Scalar], at i: Int) -> (Unicode.Scalar, Int)? {
        func hex(_ from: Int) -> UInt32? {
            guard from + 4 <= s.count else { return nil }
            return UInt32(String(String.UnicodeScalarView(s[from..<from + 4])), radix: 16)
        }
        guard let high = hex(i + 2) else { return nil }
        if (0xD800...0xDBFF).contains(high) {
            guard i + 12 <= s.count else { return nil }
            if s[i + 6] == "\\", s[i + 7] == "u", let low = hex(i + 8), (0xDC00...0xDFFF).contains(low),
               let scalar = Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)) {
                return (scalar, 12)
            }
            return ("\u{FFFD}", 6)
        }
        return (Unicode.Scalar(high) ?? "\u{FFFD}", 6)
    }

    /// The index after a complete JSON value starting at `s[start]`; nil while it is incomplete.
    static func skipValue(_ s: [Unicode.Scalar], from start: Int) -> Int? {
        var i = start
        guard i < s.count else { return nil }
        if s[i] == "\"" {
            if case .complete(_, let next) = decodeString(s, from: i) { return next }
            return nil
        }
        if s[i] == "{" || s[i] == "[" {
            var depth = 0
            while i < s.count {
                let c = s[i]
                if c == "\"" {
                    guard case .complete(_, let next) = decodeString(s, from: i) else { return nil }
                    i = next
                    continue
                }
                if c == "{" || c == "[" { depth += 1 }
                if c == "}" || c == "]" {
                    depth -= 1
                    if depth == 0 { return i + 1 }
                }
                i += 1
            }
            return nil
        }
        // A number or a literal: runs to a delimiter, which must have arrived.
        while i < s.count, !",}] \n\t\r".unicodeScalars.contains(s[i]) { i += 1 }
        return i < s.count ? i : nil
    }

    /// The code of complete arguments: the JSON's `code` string, or the raw text when a model sent bare code
    /// instead of JSON. Nil with the reason when the arguments are JSON without a usable `code`.
    public static func code(fromArguments arguments: String) -> Result<String, ArgumentsProblem> {
        let trimmed = arguments.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix("{") else {
            return trimmed.isEmpty ? .failure(ArgumentsProblem("the call has no arguments: send {\"code\": \"...\"}"))
                : .success(arguments)
        }
        guard let json = try? JSONValue.parse(trimmed) else {
            return .failure(ArgumentsProblem("the arguments are not valid JSON: send {\"code\": \"...\"} with the code as a JSON string"))
        }
        guard let code = json["code"]?.stringValue else {
            return .failure(ArgumentsProblem("the arguments have no \"code\" string: send {\"code\": \"...\"}"))
        }
        return .success(code)
    }
}

public struct ArgumentsProblem: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}
