import AsyncHTTPClient
import Foundation
import InterpreterCore

/// One assistant turn: its text and the tool calls it asked for (Chat Completions `tool_calls[]` entries).
public struct AssistantTurn: Sendable, Equatable {
    public var text: String
    public var toolCalls: [JSONValue]

    public init(text: String, toolCalls: [JSONValue]) {
        self.text = text
        self.toolCalls = toolCalls
    }

    /// The Chat Completions assistant message for the history.
    public var message: JSONValue {
        var m: [String: JSONValue] = ["role": "assistant", "content": text.isEmpty && !toolCalls.isEmpty ? .null : .string(text)]
        if !toolCalls.isEmpty { m["tool_calls"] = .array(toolCalls) }
        return .object(m)
    }
}

/// A provider failed: said plainly to the user.
public struct ProviderError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A model behind a chat API. Messages are Chat Completions message objects.
public protocol ChatProvider: Sendable {
    /// Runs one completion. `onText` receives the text as it streams; `onNotice` what the user should know
    /// while waiting (retries).
    func complete(messages: [JSONValue], tools: [JSONValue], onText: @escaping @Sendable (String) -> Void,
                  onNotice: @escaping @Sendable (String) -> Void) async throws -> AssistantTurn
}

// MARK: Scripted

/// Replays the assistant turns of a recorded conversation: no network, no key. The turn replayed is the one
/// after the assistant turns already in the history, so a resumed conversation continues the script.
///
/// Script file: `{"turns": [{"content": "text", "tool_calls": [{"id": "call_1", "name": "execute_python",
/// "arguments": {"code": "..."} }]}, ...]}`; `arguments` may also be a string (replayed as is, even if it is not
/// valid JSON: that is how a script exercises bad arguments).
public struct ScriptedProvider: ChatProvider {
    public let turns: [AssistantTurn]

    public init(turns: [AssistantTurn]) { self.turns = turns }

    public init(contentsOf path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw ProviderError("cannot read the script \(path)") }
        let json: JSONValue
        do { json = try JSONValue.parse(data) } catch { throw ProviderError("the script \(path) is not valid JSON: \(error)") }
        guard let turns = (json["turns"] ?? json).arrayValue else {
            throw ProviderError("the script \(path) must be {\"turns\": [...]} (a list of assistant turns)")
        }
        var parsed: [AssistantTurn] = []
        for (t, turn) in turns.enumerated() {
            guard turn.objectValue != nil else { throw ProviderError("\(path): turn \(t + 1) must be an object") }
            var calls: [JSONValue] = []
            for (c, call) in (turn["tool_calls"]?.arrayValue ?? []).enumerated() {
                let function = call["function"] ?? call
                let arguments: String
                switch function["arguments"] {
                case .string(let s)?: arguments = s
                case let value?: arguments = value.serialized()
                case nil: arguments = "{}"
                }
                calls.append([
                    "id": .string(call["id"]?.stringValue ?? "call_\(t + 1)_\(c + 1)"), "type": "function",
                    "function": ["name": .string(function["name"]?.stringValue ?? ToolDefinition.toolName),
                                 "arguments": .string(arguments)],
                ])
            }
            parsed.append(AssistantTurn(text: turn["content"]?.stringValue ?? "", toolCalls: calls))
        }
        self.turns = parsed
    }

    public func complete(messages: [JSONValue], tools: [JSONValue], onText: @escaping @Sendable (String) -> Void,
                         onNotice: @escaping @Sendable (String) -> Void) async throws -> AssistantTurn {
        let index = messages.filter { $0["role"]?.stringValue == "assistant" }.count
        guard index < turns.count else {
            throw ProviderError("the script has no assistant turn left (it has \(turns.count))")
        }
        let turn = turns[index]
        if !turn.text.isEmpty { onText(turn.text) }
        return turn
    }
}

// MARK: OpenAI-compatible Chat Completions

/// Accumulates a streamed Chat Completions response (the data of its events): text deltas, and tool-call deltas
/// merged by `index`.
public struct ChatStreamAccumulator: Sendable {
    public private(set) var text = ""
    public private(set) var finishReason: String?
    public private(set) var done = false
    private var calls: [Int: (id: String, name: String, arguments: String)] = [:]

    public init() {}

    /// Feeds one line of the stream; returns the text delta it carried, if any.
    public mutating func feed(line rawLine: String) throws -> String? {
        let line = rawLine.hasSuffix("\r") ? String(rawLine.dropLast()) : rawLine
        guard line.hasPrefix("data:") else { return nil }
        return try feed(data: String(line.dropFirst(5)))
    }

    /// Feeds the data of one event (a chunk object, or `[DONE]`); returns the text delta it carried, if any.
    public mutating func feed(data: String) throws -> String? {
        let payload = data.trimmingCharacters(in: .whitespacesAndNewlines)
        if payload == "[DONE]" {
            done = true
            return nil
        }
        guard !payload.isEmpty else { return nil }
        let chunk: JSONValue
        do { chunk = try JSONValue.parse(payload) } catch {
            throw ProviderError("the endpoint sent a stream line that is not JSON: \(payload.prefix(200))")
        }
        if let error = chunk["error"], !error.isNull {
            throw ProviderError("the endpoint reported an error mid-stream: \(error["message"]?.stringValue ?? error.serialized())")
        }
        guard let choice = chunk["choices"]?.arrayValue?.first else { return nil }
        if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
        let delta = choice["delta"] ?? choice["message"] ?? .null
        for call in delta["tool_calls"]?.arrayValue ?? [] {
            let index: Int
            if case .int(let i)? = call["index"] { index = i } else { index = calls.count }
            var entry = calls[index] ?? (id: "", name: "", arguments: "")
            if let id = call["id"]?.stringValue { entry.id = id }
            if let name = call["function"]?["name"]?.stringValue { entry.name += name }
            if let arguments = call["function"]?["arguments"]?.stringValue { entry.arguments += arguments }
            calls[index] = entry
        }
        if let content = delta["content"]?.stringValue, !content.isEmpty {
            text += content
            return content
        }
        return nil
    }

