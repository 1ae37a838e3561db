import Foundation
import InterpreterCore
import Tools

/// What a caller sees of stored items, from the `include` values of its request.
public struct ItemView: Sendable {
    /// `code_interpreter_call.outputs` (OpenAI's): the `logs` and `image` outputs of code runs.
    public var outputs: Bool
    /// With `x_codeinterp.execution` (codeinterp's own): each code run's result object in the native shape
    /// (stdout, stderr, the value as text and HTML, the traceback, figures and files), under
    /// `x_codeinterp.execution`, its files' `url`s signed by this provider when shown.
    public var executionURLs: (any FileURLProvider)?

    public init(outputs: Bool, executionURLs: (any FileURLProvider)? = nil) {
        self.outputs = outputs
        self.executionURLs = executionURLs
    }

    public init(include: Set<String>, urls: any FileURLProvider) {
        self.init(outputs: include.contains(ResponseRequest.outputsInclude),
                  executionURLs: include.contains(ResponseRequest.executionInclude) ? urls : nil)
    }
}

/// Conversation items: the request's input normalised, and the whole history turned into what each upstream
/// API reads (Chat Completions messages, or Responses input items with the hosted tool replaced by a function).
///
/// Stored `code_interpreter_call` items keep, under `x_codeinterp`, what the model was told about the run
/// (`model_text`, `model_text_images`) and codeinterp's own result object of it (`execution`); that key and
/// (unless asked for) `outputs` are removed before an item is shown to a caller (see `ItemView`).
public enum Items {
    static let privateKey = "x_codeinterp"

    // MARK: Input

    /// A string input becomes one user message; items are checked and given ids and their long form.
    public static func normalizeInput(_ value: JSONValue?) throws(ResponsesError) -> [JSONValue] {
        switch value {
        case nil, .null?:
            return []
        case .string(let text)?:
            return [message(role: "user", parts: [["type": "input_text", "text": .string(text)]])]
        case .array(let items)?:
            var out: [JSONValue] = []
            for (i, item) in items.enumerated() { out.append(try normalizeItem(item, param: "input[\(i)]")) }
            return out
        case let v?:
            throw ResponsesError.invalid("\"input\" must be a string or an array of items, not \(v.typeName)", param: "input", code: "invalid_type")
        }
    }

    static func message(role: String, parts: [JSONValue], id: String? = nil) -> JSONValue {
        ["type": "message", "id": .string(id ?? ResponseIDs.make("msg")), "role": .string(role), "status": "completed",
         "content": .array(parts)]
    }

