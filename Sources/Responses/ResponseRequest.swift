import Foundation
import InterpreterCore

/// Where a `code_interpreter` tool runs its code.
public enum ContainerSpec: Sendable, Equatable {
    /// An existing container (a codeinterp session), by id.
    case id(String)
    /// `{"type":"auto"}`: one container per conversation or response chain, created on first use.
    case auto(fileIds: [String], memoryLimit: String?)
}

/// A caller's own function tool: passed to the model, its calls returned to the caller.
public struct FunctionTool: Sendable, Equatable {
    public var name: String
    public var description: String?
    public var parameters: JSONValue?
    public var strict: Bool?

    /// Chat Completions `tools[]` entry.
    var chatJSON: JSONValue {
        var function: [String: JSONValue] = ["name": .string(name)]
        if let description { function["description"] = .string(description) }
        function["parameters"] = parameters ?? ["type": "object", "properties": [:]]
        if let strict { function["strict"] = .bool(strict) }
        return ["type": "function", "function": .object(function)]
    }

    /// Responses API `tools[]` entry.
    var responsesJSON: JSONValue {
        var tool: [String: JSONValue] = ["type": "function", "name": .string(name)]
        if let description { tool["description"] = .string(description) }
        tool["parameters"] = parameters ?? ["type": "object", "properties": [:]]
        if let strict { tool["strict"] = .bool(strict) }
        return .object(tool)
    }
}

/// A checked `POST /v1/responses` body.
public struct ResponseRequest: Sendable {
    public var model: String
    /// The request's input as items (a string input becomes one user message).
    public var input: [JSONValue]
    public var instructions: String?
    /// The tools as given (echoed in the response object).
    public var toolsJSON: [JSONValue]
    public var functionTools: [FunctionTool]
    public var codeInterpreter: ContainerSpec?
    public var include: Set<String>
    public var previousResponseId: String?
    public var conversationId: String?
    public var store: Bool
    public var stream: Bool
    public var maxOutputTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var metadata: [String: JSONValue]
    public var toolChoice: JSONValue
    public var parallelToolCalls: Bool
    public var user: String?
    public var text: JSONValue?

    public var includeOutputs: Bool { include.contains(Self.outputsInclude) }

    /// OpenAI's include value that shows the outputs of code runs.
    public static let outputsInclude = "code_interpreter_call.outputs"
    /// codeinterp's own include value: each code run's native result object, under `x_codeinterp.execution`.
    public static let executionInclude = "x_codeinterp.execution"

    static let accepted: Set<String> = [
        "model", "input", "instructions", "tools", "tool_choice", "include", "previous_response_id", "conversation",
        "store", "stream", "stream_options", "max_output_tokens", "temperature", "top_p", "metadata", "parallel_tool_calls",
        "user", "text", "reasoning", "truncation", "background", "service_tier", "prompt_cache_key", "safety_identifier",
        "max_tool_calls", "top_logprobs", "prompt_cache_retention",
    ]

    static let includable: Set<String> = [
        "code_interpreter_call.outputs", "message.output_text.logprobs", "reasoning.encrypted_content",
        "message.input_image.image_url", "computer_call_output.output.image_url", "file_search_call.results",
        "web_search_call.action.sources", "web_search_call.results", executionInclude,
    ]

    /// The name under which the code interpreter is offered to the model (as a function tool).
    public static let codeToolName = "execute_python"
    /// Names a model may use for the code tool (some local models call it `python`).
    static let codeToolAliases: Set<String> = [codeToolName, "python", "code_interpreter"]

