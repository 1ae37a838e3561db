import Foundation
import InterpreterCore

/// How a reader's problems are put to its audience: the request bodies of the native API, the tool and Responses
/// routes (OpenAI-style codes), and the configuration (the file or variable first). The reader finds what is wrong;
/// its wording says it, so each surface keeps its own sentences while there is one reader.
protocol FieldWording {
    associatedtype Failure: Error
    /// An empty document, when this audience is told so apart from "not JSON" (nil: it is "not JSON").
    func empty() -> Failure?
    func notJSON(_ parserMessage: String) -> Failure
    func notObject(_ value: JSONValue) -> Failure
    /// A key outside `allowed`; `prefix` is "" at the top level, else the path of the enclosing object and ".".
    func unknown(_ key: String, prefix: String, allowed: Set<String>) -> Failure
    func mismatch(_ path: String, expected: String, got: JSONValue) -> Failure
    /// Element `index` of the array at `path` is not `expected`.
    func elementMismatch(_ path: String, index: Int, expected: String, got: JSONValue) -> Failure
    func missing(_ path: String) -> Failure
}

/// Reads typed fields out of a JSON object: parses the document, insists on an object, refuses keys it was not
/// told about and checks each field's type. An absent field and `null` both read as nil unless asked otherwise.
struct FieldReader<Wording: FieldWording> {
    let object: [String: JSONValue]
    let prefix: String
    let wording: Wording

    /// Parses `data` as a JSON object and rejects keys outside `allowed` (the first in sorted order is named).
    init(parsing data: Data, allowed: Set<String>, wording: Wording) throws(Wording.Failure) {
        if data.isEmpty, let empty = wording.empty() { throw empty }
        let value: JSONValue
        do {
            value = try JSONValue.parseDocument(data)
        } catch {
            throw wording.notJSON(error.message)
        }
        guard case .object(let object) = value else { throw wording.notObject(value) }
        try self.init(object: object, prefix: "", allowed: allowed, wording: wording)
    }

    init(object: [String: JSONValue], prefix: String = "", allowed: Set<String>? = nil,
         wording: Wording) throws(Wording.Failure) {
        if let allowed, let key = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw wording.unknown(key, prefix: prefix, allowed: allowed)
        }
        self.object = object
        self.prefix = prefix
        self.wording = wording
    }

    /// The raw value, `null` included.
    subscript(key: String) -> JSONValue? { object[key] }

    /// The value converted by `convert`; nil when absent, or `null` and `nullable`; a mismatch when `convert` fails.
    private func read<T>(_ key: String, _ expected: String, nullable: Bool,
                         _ convert: (JSONValue) -> T?) throws(Wording.Failure) -> T? {
        guard let v = object[key], !(nullable && v == .null) else { return nil }
        guard let t = convert(v) else { throw wording.mismatch(prefix + key, expected: expected, got: v) }
        return t
    }

    func string(_ key: String, nullable: Bool = true) throws(Wording.Failure) -> String? {
        try read(key, "a string", nullable: nullable) { $0.stringValue }
    }

    /// A string that is not empty (an empty one is a mismatch).
    func nonEmptyString(_ key: String) throws(Wording.Failure) -> String? {
        try read(key, "a non-empty string", nullable: true) { $0.stringValue.flatMap { $0.isEmpty ? nil : $0 } }
    }

    func requiredString(_ key: String) throws(Wording.Failure) -> String {
        guard let s = try string(key) else { throw wording.missing(prefix + key) }
        return s
    }

    /// An integer; `2.0` counts as one.
    func int(_ key: String, nullable: Bool = true) throws(Wording.Failure) -> Int? {
        try read(key, "an integer", nullable: nullable) { $0.intValue }
    }

    func number(_ key: String) throws(Wording.Failure) -> Double? {
        try read(key, "a number", nullable: true) { $0.doubleValue }
    }

    func bool(_ key: String) throws(Wording.Failure) -> Bool? {
        try read(key, "a boolean", nullable: true) { $0.boolValue }
    }

    /// An array of strings; with `acceptingOne`, a lone string is an array of one.
    func strings(_ key: String, nullable: Bool = true, acceptingOne: Bool = false) throws(Wording.Failure) -> [String]? {
        let expected = "an array of strings"
        if acceptingOne, case .string(let s)? = object[key] { return [s] }
        guard let items = try read(key, expected, nullable: nullable, { $0.arrayValue }) else { return nil }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else {
                throw wording.elementMismatch(prefix + key, index: i, expected: "a string", got: item)
            }
            out.append(s)
        }
        return out
    }

    /// A nested object whose keys must all be in `allowed`.
    func object(_ key: String, allowed: Set<String>) throws(Wording.Failure) -> FieldReader? {
        guard let o = try read(key, "an object", nullable: true, { $0.objectValue }) else { return nil }
        return try FieldReader(object: o, prefix: prefix + key + ".", allowed: allowed, wording: wording)
    }
}

