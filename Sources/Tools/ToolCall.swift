import Foundation
import InterpreterCore

/// The API a model's tool call came from (and the shape its result must take).
public enum ToolCallShape: String, Sendable, CaseIterable {
    /// A Chat Completions `tool_calls[]` entry: `{"id","type":"function","function":{"name","arguments"}}`.
    case openAIChat = "openai-chat"
    /// A Responses API `function_call` item: `{"type":"function_call","call_id","name","arguments"}`.
    case openAIResponses = "openai-responses"
    /// An Anthropic `tool_use` block: `{"type":"tool_use","id","name","input"}`.
    case anthropic
}

/// The arguments of `execute_python`.
public struct ExecutePythonArguments: Sendable, Equatable {
    public var code: String
    public var sessionId: String?
    /// A lower wall-clock limit for this call than the profile's (never a higher one).
    public var timeoutSeconds: Double?
    public init(code: String, sessionId: String? = nil, timeoutSeconds: Double? = nil) {
        self.code = code
        self.sessionId = sessionId
        self.timeoutSeconds = timeoutSeconds
    }

    /// The arguments `execute_python` takes.
    public static let names = ["code", "session_id", "timeout_s"]
}

/// A call that is not shaped like any of the supported APIs' tool calls: no tool result can be made for it.
public struct ToolCallError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A model's tool call, as it came, with its arguments checked.
public struct ToolCall: Sendable, Equatable {
    public var shape: ToolCallShape
    public var callId: String
    public var name: String
    /// The checked arguments, or what is wrong with them (said to the model so it can retry).
    public var arguments: Result<ExecutePythonArguments, ToolCallError>

    /// Detects the call's shape and checks its arguments. Throws only when the shape is unrecognisable.
    public static func parse(_ call: JSONValue) throws(ToolCallError) -> ToolCall {
        guard let object = call.objectValue else {
            throw ToolCallError("a tool call must be a JSON object, got \(call.typeName)")
        }
        let type = object["type"]?.stringValue
        if let function = object["function"]?.objectValue, type == nil || type == "function" {
            guard let id = object["id"]?.stringValue else { throw ToolCallError("a Chat Completions tool call needs an \"id\"") }
            let name = function["name"]?.stringValue ?? ""
            return ToolCall(shape: .openAIChat, callId: id, name: name,
                            arguments: checkArguments(name: name, raw: function["arguments"], field: "arguments"))
        }
        if type == "function_call" || (type == nil && object["call_id"] != nil) {
            guard let id = object["call_id"]?.stringValue else { throw ToolCallError("a Responses function_call needs a \"call_id\"") }
            let name = object["name"]?.stringValue ?? ""
            return ToolCall(shape: .openAIResponses, callId: id, name: name,
                            arguments: checkArguments(name: name, raw: object["arguments"], field: "arguments"))
        }
        if type == "tool_use" || (type == nil && object["input"] != nil && object["id"] != nil) {
            guard let id = object["id"]?.stringValue else { throw ToolCallError("an Anthropic tool_use block needs an \"id\"") }
            let name = object["name"]?.stringValue ?? ""
            return ToolCall(shape: .anthropic, callId: id, name: name,
                            arguments: checkArguments(name: name, raw: object["input"], field: "input"))
        }
        throw ToolCallError("unrecognised tool call: expected a Chat Completions tool_calls entry "
            + "({\"id\",\"type\":\"function\",\"function\":{...}}), a Responses function_call item "
            + "({\"type\":\"function_call\",\"call_id\",...}) or an Anthropic tool_use block ({\"type\":\"tool_use\",\"id\",...})")
    }

    /// Checks `execute_python`'s arguments: a JSON object (or a string holding one) with a string `code`.
    public static func checkArguments(name: String, raw: JSONValue?, field: String) -> Result<ExecutePythonArguments, ToolCallError> {
        guard name == ToolDefinition.toolName else {
            return .failure(ToolCallError("There is no tool named \"\(name)\". The only tool is \(ToolDefinition.toolName), "
                + "with arguments {\"code\": \"<Python code>\"}."))
        }
        var value = raw ?? .null
        if case .string(let text) = value {
            do { value = try JSONValue.parse(text) } catch {
                let shown = text.count > 200 ? String(text.prefix(200)) + "..." : text
                return .failure(ToolCallError("The \(field) of the call are not valid JSON (\(shown.debugDescription)). "
                    + "Send a JSON object such as {\"code\": \"print(1 + 1)\"}, with the code as a JSON string "
                    + "(newlines as \\n, quotes escaped)."))
            }
        }
        guard let object = value.objectValue else {
            return .failure(ToolCallError("The \(field) must be a JSON object such as {\"code\": \"print(1 + 1)\"}, "
                + "not \(value.typeName)."))
        }
        let unknown = object.keys.filter { !ExecutePythonArguments.names.contains($0) }.sorted()
        let unknownNote = unknown.isEmpty ? "" : " Unknown argument(s): \(unknown.joined(separator: ", "))."
        guard let codeValue = object["code"], !codeValue.isNull else {
            return .failure(ToolCallError("Missing the required argument \"code\" (a string of Python code).\(unknownNote)"))
        }
        guard case .string(let code) = codeValue else {
            return .failure(ToolCallError("\"code\" must be a string of Python code, not \(codeValue.typeName).\(unknownNote)"))
        }
        guard unknown.isEmpty else {
            return .failure(ToolCallError("The call was not run:\(unknownNote) The arguments are \"code\" (required), "
                + "\"session_id\" and \"timeout_s\"."))
        }
        guard !code.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            return .failure(ToolCallError("\"code\" is empty: send the Python code to run."))
        }
        var sessionId: String? = nil
        switch object["session_id"] {
        case nil, .null?: break
        case .string(let s)?: sessionId = s.isEmpty ? nil : s
        case let other?:
            return .failure(ToolCallError("\"session_id\" must be a string (or null), not \(other.typeName)."))
        }
        var timeout: Double? = nil
        switch object["timeout_s"] {
        case nil, .null?: break
        case let value?:
            guard let seconds = value.doubleValue, seconds.isFinite, seconds > 0 else {
                return .failure(ToolCallError("\"timeout_s\" must be a positive number of seconds (or null), not \(value)."))
            }
            timeout = seconds
        }
        return .success(ExecutePythonArguments(code: code, sessionId: sessionId, timeoutSeconds: timeout))
    }
}