    /// Parses and checks a request body; every problem is a 400 naming its `param`.
    public static func parse(_ body: JSONValue) throws(ResponsesError) -> ResponseRequest {
        guard let object = body.objectValue else {
            throw ResponsesError.invalid("the request body must be a JSON object, not \(body.typeName)", code: "invalid_json")
        }
        for key in object.keys.sorted() where !accepted.contains(key) {
            throw ResponsesError.invalid("unknown parameter \"\(key)\"", param: key, code: "unknown_parameter")
        }
        func string(_ key: String) throws(ResponsesError) -> String? {
            switch object[key] {
            case nil, .null?: return nil
            case .string(let s)?: return s
            case let v?: throw ResponsesError.invalid("\"\(key)\" must be a string, not \(v.typeName)", param: key, code: "invalid_type")
            }
        }
        func bool(_ key: String) throws(ResponsesError) -> Bool? {
            switch object[key] {
            case nil, .null?: return nil
            case .bool(let b)?: return b
            case let v?: throw ResponsesError.invalid("\"\(key)\" must be a boolean, not \(v.typeName)", param: key, code: "invalid_type")
            }
        }
        func number(_ key: String, _ range: ClosedRange<Double>) throws(ResponsesError) -> Double? {
            let value: Double
            switch object[key] {
            case nil, .null?: return nil
            case .int(let i)?: value = Double(i)
            case .double(let d)?: value = d
            case let v?: throw ResponsesError.invalid("\"\(key)\" must be a number, not \(v.typeName)", param: key, code: "invalid_type")
            }
            guard range.contains(value) else {
                throw ResponsesError.invalid("\"\(key)\" must be between \(range.lowerBound) and \(range.upperBound) (got \(value))", param: key)
            }
            return value
        }

        guard let model = try string("model"), !model.isEmpty else {
            throw ResponsesError.invalid("missing required parameter \"model\"", param: "model", code: "missing_required_parameter")
        }
        let input = try Items.normalizeInput(object["input"])
        let instructions = try string("instructions")

        var toolsJSON: [JSONValue] = []
        var functions: [FunctionTool] = []
        var container: ContainerSpec? = nil
        switch object["tools"] {
        case nil, .null?: break
        case .array(let tools)?:
            toolsJSON = tools
            for (i, tool) in tools.enumerated() {
                let param = "tools[\(i)]"
                guard let t = tool.objectValue else {
                    throw ResponsesError.invalid("\"\(param)\" must be an object, not \(tool.typeName)", param: param, code: "invalid_type")
                }
                switch t["type"]?.stringValue {
                case "code_interpreter":
                    guard container == nil else {
                        throw ResponsesError.invalid("only one code_interpreter tool may be given", param: param)
                    }
                    container = try parseContainer(t["container"], param: param + ".container")
                case "function":
                    functions.append(try parseFunction(t, param: param))
                case let other?:
                    throw ResponsesError.invalid("tool type \"\(other)\" is not supported by this server: it runs code_interpreter "
                        + "itself and passes function tools through to the model", param: param + ".type", code: "unsupported_tool")
                case nil:
                    throw ResponsesError.invalid("missing required parameter \"\(param).type\"", param: param + ".type",
                                   code: "missing_required_parameter")
                }
            }
        case let v?:
            throw ResponsesError.invalid("\"tools\" must be an array, not \(v.typeName)", param: "tools", code: "invalid_type")
        }
        var seen = Set<String>()
        for (i, f) in functions.enumerated() {
            guard seen.insert(f.name).inserted else {
                throw ResponsesError.invalid("two function tools are named \"\(f.name)\"", param: "tools[\(i)].name")
            }
            if container != nil, codeToolAliases.contains(f.name) {
                throw ResponsesError.invalid("a function tool may not be named \"\(f.name)\" next to code_interpreter (that name is "
                    + "the code interpreter's own)", param: "tools[\(i)].name")
            }
        }

        var include = Set<String>()
        switch object["include"] {
        case nil, .null?: break
        case .array(let values)?:
            for (i, v) in values.enumerated() {
                guard let s = v.stringValue, includable.contains(s) else {
                    throw ResponsesError.invalid("\"include[\(i)]\" must be one of \(includable.sorted().joined(separator: ", "))",
                                   param: "include[\(i)]")
                }
                include.insert(s)
            }
        case let v?:
            throw ResponsesError.invalid("\"include\" must be an array of strings, not \(v.typeName)", param: "include", code: "invalid_type")
        }

        let previous = try string("previous_response_id")
        var conversation: String? = nil
        switch object["conversation"] {
        case nil, .null?: break
        case .string(let s)?: conversation = s
        case .object(let o)?:
            guard let id = o["id"]?.stringValue else {
                throw ResponsesError.invalid("\"conversation.id\" must be a string", param: "conversation.id")
            }
            conversation = id
        case let v?:
            throw ResponsesError.invalid("\"conversation\" must be a conversation id or {\"id\": ...}, not \(v.typeName)",
                           param: "conversation", code: "invalid_type")
        }
        if previous != nil && conversation != nil {
            throw ResponsesError.invalid("\"previous_response_id\" and \"conversation\" cannot be used together", param: "conversation")
        }
        if try bool("background") == true {
            throw ResponsesError.invalid("background responses are not supported by this server", param: "background")
        }

        var maxOutputTokens: Int? = nil
        switch object["max_output_tokens"] {
        case nil, .null?: break
        case .int(let n)? where n >= 16: maxOutputTokens = n
        case .double(let d)? where d >= 16 && d == d.rounded(): maxOutputTokens = Int(d)
        case let v?:
            throw ResponsesError.invalid("\"max_output_tokens\" must be an integer of at least 16 (got \(v.serialized()))", param: "max_output_tokens")
        }

        var metadata: [String: JSONValue] = [:]
        switch object["metadata"] {
        case nil, .null?: break
        case .object(let o)?:
            guard o.count <= 16 else { throw ResponsesError.invalid("\"metadata\" may have at most 16 keys", param: "metadata") }
            for (k, v) in o {
                guard let s = v.stringValue else {
                    throw ResponsesError.invalid("\"metadata.\(k)\" must be a string", param: "metadata.\(k)", code: "invalid_type")
                }
                guard k.count <= 64, s.count <= 512 else {
                    throw ResponsesError.invalid("metadata keys are at most 64 characters and values at most 512", param: "metadata.\(k)")
                }
            }
            metadata = o
        case let v?:
            throw ResponsesError.invalid("\"metadata\" must be an object of strings, not \(v.typeName)", param: "metadata", code: "invalid_type")
        }

        let toolChoice = object["tool_choice"] ?? "auto"
        switch toolChoice {
        case .string(let s) where ["auto", "none", "required"].contains(s): break
        case .object(let o):
            let type = o["type"]?.stringValue
            if type == "function" {
                guard let name = o["name"]?.stringValue, functions.contains(where: { $0.name == name }) else {
                    throw ResponsesError.invalid("\"tool_choice.name\" must name one of the function tools", param: "tool_choice.name")
                }
            } else if type == "code_interpreter" {
                guard container != nil else {
                    throw ResponsesError.invalid("\"tool_choice\" asks for code_interpreter, which is not in \"tools\"", param: "tool_choice")
                }
            } else {
                throw ResponsesError.invalid("\"tool_choice.type\" must be \"function\" or \"code_interpreter\"", param: "tool_choice.type")
            }
        default:
            throw ResponsesError.invalid("\"tool_choice\" must be \"auto\", \"none\", \"required\" or a tool", param: "tool_choice")
        }

        let store = try bool("store") ?? true
        let stream = try bool("stream") ?? false
        let temperature = try number("temperature", 0...2)
        let topP = try number("top_p", 0...1)
        let parallel = try bool("parallel_tool_calls") ?? true
        let user = try string("user")
        return ResponseRequest(
            model: model, input: input, instructions: instructions, toolsJSON: toolsJSON, functionTools: functions,
            codeInterpreter: container, include: include, previousResponseId: previous, conversationId: conversation,
            store: store, stream: stream, maxOutputTokens: maxOutputTokens, temperature: temperature, topP: topP,
            metadata: metadata, toolChoice: toolChoice, parallelToolCalls: parallel, user: user, text: object["text"])
    }

