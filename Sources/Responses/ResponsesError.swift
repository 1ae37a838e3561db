import Foundation
import InterpreterCore

/// An error of the Responses or Conversations API, in the terms of OpenAI's error envelope
/// (`{"error":{"message","type","param","code"}}`) and the HTTP status it is answered with.
public struct ResponsesError: Error, Sendable, CustomStringConvertible, Equatable {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Seconds for a `Retry-After` header (an upstream that rate limits).
    public var retryAfter: Int?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retryAfter = retryAfter
    }

    public var description: String { "\(status) \(type): \(message)" }

    public static func invalid(_ message: String, param: String? = nil, code: String? = "invalid_value") -> ResponsesError {
        ResponsesError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    public static func notFound(_ message: String, param: String? = nil, code: String? = "not_found") -> ResponsesError {
        ResponsesError(status: 404, message: message, type: "invalid_request_error", param: param, code: code)
    }

    public static func server(_ message: String, code: String = "server_error") -> ResponsesError {
        ResponsesError(status: 500, message: message, type: "server_error", code: code)
    }

    /// The `error` object of a failed response (`{"code","message"}`).
    var responseError: JSONValue {
        ["code": .string(code ?? "server_error"), "message": .string(message)]
    }
}

/// Ids in OpenAI's style: a prefix and 32 hex digits (`resp_...`, `msg_...`, `ci_...`, `fc_...`, `conv_...`).
public enum ResponseIDs {
    public static func make(_ prefix: String) -> String {
        prefix + "_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }
}
