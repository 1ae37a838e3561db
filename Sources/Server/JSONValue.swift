import Foundation
import InterpreterCore

/// What the server needs of the shared `JSONValue` beyond the tools layer: a parse error that quotes
/// JSONDecoder's own message (it says where), integers that also accept `2.0`, and type names with their article
/// for "must be a string, not an array" messages.
extension JSONValue {
    static func parseDocument(_ data: Data) throws(JSONParseError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            throw JSONParseError(message: underlying ?? context.debugDescription)
        } catch {
            throw JSONParseError(message: "\(error)")
        }
    }

    /// `typeName` with its article ("a string", "an array"); null stays "null".
    var describedType: String {
        switch self {
        case .null: "null"
        case .array, .object: "an " + typeName
        default: "a " + typeName
        }
    }

    var intValue: Int? {
        switch self {
        case .int(let i): i
        case .double(let d): Int(exactly: d)
        default: nil
        }
    }

    var numberValue: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        default: nil
        }
    }
}

public struct JSONParseError: Error, Sendable {
    public var message: String
}

/// Reads typed fields out of a JSON object, throwing errors that name the field (the `param` of the envelope).
struct FieldReader {
    let object: [String: JSONValue]
    let prefix: String

    /// Parses `body` as a JSON object and rejects keys outside `allowed`.
    init(body: Data, allowed: Set<String>) throws(APIError) {
        if body.isEmpty { throw APIError.invalidRequest("the request body is empty; send a JSON object") }
        let value: JSONValue
        do {
            value = try JSONValue.parseDocument(body)
        } catch {
            throw APIError.invalidRequest("the request body is not valid JSON: \(error.message)")
        }
        guard case .object(let object) = value else {
            throw APIError.invalidRequest("the request body must be a JSON object, not \(value.describedType)")
        }
        for key in object.keys.sorted() where !allowed.contains(key) {
            let hint = Suggestion.didYouMean(key, among: allowed.sorted())
            throw APIError.invalidRequest("unknown field \"\(key)\"\(hint); accepted: \(allowed.sorted().joined(separator: ", "))", param: key)
        }
        self.object = object
        self.prefix = ""
    }

    init(object: [String: JSONValue], prefix: String) {
        self.object = object
        self.prefix = prefix
    }

    private func present(_ key: String) -> JSONValue? {
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    private func mismatch(_ key: String, _ expected: String, _ got: JSONValue) -> APIError {
        .invalidRequest("\"\(prefix + key)\" must be \(expected), not \(got.describedType)", param: prefix + key)
    }

    func string(_ key: String) throws(APIError) -> String? {
        guard let v = present(key) else { return nil }
        guard case .string(let s) = v else { throw mismatch(key, "a string", v) }
        return s
    }

    func requiredString(_ key: String) throws(APIError) -> String {
        guard let s = try string(key) else {
            throw APIError.invalidRequest("missing required field \"\(prefix + key)\"", param: prefix + key)
        }
        return s
    }

    func int(_ key: String) throws(APIError) -> Int? {
        guard let v = present(key) else { return nil }
        guard let i = v.intValue else { throw mismatch(key, "an integer", v) }
        return i
    }

    func number(_ key: String) throws(APIError) -> Double? {
        guard let v = present(key) else { return nil }
        guard let d = v.numberValue else { throw mismatch(key, "a number", v) }
        return d
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let v = present(key) else { return nil }
        guard case .bool(let b) = v else { throw mismatch(key, "a boolean", v) }
        return b
    }

    func strings(_ key: String) throws(APIError) -> [String]? {
        guard let v = present(key) else { return nil }
        guard case .array(let items) = v else { throw mismatch(key, "an array of strings", v) }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else {
                throw APIError.invalidRequest("\"\(prefix + key)[\(i)]\" must be a string, not \(item.describedType)", param: prefix + key)
            }
            out.append(s)
        }
        return out
    }

    func object(_ key: String, allowed: Set<String>) throws(APIError) -> FieldReader? {
        guard let v = present(key) else { return nil }
        guard case .object(let o) = v else { throw mismatch(key, "an object", v) }
        for k in o.keys.sorted() where !allowed.contains(k) {
            throw APIError.invalidRequest("unknown field \"\(prefix + key).\(k)\"", param: "\(prefix + key).\(k)")
        }
        return FieldReader(object: o, prefix: prefix + key + ".")
    }
}