    static func parseContainer(_ value: JSONValue?, param: String) throws(ResponsesError) -> ContainerSpec {
        switch value {
        case .string(let id)? where !id.isEmpty:
            return .id(id)
        case .object(let o)?:
            for key in o.keys.sorted() where !["type", "file_ids", "memory_limit", "network_policy"].contains(key) {
                throw ResponsesError.invalid("unknown parameter \"\(param).\(key)\"", param: "\(param).\(key)", code: "unknown_parameter")
            }
            guard o["type"]?.stringValue == "auto" else {
                throw ResponsesError.invalid("\"\(param).type\" must be \"auto\" (or give a container id as a string)", param: param + ".type")
            }
            var fileIds: [String] = []
            if let ids = o["file_ids"], !ids.isNull {
                guard let array = ids.arrayValue, array.count <= 50 else {
                    throw ResponsesError.invalid("\"\(param).file_ids\" must be an array of at most 50 file ids", param: param + ".file_ids")
                }
                for (i, id) in array.enumerated() {
                    guard let s = id.stringValue else {
                        throw ResponsesError.invalid("\"\(param).file_ids[\(i)]\" must be a string", param: "\(param).file_ids[\(i)]")
                    }
                    fileIds.append(s)
                }
            }
            var memory: String? = nil
            if let m = o["memory_limit"], !m.isNull {
                guard let s = m.stringValue, ["1g", "4g", "16g", "64g"].contains(s) else {
                    throw ResponsesError.invalid("\"\(param).memory_limit\" must be one of 1g, 4g, 16g, 64g", param: param + ".memory_limit")
                }
                memory = s
            }
            if let policy = o["network_policy"], !policy.isNull, policy["type"]?.stringValue != "disabled" {
                throw ResponsesError.invalid("code here runs without network access; only {\"type\": \"disabled\"} is accepted",
                               param: param + ".network_policy")
            }
            return .auto(fileIds: fileIds, memoryLimit: memory)
        case nil, .null?:
            throw ResponsesError.invalid("missing required parameter \"\(param)\" (a container id, or {\"type\": \"auto\"})", param: param,
                           code: "missing_required_parameter")
        case let v?:
            throw ResponsesError.invalid("\"\(param)\" must be a container id or {\"type\": \"auto\"}, not \(v.typeName)", param: param)
        }
    }

    static let nameCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-".unicodeScalars)

    static func parseFunction(_ t: [String: JSONValue], param: String) throws(ResponsesError) -> FunctionTool {
        guard let name = t["name"]?.stringValue, !name.isEmpty else {
            throw ResponsesError.invalid("missing required parameter \"\(param).name\"", param: param + ".name", code: "missing_required_parameter")
        }
        guard name.count <= 64, name.unicodeScalars.allSatisfy(nameCharacters.contains) else {
            throw ResponsesError.invalid("\"\(param).name\" must match ^[a-zA-Z0-9_-]{1,64}$", param: param + ".name")
        }
        var parameters: JSONValue? = nil
        if let p = t["parameters"], !p.isNull {
            guard p.objectValue != nil else {
                throw ResponsesError.invalid("\"\(param).parameters\" must be a JSON Schema object", param: param + ".parameters")
            }
            parameters = p
        }
        return FunctionTool(name: name, description: t["description"]?.stringValue, parameters: parameters,
                            strict: t["strict"]?.boolValue)
    }
}
