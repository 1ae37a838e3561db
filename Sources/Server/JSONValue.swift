import Foundation

/// Any JSON value, kept apart by type (a boolean is never a number), so request fields and config keys can be
/// checked one by one with messages that name them.
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? c.decode(Double.self) {
            self = .number(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d):
            if let i = Int64(exactly: d) { try c.encode(i) } else { try c.encode(d) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Parses a whole document; the error message is JSONDecoder's own (it says where).
    public static func parse(_ data: Data) throws(JSONParseError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            throw JSONParseError(message: underlying ?? context.debugDescription)
        } catch {
            throw JSONParseError(message: "\(error)")
        }
    }

    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    public var intValue: Int? {
        if case .number(let d) = self, let i = Int(exactly: d) { return i }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
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
            value = try JSONValue.parse(body)
        } catch {
            throw APIError.invalidRequest("the request body is not valid JSON: \(error.message)")
        }
        guard case .object(let object) = value else {
            throw APIError.invalidRequest("the request body must be a JSON object, not \(value.typeName)")
        }
        for key in object.keys.sorted() where !allowed.contains(key) {
            let hint = ServerConfiguration.closest(to: key, in: allowed.sorted()).map { " (did you mean \"\($0)\"?)" } ?? ""
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
        .invalidRequest("\"\(prefix + key)\" must be \(expected), not \(got.typeName)", param: prefix + key)
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
        guard case .number(let d) = v else { throw mismatch(key, "a number", v) }
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
                throw APIError.invalidRequest("\"\(prefix + key)[\(i)]\" must be a string, not \(item.typeName)", param: prefix + key)
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
