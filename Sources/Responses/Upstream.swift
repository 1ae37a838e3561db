import Foundation
import InterpreterCore
import Tools

/// What an upstream model reports while it writes one turn.
public enum UpstreamEvent: Sendable, Equatable {
    /// Answer text.
    case text(String)
    /// A piece of a tool call's arguments (`delta` may be empty when the call is first announced). The id and
    /// name are the ones known so far.
    case toolCall(index: Int, id: String, name: String, argumentsDelta: String)
}

public struct UpstreamToolCall: Sendable, Equatable {
    public var id: String
    public var name: String
    public var arguments: String
    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

public struct TokenUsage: Sendable, Equatable {
    public var input = 0
    public var output = 0
    public var cached = 0
    public var reasoning = 0
    public init(input: Int = 0, output: Int = 0, cached: Int = 0, reasoning: Int = 0) {
        self.input = input
        self.output = output
        self.cached = cached
        self.reasoning = reasoning
    }

    static func + (a: TokenUsage, b: TokenUsage) -> TokenUsage {
        TokenUsage(input: a.input + b.input, output: a.output + b.output, cached: a.cached + b.cached,
                   reasoning: a.reasoning + b.reasoning)
    }

    var json: JSONValue {
        ["input_tokens": .int(input), "input_tokens_details": ["cached_tokens": .int(cached), "cache_write_tokens": 0],
         "output_tokens": .int(output), "output_tokens_details": ["reasoning_tokens": .int(reasoning)],
         "total_tokens": .int(input + output)]
    }
}

/// One finished model turn.
public struct UpstreamTurn: Sendable, Equatable {
    public var text: String
    public var toolCalls: [UpstreamToolCall]
    public var usage: TokenUsage?
    /// The model stopped because it reached `max_output_tokens`.
    public var truncated: Bool
    public init(text: String, toolCalls: [UpstreamToolCall], usage: TokenUsage? = nil, truncated: Bool = false) {
        self.text = text
        self.toolCalls = toolCalls
        self.usage = usage
        self.truncated = truncated
    }
}

/// What the loop asks of the model for one turn.
public struct UpstreamRequest: Sendable {
    public var model: String
    public var instructions: String?
    /// The whole history as items (stored form).
    public var items: [JSONValue]
    /// The function tools offered (the code interpreter's among them).
    public var tools: [FunctionTool]
    /// `auto`, `none`, `required` or `{"type":"function","name"}` (already mapped for the code tool).
    public var toolChoice: JSONValue
    public var temperature: Double?
    public var topP: Double?
    public var maxOutputTokens: Int?
    public var parallelToolCalls: Bool
    /// The request's `text` (its `format` asks for JSON or a JSON schema).
    public var text: JSONValue?
}

/// Why a model call failed, said in terms the caller can act on.
public struct UpstreamError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case unauthorized, rateLimited, rejected, server, disconnected, unreachable, badResponse, script
    }
    public var kind: Kind
    public var message: String
    public var retryAfter: Int?

    public init(_ kind: Kind, _ message: String, retryAfter: Int? = nil) {
        self.kind = kind
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { message }

    /// As an error of this API: a rate limit stays a 429 with its `Retry-After` (the SDKs retry it); a refused
    /// key or a failing model server is the server's problem (502), not the caller's credentials.
    public var apiError: ResponsesError {
        switch kind {
        case .rateLimited:
            return ResponsesError(status: 429, message: "the model server is rate limiting: \(message)", type: "rate_limit_error",
                                  code: "rate_limit_exceeded", retryAfter: retryAfter ?? 1)
        case .unauthorized:
            return ResponsesError(status: 502, message: "the model server refused this server's credentials: \(message)",
                                  type: "server_error", code: "upstream_authentication_failed")
        case .rejected:
            return ResponsesError(status: 400, message: "the model server rejected the request: \(message)",
                                  type: "invalid_request_error", code: "upstream_rejected")
        case .disconnected:
            return ResponsesError(status: 502, message: message, type: "server_error", code: "upstream_disconnected")
        case .unreachable:
            return ResponsesError(status: 502, message: message, type: "server_error", code: "upstream_unreachable")
        case .server, .badResponse, .script:
            return ResponsesError(status: 502, message: message, type: "server_error", code: "upstream_error")
        }
    }
}

