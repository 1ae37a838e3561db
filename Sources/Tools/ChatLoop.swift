import Foundation
import InterpreterCore

/// What the chat loop reports as it goes (a terminal prints it; tests collect it).
public enum ChatEvent: Sendable {
    /// Streamed assistant text.
    case text(String)
    /// A model turn that asks for tools ended: `text` is what it said first (often nothing). Its calls follow
    /// as `toolCall` or `toolProblem` events; the last turn of a user message is an `answer` instead.
    case turn(text: String)
    /// The model asked to run code.
    case toolCall(id: String, code: String?)
    /// The call's arguments were unusable; the model was told why.
    case toolProblem(id: String, message: String)
    /// What a call produced.
    case toolResult(id: String, outcome: ToolOutcome)
    /// Something the user should know (a retry, a new session, the round limit).
    case notice(String)
    /// The final answer of the user turn, with its links resolved.
    case answer(ResolvedText)
}

/// The tool loop of one conversation: user message, model, `execute_python` calls, results, answer. The history
/// (Chat Completions messages) and the conversation's session live in SQLite, so a conversation can resume.
public final class ChatLoop: Sendable {
    public let conversationId: String
    public let provider: any ChatProvider
    public let tool: PythonTool
    public let maxRounds: Int
    public let systemPrompt: String

    public static let defaultSystemPrompt = """
        You are a helpful assistant with a Python sandbox: call execute_python to compute, analyse data and draw \
        charts rather than guessing. Files are in /mnt/data. When you made a file for the user, link it as \
        [NAME](sandbox:/mnt/data/NAME).
        """

    public init(conversationId: String, provider: any ChatProvider, tool: PythonTool, maxRounds: Int = 8,
                systemPrompt: String = ChatLoop.defaultSystemPrompt) {
        self.conversationId = conversationId
        self.provider = provider
        self.tool = tool
        self.maxRounds = maxRounds
        self.systemPrompt = systemPrompt
    }

    var tables: ToolsDatabase { tool.sessions.tables }

    public func history() throws -> [JSONValue] { try tables.messages(conversation: conversationId) }

    /// Runs one user turn to its answer (or to the round limit). Provider errors are thrown; the history keeps
    /// the user message, so the turn can be retried by resuming.
    @discardableResult
    public func send(_ userText: String, onEvent: @escaping @Sendable (ChatEvent) -> Void) async throws -> ResolvedText? {
        var messages = try history()
        if messages.isEmpty {
            let system: JSONValue = ["role": "system", "content": .string(systemPrompt)]
            try tables.appendMessage(conversation: conversationId, system)
            messages.append(system)
        }
        let user: JSONValue = ["role": "user", "content": .string(userText)]
        try tables.appendMessage(conversation: conversationId, user)
        messages.append(user)
        let tools = [tool.definition.json(format: .openAIChat)]

        for _ in 0..<maxRounds {
            let turn = try await provider.complete(messages: messages, tools: tools,
                                                   onText: { onEvent(.text($0)) }, onNotice: { onEvent(.notice($0)) })
            try tables.appendMessage(conversation: conversationId, turn.message)
            messages.append(turn.message)
            if turn.toolCalls.isEmpty {
                let resolved = await tool.resolveLinks(in: turn.text, conversationId: conversationId)
                onEvent(.answer(resolved))
                return resolved
            }
            onEvent(.turn(text: turn.text))
            for call in turn.toolCalls {
                let reply: JSONValue
                do {
                    let parsed = try ToolCall.parse(call)
                    switch parsed.arguments {
                    case .success(let arguments): onEvent(.toolCall(id: parsed.callId, code: arguments.code))
                    case .failure(let problem): onEvent(.toolProblem(id: parsed.callId, message: problem.message))
                    }
                    let outcome = await tool.run(parsed, conversationId: conversationId)
                    if case .success = parsed.arguments { onEvent(.toolResult(id: parsed.callId, outcome: outcome)) }
                    reply = outcome.message(for: .openAIChat, callId: parsed.callId)
                } catch {
                    let id = call["id"]?.stringValue ?? ""
                    onEvent(.toolProblem(id: id, message: error.message))
                    reply = ["role": "tool", "tool_call_id": .string(id), "content": .string("The call was not run: \(error.message)")]
                }
                try tables.appendMessage(conversation: conversationId, reply)
                messages.append(reply)
            }
        }
        onEvent(.notice("stopped after \(maxRounds) rounds without a final answer (raise --max-rounds to allow more)"))
        return nil
    }
}