    /// One input item, with an id; every problem names its `param`.
    public static func normalizeItem(_ item: JSONValue, param: String) throws(ResponsesError) -> JSONValue {
        guard var object = item.objectValue else {
            throw ResponsesError.invalid("\"\(param)\" must be an object, not \(item.typeName)", param: param, code: "invalid_type")
        }
        object.removeValue(forKey: privateKey)
        let type = object["type"]?.stringValue ?? (object["role"] != nil ? "message" : nil)
        switch type {
        case "message":
            guard let role = object["role"]?.stringValue, ["user", "assistant", "system", "developer"].contains(role) else {
                throw ResponsesError.invalid("\"\(param).role\" must be user, assistant, system or developer", param: param + ".role")
            }
            let textType = role == "assistant" ? "output_text" : "input_text"
            var parts: [JSONValue] = []
            switch object["content"] {
            case .string(let text)?:
                parts = [textType == "output_text" ? ["type": "output_text", "text": .string(text), "annotations": []]
                         : ["type": "input_text", "text": .string(text)]]
            case .array(let given)?:
                for (k, part) in given.enumerated() {
                    let p = "\(param).content[\(k)]"
                    guard let partType = part["type"]?.stringValue else {
                        throw ResponsesError.invalid("\"\(p).type\" is missing", param: p + ".type", code: "missing_required_parameter")
                    }
                    switch partType {
                    case "input_text", "output_text", "refusal":
                        guard part["text"]?.stringValue != nil || part["refusal"]?.stringValue != nil else {
                            throw ResponsesError.invalid("\"\(p).text\" must be a string", param: p + ".text")
                        }
                        var normal = part
                        if partType == "output_text", case .object(var o) = part, o["annotations"] == nil {
                            o["annotations"] = []
                            normal = .object(o)
                        }
                        parts.append(normal)
                    case "input_image":
                        guard part["image_url"]?.stringValue != nil || part["file_id"]?.stringValue != nil else {
                            throw ResponsesError.invalid("\"\(p)\" needs an \"image_url\" (or \"file_id\")", param: p + ".image_url")
                        }
                        parts.append(part)
                    case "input_file":
                        parts.append(part)
                    default:
                        throw ResponsesError.invalid("content part type \"\(partType)\" is not supported", param: p + ".type")
                    }
                }
            default:
                throw ResponsesError.invalid("\"\(param).content\" must be a string or an array of content parts", param: param + ".content")
            }
            let id = object["id"]?.stringValue
            return message(role: role, parts: parts, id: id)
        case "function_call_output":
            guard object["call_id"]?.stringValue != nil else {
                throw ResponsesError.invalid("\"\(param).call_id\" is missing", param: param + ".call_id", code: "missing_required_parameter")
            }
            guard let output = object["output"], output.stringValue != nil || output.arrayValue != nil else {
                throw ResponsesError.invalid("\"\(param).output\" must be a string or an array of content parts", param: param + ".output")
            }
            if object["id"]?.stringValue == nil { object["id"] = .string(ResponseIDs.make("fco")) }
            if object["status"] == nil { object["status"] = "completed" }
            return .object(object)
        case "function_call":
            guard object["call_id"]?.stringValue != nil, object["name"]?.stringValue != nil,
                  object["arguments"]?.stringValue != nil else {
                throw ResponsesError.invalid("\"\(param)\" needs \"call_id\", \"name\" and \"arguments\"", param: param)
            }
            if object["id"]?.stringValue == nil { object["id"] = .string(ResponseIDs.make("fc")) }
            if object["status"] == nil { object["status"] = "completed" }
            return .object(object)
        case "code_interpreter_call":
            guard object["id"]?.stringValue != nil else {
                throw ResponsesError.invalid("\"\(param).id\" is missing", param: param + ".id", code: "missing_required_parameter")
            }
            return .object(object)
        case "reasoning":
            return .object(object)
        case "item_reference":
            throw ResponsesError.invalid("item references are not supported; send the item itself, or use previous_response_id",
                           param: param + ".type")
        case let other?:
            throw ResponsesError.invalid("input item type \"\(other)\" is not supported", param: param + ".type")
        case nil:
            throw ResponsesError.invalid("\"\(param).type\" is missing", param: param + ".type", code: "missing_required_parameter")
        }
    }

    // MARK: Showing items to callers

    /// The item as the API shows it: private keys removed; `code_interpreter_call` outputs only when asked for.
    public static func publicForm(_ item: JSONValue, includeOutputs: Bool) -> JSONValue {
        publicForm(item, view: ItemView(outputs: includeOutputs))
    }

    /// The item as `view` shows it.
    public static func publicForm(_ item: JSONValue, view: ItemView) -> JSONValue {
        guard case .object(var o) = item else { return item }
        let execution = o.removeValue(forKey: privateKey)?["execution"]
        guard o["type"]?.stringValue == "code_interpreter_call" else { return .object(o) }
        if !view.outputs { o["outputs"] = .null }
        if let urls = view.executionURLs {
            o[privateKey] = ["execution": execution.map { withURLs($0, urls) } ?? .null]
        }
        return .object(o)
    }

    /// The result object as it is stored: no URLs (they expire; `withURLs` signs fresh ones when it is shown) and
    /// no host paths.
    static func storedExecution(_ result: ExecutionResult) -> JSONValue {
        var r = result
        for i in r.files.indices {
            r.files[i].url = nil
            r.files[i].storePath = nil
        }
        for i in r.displays.indices { r.displays[i].url = nil }
        guard let data = try? JSONEncoder().encode(r), let value = try? JSONValue.parse(data) else { return .null }
        return value
    }