/// A model behind the Responses API: streams one turn at a time.
public protocol ModelUpstream: Sendable {
    /// A short description for logs and `/v1/models` (`chat http://...`, `scripted`).
    var label: String { get }
    /// The models it serves, for `/v1/models` (empty: unknown).
    func models() async -> [String]
    func turn(_ request: UpstreamRequest, onEvent: (UpstreamEvent) async throws -> Void) async throws -> UpstreamTurn
}

// MARK: Scripted

/// Replays the assistant turns of a script (the format of `examples/scripted-demo.json`): no network, no key.
/// The turn replayed is the number of assistant turns already in the history, modulo the script's length, so
/// each new question of a demo replays the script from where it is. Text and arguments are streamed in pieces.
public struct ScriptedUpstream: ModelUpstream {
    public let turns: [AssistantTurn]
    public let name: String
    /// A message that attaches a file is answered by exploring that file (`AttachmentTour`), not by the script.
    public let exploresAttachments: Bool

    public init(turns: [AssistantTurn], name: String = "codeinterp-scripted", exploresAttachments: Bool = false) {
        self.turns = turns
        self.name = name
        self.exploresAttachments = exploresAttachments
    }

    public init(contentsOf path: String) throws {
        self.init(turns: try ScriptedProvider(contentsOf: path).turns)
    }

    /// The demo model bundled in the binary (`examples/scripted-demo.json`).
    public static func demo() throws -> ScriptedUpstream {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-demo-\(UUID().uuidString).json").path
        guard FileManager.default.createFile(atPath: path, contents: Data(PackageResources.scripted_demo_json)) else {
            throw ProviderError("cannot write the demo script to \(path)")
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        return ScriptedUpstream(turns: try ScriptedProvider(contentsOf: path).turns, name: "codeinterp-demo", exploresAttachments: true)
    }

    public var label: String { "scripted (\(turns.count) turns)" }
    public func models() async -> [String] { [name] }

    public func turn(_ request: UpstreamRequest, onEvent: (UpstreamEvent) async throws -> Void) async throws -> UpstreamTurn {
        guard !turns.isEmpty else { throw UpstreamError(.script, "the script has no turns") }
        let done = Items.chatMessages(instructions: nil, items: request.items).filter { $0["role"]?.stringValue == "assistant" }.count
        var turn = turns[done % turns.count]
        if exploresAttachments, let (file, answered) = AttachmentTour.attachment(in: request.items) {
            let tour = AttachmentTour.turns(for: file)
            if answered < tour.count { turn = tour[answered] }
        }
        for piece in Self.pieces(turn.text, size: 12) { try await onEvent(.text(piece)) }
        var calls: [UpstreamToolCall] = []
        for (index, call) in turn.toolCalls.enumerated() {
            let id = call["id"]?.stringValue ?? "call_\(index)"
            let name = call["function"]?["name"]?.stringValue ?? ResponseRequest.codeToolName
            let arguments = call["function"]?["arguments"]?.stringValue ?? "{}"
            try await onEvent(.toolCall(index: index, id: id, name: name, argumentsDelta: ""))
            for piece in Self.pieces(arguments, size: 16) {
                try await onEvent(.toolCall(index: index, id: id, name: name, argumentsDelta: piece))
            }
            calls.append(UpstreamToolCall(id: id, name: name, arguments: arguments))
        }
        let words = turn.text.split(whereSeparator: \.isWhitespace).count
        return UpstreamTurn(text: turn.text, toolCalls: calls,
                            usage: TokenUsage(input: 0, output: words + calls.reduce(0) { $0 + $1.arguments.count / 4 }))
    }

    static func pieces(_ text: String, size: Int) -> [String] {
        var out: [String] = []
        var current = ""
        for c in text {
            current.append(c)
            if current.count >= size {
                out.append(current)
                current = ""
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}
