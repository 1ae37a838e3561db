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
}

public struct JSONParseError: Error, Sendable {
    public var message: String
}