    /// A stored result object with a download `url` on each of its files and displays.
    static func withURLs(_ execution: JSONValue, _ urls: any FileURLProvider) -> JSONValue {
        guard case .object(var o) = execution else { return execution }
        func signed(_ list: JSONValue?, idKey: String) -> JSONValue? {
            guard let items = list?.arrayValue else { return list }
            return .array(items.map { entry in
                guard case .object(var e) = entry, let id = e[idKey]?.stringValue else { return entry }
                let file = FileReference(id: id, name: e["name"]?.stringValue ?? "", path: e["path"]?.stringValue ?? "",
                                         mimeType: e["mime_type"]?.stringValue ?? "", sizeBytes: e["size_bytes"]?.intLike.map(Int64.init) ?? 0,
                                         sessionId: nil)
                e["url"] = .string(urls.url(for: file))
                return .object(e)
            })
        }
        o["files"] = signed(o["files"], idKey: "id")
        o["displays"] = signed(o["displays"], idKey: "file_id")
        return .object(o)
    }

    // MARK: What the model was told about a code run

    static func modelText(_ item: JSONValue, images: Bool) -> String {
        if let text = item[privateKey]?[images ? "model_text_images" : "model_text"]?.stringValue { return text }
        let logs = (item["outputs"]?.arrayValue ?? []).compactMap { $0["logs"]?.stringValue }.joined(separator: "\n")
        return logs.isEmpty ? "(the output of this call is not available)" : logs
    }

    static func images(_ item: JSONValue) -> [String] {
        (item["outputs"]?.arrayValue ?? []).compactMap { $0["type"]?.stringValue == "image" ? $0["url"]?.stringValue : nil }
    }

    static func codeArguments(_ item: JSONValue) -> String {
        JSONValue.object(["code": .string(item["code"]?.stringValue ?? "")]).serialized()
    }

    static func text(of parts: [JSONValue]) -> String {
        parts.compactMap { $0["text"]?.stringValue ?? $0["refusal"]?.stringValue }.joined(separator: "\n")
    }

    static func outputText(_ output: JSONValue?) -> String {
        switch output {
        case .string(let s)?: return s
        case .array(let parts)?:
            return parts.map { part in
                if let text = part["text"]?.stringValue { return text }
                if part["type"]?.stringValue == "input_image" { return "[image]" }
                if let name = part["filename"]?.stringValue { return "[file \(name)]" }
                return ""
            }.joined(separator: "\n")
        default: return ""
        }
    }

    // MARK: Chat Completions

    /// The history as Chat Completions messages: instructions first (system), then each item; the assistant's
    /// text and calls of one turn are one message; each code run is followed by its result as a `tool` message.
    public static func chatMessages(instructions: String?, items: [JSONValue]) -> [JSONValue] {
        var messages: [JSONValue] = []
        if let instructions, !instructions.isEmpty {
            messages.append(["role": "system", "content": .string(instructions)])
        }
        var assistantText: String? = nil
        var calls: [JSONValue] = []
        var results: [JSONValue] = []
        func flush() {
            if assistantText != nil || !calls.isEmpty {
                var m: [String: JSONValue] = ["role": "assistant"]
                m["content"] = assistantText.map { .string($0) } ?? .null
                if !calls.isEmpty { m["tool_calls"] = .array(calls) }
                messages.append(.object(m))
            }
            messages += results
            assistantText = nil
            calls = []
            results = []
        }
        for item in items {
            switch item["type"]?.stringValue {
            case "message":
                let role = item["role"]?.stringValue ?? "user"
                let parts = item["content"]?.arrayValue ?? []
                if role == "assistant" {
                    if !calls.isEmpty { flush() }
                    let text = self.text(of: parts)
                    assistantText = assistantText.map { $0 + "\n\n" + text } ?? text
                    continue
                }
                flush()
                if role == "user" {
                    messages.append(["role": "user", "content": userContent(parts)])
                } else {
                    messages.append(["role": "system", "content": .string(text(of: parts))])
                }
            case "function_call":
                calls.append(["id": .string(item["call_id"]?.stringValue ?? ""), "type": "function",
                              "function": ["name": .string(item["name"]?.stringValue ?? ""),
                                           "arguments": .string(item["arguments"]?.stringValue ?? "{}")]])
            case "code_interpreter_call":
                let id = item["id"]?.stringValue ?? ""
                calls.append(["id": .string(id), "type": "function",
                              "function": ["name": .string(ResponseRequest.codeToolName), "arguments": .string(codeArguments(item))]])
                results.append(["role": "tool", "tool_call_id": .string(id), "content": .string(modelText(item, images: false))])
            case "function_call_output":
                flush()
                messages.append(["role": "tool", "tool_call_id": .string(item["call_id"]?.stringValue ?? ""),
                                 "content": .string(outputText(item["output"]))])
            default:
                continue  // reasoning and other items the model API has no place for
            }
        }
        flush()
        return messages
    }

