import AsyncHTTPClient
import Foundation
import InterpreterCore
import Tools

/// How to reach an HTTP model server.
public struct UpstreamEndpoint: Sendable, Equatable {
    /// `https://api.openai.com/v1`, `http://localhost:11434/v1`...
    public var baseURL: String
    public var apiKey: String?
    /// Replaces the `model` of every request when set (a local server serves its own model names).
    public var model: String?

    public init(baseURL: String, apiKey: String?, model: String?) {
        var base = Substring(baseURL)
        while base.hasSuffix("/") { base = base.dropLast() }
        self.baseURL = String(base)
        self.apiKey = apiKey
        self.model = model
    }
}

enum UpstreamHTTP {
    /// One client for the process, failing fast when the endpoint cannot be reached.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.timeout = .init(connect: .seconds(15), read: .seconds(300))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    static func post(_ endpoint: UpstreamEndpoint, path: String, body: JSONValue) async throws(UpstreamError) -> HTTPClientResponse {
        let url = endpoint.baseURL + path
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream, application/json")
        if let key = endpoint.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        let bytes = Array(body.serialized().utf8)
        request.body = .bytes(bytes, length: .known(Int64(bytes.count)))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(600))
        } catch {
            throw UpstreamError(.unreachable, "cannot reach the model server at \(url): \(error)")
        }
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            let data = (try? await ModelServerBody.collect(response.body, limit: 1 << 20)) ?? []
            throw httpError(status: status, body: data, retryAfter: response.headers.first(name: "retry-after"), url: url)
        }
        return response
    }

    static func httpError(status: Int, body: [UInt8], retryAfter: String?, url: String) -> UpstreamError {
        let json = try? JSONValue.parse(Data(body))
        let detail = json?["error"]?["message"]?.stringValue ?? json?["message"]?.stringValue
            ?? json?["error"]?.stringValue ?? String(decoding: body.prefix(300), as: UTF8.self)
        switch status {
        case 401, 403: return UpstreamError(.unauthorized, "\(status) from \(url): \(detail)")
        case 429:
            let seconds = OpenAIChatProvider.retryDelay(retryAfter: retryAfter, attempt: 0, cap: 3600)
            return UpstreamError(.rateLimited, "429 from \(url): \(detail)", retryAfter: max(1, Int(seconds.rounded(.up))))
        case 400, 413, 422: return UpstreamError(.rejected, "\(status) from \(url): \(detail)")
        case 404: return UpstreamError(.server, "\(url) answered 404 (wrong upstream_base_url or model?): \(detail)")
        default: return UpstreamError(.server, "the model server answered HTTP \(status): \(detail)")
        }
    }

    /// An answer that is one JSON document (not streamed), up to 32 MiB; `invalid` words the error for one that
    /// does not parse, given its bytes.
    static func wholeJSON(_ body: HTTPClientResponse.Body, invalid: ([UInt8]) -> String) async throws -> JSONValue {
        let data: [UInt8]
        do { data = try await ModelServerBody.collect(body, limit: 32 << 20) } catch {
            throw UpstreamError(.disconnected, "the model server's answer broke off: \(error)")
        }
        guard let json = try? JSONValue.parse(Data(data)) else { throw UpstreamError(.badResponse, invalid(data)) }
        return json
    }

    /// Calls `onData` with the data of each Server-Sent Event of `body` until it returns false; a connection that
    /// breaks is `.disconnected`.
    static func events(_ body: HTTPClientResponse.Body, onData: (String) async throws -> Bool) async throws {
        do {
            try await ModelServerBody.forEachEvent(in: body) { event in try await onData(event.data) }
        } catch let error as UpstreamError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw UpstreamError(.disconnected, "the model server's stream broke off: \(error)")
        }
    }

    static func models(_ endpoint: UpstreamEndpoint) async -> [String] {
        if let model = endpoint.model { return [model] }
        var request = HTTPClientRequest(url: endpoint.baseURL + "/models")
        if let key = endpoint.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        guard let response = try? await client.execute(request, timeout: .seconds(5)), response.status == .ok,
              let data = try? await ModelServerBody.collect(response.body, limit: 4 << 20),
              let json = try? JSONValue.parse(Data(data)) else { return [] }
        return (json["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
    }
}

// MARK: Chat Completions

/// Any Chat Completions server (OpenAI, Ollama, vLLM, llama.cpp, LM Studio...), streamed; a server that answers
/// with one JSON completion instead is read the same way.
public struct ChatCompletionsUpstream: ModelUpstream {
    public let endpoint: UpstreamEndpoint
    public init(endpoint: UpstreamEndpoint) { self.endpoint = endpoint }

    public var label: String { "chat completions at \(endpoint.baseURL)" }
    public func models() async -> [String] { await UpstreamHTTP.models(endpoint) }

    func body(_ request: UpstreamRequest) -> JSONValue {
        var body: [String: JSONValue] = [
            "model": .string(endpoint.model ?? request.model),
            "messages": .array(Items.chatMessages(instructions: request.instructions, items: request.items)),
            "stream": true, "stream_options": ["include_usage": true],
        ]
        if !request.tools.isEmpty {
            body["tools"] = .array(request.tools.map(\.chatJSON))
            switch request.toolChoice {
            case .object(let o): body["tool_choice"] = ["type": "function", "function": ["name": o["name"] ?? ""]]
            case let choice: body["tool_choice"] = choice
            }
            if !request.parallelToolCalls { body["parallel_tool_calls"] = false }
        }
        if let t = request.temperature { body["temperature"] = .double(t) }
        if let p = request.topP { body["top_p"] = .double(p) }
        if let m = request.maxOutputTokens {
            // OpenAI's own endpoint refuses max_tokens for its reasoning models; the servers people run locally
            // (Ollama, llama.cpp, LM Studio) know max_tokens.
            body[endpoint.baseURL.contains("api.openai.com") ? "max_completion_tokens" : "max_tokens"] = .int(m)
        }
        // Structured output: the Responses `text.format` as Chat Completions' `response_format`.
        if let format = request.text?["format"], let type = format["type"]?.stringValue {
            if type == "json_object" {
                body["response_format"] = ["type": "json_object"]
            } else if type == "json_schema" {
                var schema: [String: JSONValue] = ["name": format["name"] ?? "response", "schema": format["schema"] ?? [:]]
                if let strict = format["strict"], !strict.isNull { schema["strict"] = strict }
                body["response_format"] = ["type": "json_schema", "json_schema": .object(schema)]
            }
        }
        return .object(body)
    }

    public func turn(_ request: UpstreamRequest, onEvent: (UpstreamEvent) async throws -> Void) async throws -> UpstreamTurn {
        let response = try await UpstreamHTTP.post(endpoint, path: "/chat/completions", body: body(request))
        var state = ChatTurnState()
        let contentType = response.headers.first(name: "content-type") ?? ""
        if contentType.contains("application/json") {
            let json = try await UpstreamHTTP.wholeJSON(response.body) { data in
                "the model server answered with invalid JSON: \(String(decoding: data.prefix(200), as: UTF8.self))"
            }
            for event in try state.feed(chunk: json) { try await onEvent(event) }
            state.done = true
        } else {
            try await UpstreamHTTP.events(response.body) { data in
                let payload = data.trimmingCharacters(in: .whitespacesAndNewlines)
                if payload == "[DONE]" {
                    state.done = true
                    return false
                }
                guard !payload.isEmpty else { return true }
                guard let chunk = try? JSONValue.parse(payload) else {
                    throw UpstreamError(.badResponse, "the model server sent a stream line that is not JSON: \(payload.prefix(200))")
                }
                for event in try state.feed(chunk: chunk) { try await onEvent(event) }
                return true
            }
        }
        guard state.done || state.finishReason != nil else {
            throw UpstreamError(.disconnected, "the model server's stream ended before the answer did (no finish_reason, no [DONE])")
        }
        return state.turn
    }
}

/// Accumulates a Chat Completions stream (or one completion object): text, tool-call deltas merged by `index`,
/// usage, finish reason.
struct ChatTurnState {
    var text = ""
    var finishReason: String?
    var done = false
    var usage: TokenUsage?
    var calls: [Int: UpstreamToolCall] = [:]

    mutating func feed(chunk: JSONValue) throws(UpstreamError) -> [UpstreamEvent] {
        if let error = chunk["error"], !error.isNull {
            throw UpstreamError(.server, "the model server reported an error mid-stream: \(error["message"]?.stringValue ?? error.serialized())")
        }
        if let u = chunk["usage"], !u.isNull {
            usage = TokenUsage(input: u["prompt_tokens"]?.intLike ?? 0, output: u["completion_tokens"]?.intLike ?? 0,
                               cached: u["prompt_tokens_details"]?["cached_tokens"]?.intLike ?? 0,
                               reasoning: u["completion_tokens_details"]?["reasoning_tokens"]?.intLike ?? 0)
        }
        var events: [UpstreamEvent] = []
        for choice in chunk["choices"]?.arrayValue ?? [] {
            if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
            let delta = choice["delta"] ?? choice["message"] ?? .null
            if let content = delta["content"]?.stringValue, !content.isEmpty {
                text += content
                events.append(.text(content))
            }
            for (n, call) in (delta["tool_calls"]?.arrayValue ?? []).enumerated() {
                let index = call["index"]?.intLike ?? n
                var entry = calls[index] ?? UpstreamToolCall(id: "", name: "", arguments: "")
                if let id = call["id"]?.stringValue, !id.isEmpty { entry.id = id }
                if let name = call["function"]?["name"]?.stringValue { entry.name += name }
                let piece = call["function"]?["arguments"]?.stringValue
                    ?? call["function"]?["arguments"].map { $0.isNull ? "" : $0.serialized() } ?? ""
                entry.arguments += piece
                if entry.id.isEmpty { entry.id = "call_\(index)" }
                calls[index] = entry
                events.append(.toolCall(index: index, id: entry.id, name: entry.name, argumentsDelta: piece))
            }
        }
        return events
    }

    var turn: UpstreamTurn {
        UpstreamTurn(text: text, toolCalls: calls.keys.sorted().map { calls[$0]! }, usage: usage,
                     truncated: finishReason == "length")
    }
}

extension JSONValue {
    var intLike: Int? {
        switch self {
        case .int(let i): i
        case .double(let d): Int(exactly: d)
        default: nil
        }
    }
}

// MARK: Responses

/// An upstream that speaks the Responses API itself (OpenAI, Azure OpenAI): the hosted tool is replaced by the
/// `execute_python` function tool, and every request carries the whole history with `store: false` (the state
/// is codeinterp's).
public struct ResponsesAPIUpstream: ModelUpstream {
    public let endpoint: UpstreamEndpoint
    public init(endpoint: UpstreamEndpoint) { self.endpoint = endpoint }

    public var label: String { "responses at \(endpoint.baseURL)" }
    public func models() async -> [String] { await UpstreamHTTP.models(endpoint) }

    func body(_ request: UpstreamRequest) -> JSONValue {
        var body: [String: JSONValue] = [
            "model": .string(endpoint.model ?? request.model), "input": .array(Items.responsesInput(request.items)),
            "stream": true, "store": false,
        ]
        if let instructions = request.instructions { body["instructions"] = .string(instructions) }
        if !request.tools.isEmpty {
            body["tools"] = .array(request.tools.map(\.responsesJSON))
            body["tool_choice"] = request.toolChoice
            if !request.parallelToolCalls { body["parallel_tool_calls"] = false }
        }
        if let t = request.temperature { body["temperature"] = .double(t) }
        if let p = request.topP { body["top_p"] = .double(p) }
        if let m = request.maxOutputTokens { body["max_output_tokens"] = .int(m) }
        if let text = request.text { body["text"] = text }
        return .object(body)
    }

    public func turn(_ request: UpstreamRequest, onEvent: (UpstreamEvent) async throws -> Void) async throws -> UpstreamTurn {
        let response = try await UpstreamHTTP.post(endpoint, path: "/responses", body: body(request))
        var state = ResponsesTurnState()
        let contentType = response.headers.first(name: "content-type") ?? ""
        if contentType.contains("application/json") {
            let json = try await UpstreamHTTP.wholeJSON(response.body) { _ in "the model server answered with invalid JSON" }
            for event in try state.feed(["type": "response.completed", "response": json]) { try await onEvent(event) }
        } else {
            try await UpstreamHTTP.events(response.body) { data in
                let payload = data.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !payload.isEmpty, payload != "[DONE]" else { return payload != "[DONE]" }
                guard let event = try? JSONValue.parse(payload) else {
                    throw UpstreamError(.badResponse, "the model server sent an event that is not JSON: \(payload.prefix(200))")
                }
                for e in try state.feed(event) { try await onEvent(e) }
                return !state.finished
            }
        }
        guard state.finished else {
            throw UpstreamError(.disconnected, "the model server's stream ended before response.completed")
        }
        return state.turn
    }
}

/// Accumulates a Responses event stream: text deltas, function calls by output index, usage.
struct ResponsesTurnState {
    var text = ""
    var finished = false
    var truncated = false
    var usage: TokenUsage?
    /// output_index -> (tool index, call)
    var calls: [Int: (Int, UpstreamToolCall)] = [:]
    var sawTextDelta = false

    mutating func feed(_ event: JSONValue) throws(UpstreamError) -> [UpstreamEvent] {
        switch event["type"]?.stringValue {
        case "response.output_text.delta":
            guard let delta = event["delta"]?.stringValue else { return [] }
            text += delta
            sawTextDelta = true
            return [.text(delta)]
        case "response.output_item.added":
            guard let item = event["item"], item["type"]?.stringValue == "function_call",
                  let at = event["output_index"]?.intLike else { return [] }
            let call = UpstreamToolCall(id: item["call_id"]?.stringValue ?? "call_\(at)", name: item["name"]?.stringValue ?? "",
                                        arguments: item["arguments"]?.stringValue ?? "")
            calls[at] = (calls.count, call)
            return [.toolCall(index: calls[at]!.0, id: call.id, name: call.name, argumentsDelta: call.arguments)]
        case "response.function_call_arguments.delta":
            guard let at = event["output_index"]?.intLike, var entry = calls[at], let delta = event["delta"]?.stringValue else { return [] }
            entry.1.arguments += delta
            calls[at] = entry
            return [.toolCall(index: entry.0, id: entry.1.id, name: entry.1.name, argumentsDelta: delta)]
        case "response.completed", "response.incomplete":
            finished = true
            let response = event["response"] ?? .null
            if let u = response["usage"], !u.isNull {
                usage = TokenUsage(input: u["input_tokens"]?.intLike ?? 0, output: u["output_tokens"]?.intLike ?? 0,
                                   cached: u["input_tokens_details"]?["cached_tokens"]?.intLike ?? 0,
                                   reasoning: u["output_tokens_details"]?["reasoning_tokens"]?.intLike ?? 0)
            }
            truncated = response["incomplete_details"]?["reason"]?.stringValue == "max_output_tokens"
            // A non-streamed answer (or a stream without deltas): take the items from the final response.
            var events: [UpstreamEvent] = []
            for (at, item) in (response["output"]?.arrayValue ?? []).enumerated() {
                if item["type"]?.stringValue == "message", !sawTextDelta {
                    let t = Items.text(of: item["content"]?.arrayValue ?? [])
                    if !t.isEmpty {
                        text += t
                        events.append(.text(t))
                    }
                } else if item["type"]?.stringValue == "function_call", calls[at] == nil {
                    let call = UpstreamToolCall(id: item["call_id"]?.stringValue ?? "call_\(at)", name: item["name"]?.stringValue ?? "",
                                                arguments: item["arguments"]?.stringValue ?? "")
                    calls[at] = (calls.count, call)
                    events.append(.toolCall(index: calls[at]!.0, id: call.id, name: call.name, argumentsDelta: call.arguments))
                }
            }
            return events
        case "response.failed":
            let error = event["response"]?["error"]
            throw UpstreamError(.server, "the model server's response failed: \(error?["message"]?.stringValue ?? "unknown error")")
        case "error":
            let message = event["message"]?.stringValue ?? event["error"]?["message"]?.stringValue ?? "unknown error"
            if event["code"]?.stringValue == "rate_limit_exceeded" { throw UpstreamError(.rateLimited, message, retryAfter: 1) }
            throw UpstreamError(.server, "the model server reported an error: \(message)")
        default:
            return []
        }
    }

    var turn: UpstreamTurn {
        UpstreamTurn(text: text, toolCalls: calls.keys.sorted().map { calls[$0]!.1 }, usage: usage, truncated: truncated)
    }
}