    public var turn: AssistantTurn {
        let toolCalls: [JSONValue] = calls.keys.sorted().map { index in
            let c = calls[index]!
            return ["id": .string(c.id.isEmpty ? "call_\(index)" : c.id), "type": "function",
                    "function": ["name": .string(c.name), "arguments": .string(c.arguments)]]
        }
        return AssistantTurn(text: text, toolCalls: toolCalls)
    }
}

/// Any OpenAI-compatible `POST {base}/chat/completions` endpoint, streamed.
public struct OpenAIChatProvider: ChatProvider {
    public let baseURL: String
    public let model: String
    let apiKey: String?
    public let maxRetries: Int
    /// The longest wait between retries of a rate-limited request.
    public let maxBackoffSeconds: Double

    public init(baseURL: String, model: String, apiKey: String?, maxRetries: Int = 4, maxBackoffSeconds: Double = 60) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.model = model
        self.apiKey = apiKey
        self.maxRetries = maxRetries
        self.maxBackoffSeconds = maxBackoffSeconds
    }

    /// One client for the process (never shut down, like `HTTPClient.shared`), failing fast when the endpoint
    /// cannot be reached instead of retrying the connection for the 90 s of the shared client's configuration.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.timeout = .init(connect: .seconds(15), read: .seconds(300))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    public func complete(messages: [JSONValue], tools: [JSONValue], onText: @escaping @Sendable (String) -> Void,
                         onNotice: @escaping @Sendable (String) -> Void) async throws -> AssistantTurn {
        let url = baseURL + "/chat/completions"
        let body: JSONValue = ["model": .string(model), "messages": .array(messages), "tools": .array(tools), "stream": true]
        var attempt = 0
        while true {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "Accept", value: "text/event-stream")
            if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
            let bytes = Array(body.serialized().utf8)
            request.body = .bytes(bytes, length: .known(Int64(bytes.count)))

            let response: HTTPClientResponse
            do {
                response = try await Self.client.execute(request, timeout: .seconds(600))
            } catch {
                throw ProviderError("cannot reach \(url): \(error)")
            }
            let status = Int(response.status.code)
            if status == 429 || status == 503, attempt < maxRetries {
                let wait = Self.retryDelay(retryAfter: response.headers.first(name: "retry-after"), attempt: attempt,
                                           cap: maxBackoffSeconds)
                attempt += 1
                onNotice("the endpoint answered \(status) (\(status == 429 ? "rate limited" : "unavailable")); "
                    + "retrying in \(Self.format(wait)) s (attempt \(attempt + 1) of \(maxRetries + 1))")
                try? await Task.sleep(for: .milliseconds(Int(wait * 1000)))
                continue
            }
            guard (200..<300).contains(status) else {
                let data = try await ModelServerBody.collect(response.body, limit: 1 << 20)
                throw ProviderError(Self.describeHTTPError(status: status, body: data, url: url, attempts: attempt + 1))
            }
            let contentType = response.headers.first(name: "content-type") ?? ""
            if contentType.contains("application/json") {
                // Not streamed after all: one completion object.
                let data = try await ModelServerBody.collect(response.body, limit: 16 << 20)
                var accumulator = ChatStreamAccumulator()
                if let text = try accumulator.feed(data: String(decoding: data, as: UTF8.self)) { onText(text) }
                return accumulator.turn
            }
            var accumulator = ChatStreamAccumulator()
            try await ModelServerBody.forEachEvent(in: response.body) { event in
                if let text = try accumulator.feed(data: event.data) { onText(text) }
                return !accumulator.done
            }
            return accumulator.turn
        }
    }

    /// Seconds to wait before retrying: the `Retry-After` header (seconds or an HTTP date) when there is one,
    /// else exponential backoff from 1 s; never more than `cap`.
    public static func retryDelay(retryAfter: String?, attempt: Int, cap: Double, now: Date = Date()) -> Double {
        if let retryAfter = retryAfter?.trimmingCharacters(in: .whitespaces) {
            if let seconds = Double(retryAfter), seconds >= 0 { return min(seconds, cap) }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
            if let date = formatter.date(from: retryAfter) { return min(max(0, date.timeIntervalSince(now)), cap) }
        }
        return min(pow(2, Double(attempt)), cap)
    }

    static func format(_ seconds: Double) -> String {
        seconds.rounded() == seconds ? String(Int(seconds)) : String(format: "%.1f", seconds)
    }

    static func describeHTTPError(status: Int, body: [UInt8], url: String, attempts: Int) -> String {
        let json = try? JSONValue.parse(Data(body))
        let detail = json?["error"]?["message"]?.stringValue ?? json?["message"]?.stringValue
            ?? String(decoding: body.prefix(300), as: UTF8.self)
        switch status {
        case 401: return "the endpoint refused the API key (401 Unauthorized): \(detail)"
        case 403: return "the endpoint refused the request (403 Forbidden): \(detail)"
        case 404: return "\(url) answered 404 (wrong --base-url or --model?): \(detail)"
        case 429: return "the endpoint is rate limiting (429) after \(attempts) attempts: \(detail)"
        default: return "the endpoint answered HTTP \(status): \(detail)"
        }
    }
}