/// The HTTP routes' wording, in two styles. `native` (the native API): an unknown top-level field gets a "did you
/// mean" and the accepted list, types are named with their article ("an array"). `openAI` (the tool and Responses
/// routes, as OpenAI's APIs put it): `invalid_json` and `unknown_field` codes, bare JSON type names ("array").
/// Either way `param` names the field.
struct APIFieldWording: FieldWording {
    enum Style { case native, openAI }
    let style: Style

    private func name(_ value: JSONValue) -> String { style == .native ? value.describedType : value.typeName }

    func empty() -> APIError? {
        style == .native ? .invalidRequest("the request body is empty; send a JSON object") : nil
    }

    func notJSON(_ parserMessage: String) -> APIError {
        switch style {
        case .native: .invalidRequest("the request body is not valid JSON: \(parserMessage)")
        case .openAI: .invalidRequest("the request body is not valid JSON", code: "invalid_json")
        }
    }

    func notObject(_ value: JSONValue) -> APIError {
        let message = "the request body must be a JSON object, not \(name(value))"
        return style == .native ? .invalidRequest(message) : .invalidRequest(message, code: "invalid_json")
    }

    func unknown(_ key: String, prefix: String, allowed: Set<String>) -> APIError {
        let accepted = allowed.sorted().joined(separator: ", ")
        switch style {
        case .native where prefix.isEmpty:
            let hint = Suggestion.didYouMean(key, among: allowed.sorted())
            return .invalidRequest("unknown field \"\(key)\"\(hint); accepted: \(accepted)", param: key)
        case .native:
            return .invalidRequest("unknown field \"\(prefix + key)\"", param: prefix + key)
        case .openAI:
            return .invalidRequest("unknown field \"\(prefix + key)\" (accepted: \(accepted))", param: prefix + key,
                                   code: "unknown_field")
        }
    }

    func mismatch(_ path: String, expected: String, got: JSONValue) -> APIError {
        .invalidRequest("\"\(path)\" must be \(expected), not \(name(got))", param: path)
    }

    func elementMismatch(_ path: String, index: Int, expected: String, got: JSONValue) -> APIError {
        .invalidRequest("\"\(path)[\(index)]\" must be \(expected), not \(name(got))", param: path)
    }

    func missing(_ path: String) -> APIError {
        .invalidRequest("missing required field \"\(path)\"", param: path)
    }
}

/// The request bodies of the native API.
typealias RequestFields = FieldReader<APIFieldWording>

/// The bodies of the tool and Responses routes.
typealias ToolRequestFields = FieldReader<APIFieldWording>

extension FieldReader where Wording == APIFieldWording {
    /// A native API body.
    init(body: Data, allowed: Set<String>) throws(APIError) {
        try self.init(parsing: body, allowed: allowed, wording: APIFieldWording(style: .native))
    }

    /// A body of the tool or Responses routes.
    init(toolBody: Data, allowed: Set<String>) throws(APIError) {
        try self.init(parsing: toolBody, allowed: allowed, wording: APIFieldWording(style: .openAI))
    }
}