    /// The files a request's input attaches (`input_file` parts): a stored file's id, or inline `file_data`
    /// (base64, or a `data:` URL) with its `filename`.
    static func attachedFiles(_ items: [JSONValue]) -> [(fileId: String?, name: String?, data: [UInt8]?)] {
        var out: [(fileId: String?, name: String?, data: [UInt8]?)] = []
        for item in items where item["type"]?.stringValue == "message" {
            for part in item["content"]?.arrayValue ?? [] where part["type"]?.stringValue == "input_file" {
                if let id = part["file_id"]?.stringValue {
                    out.append((id, part["filename"]?.stringValue, nil))
                } else if let raw = part["file_data"]?.stringValue, let name = part["filename"]?.stringValue {
                    let base64 = raw.hasPrefix("data:") ? String(raw.drop(while: { $0 != "," }).dropFirst()) : raw
                    if let data = Data(base64Encoded: base64) { out.append((nil, name, Array(data))) }
                }
            }
        }
        return out
    }

    static func userContent(_ parts: [JSONValue]) -> JSONValue {
        if parts.allSatisfy({ $0["type"]?.stringValue == "input_text" }) { return .string(text(of: parts)) }
        var out: [JSONValue] = []
        for part in parts {
            switch part["type"]?.stringValue {
            case "input_image":
                if let url = part["image_url"]?.stringValue {
                    out.append(["type": "image_url", "image_url": ["url": .string(url)]])
                } else {
                    out.append(["type": "text", "text": .string("[image \(part["file_id"]?.stringValue ?? "")]")])
                }
            case "input_file":
                let name = part["filename"]?.stringValue ?? part["file_id"]?.stringValue ?? "file"
                out.append(["type": "text", "text": .string("[attached file: \(name); the Python tool finds it at /mnt/data/\(name)]")])
            default:
                out.append(["type": "text", "text": .string(part["text"]?.stringValue ?? "")])
            }
        }
        return .array(out)
    }

    // MARK: Responses (an upstream that speaks the Responses API, with store: false)

    /// The history as Responses input items for an upstream that knows nothing of it: ids removed, each code run a
    /// function call of `execute_python` and its output (with the figures as images).
    public static func responsesInput(_ items: [JSONValue]) -> [JSONValue] {
        var out: [JSONValue] = []
        for item in items {
            guard case .object(var o) = item else { continue }
            switch o["type"]?.stringValue {
            case "message":
                o.removeValue(forKey: "id")
                o.removeValue(forKey: "status")
                out.append(.object(o))
            case "function_call":
                out.append(["type": "function_call", "call_id": o["call_id"] ?? "", "name": o["name"] ?? "",
                            "arguments": o["arguments"] ?? "{}"])
            case "function_call_output":
                out.append(["type": "function_call_output", "call_id": o["call_id"] ?? "", "output": o["output"] ?? ""])
            case "code_interpreter_call":
                let id = o["id"]?.stringValue ?? ""
                out.append(["type": "function_call", "call_id": .string(id), "name": .string(ResponseRequest.codeToolName),
                            "arguments": .string(codeArguments(item))])
                var output: [JSONValue] = [["type": "input_text", "text": .string(modelText(item, images: true))]]
                for url in images(item) { output.append(["type": "input_image", "image_url": .string(url)]) }
                out.append(["type": "function_call_output", "call_id": .string(id), "output": .array(output)])
            default:
                continue
            }
        }
        return out
    }
}
