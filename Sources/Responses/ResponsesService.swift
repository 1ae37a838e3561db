import FileStore
import Foundation
import InterpreterCore
import Logging
import Sandbox
import Tools

/// A request checked against the stored state, ready to run.
public struct PreparedResponse: Sendable {
    public var request: ResponseRequest
    public var id: String
    public var chainId: String
    /// The earlier items the model sees (the chain's or the conversation's), oldest first.
    public var history: [JSONValue]
    var binding: ContainerBinding?
}

/// The Responses and Conversations APIs over one upstream model and the sandbox: checks requests against the
/// stored state, runs the tool loop, stores the results.
public final class ResponsesService: Sendable {
    public let store: ResponsesStore
    public let upstream: any ModelUpstream
    public let tool: PythonTool
    let execute: @Sendable (ExecutionRequest) async throws -> ExecutionResult

    /// - Parameter execute: runs one execution; by default the tool's executor (the server's goes through its
    ///   admission, metrics and logs).
    public init(tool: PythonTool, upstream: any ModelUpstream,
                execute: (@Sendable (ExecutionRequest) async throws -> ExecutionResult)? = nil) throws {
        self.tool = tool
        self.upstream = upstream
        store = try ResponsesStore(store: tool.engine.store)
        let executor = tool.executor
        self.execute = execute ?? { try await executor.run($0) }
    }

    // MARK: Create

    /// Checks the previous response, the conversation, the container and the files the request names.
    public func prepare(_ request: ResponseRequest) throws(ResponsesError) -> PreparedResponse {
        let id = ResponseIDs.make("resp")
        var chainId = id
        var history: [JSONValue] = []
        do {
            if let previous = request.previousResponseId {
                guard let stored = try store.response(id: previous) else {
                    throw ResponsesError.invalid("Previous response with id '\(previous)' not found.", param: "previous_response_id",
                                                 code: "previous_response_not_found")
                }
                chainId = stored.chainId
                for response in try store.chain(endingWith: stored.id) {
                    history += response.inputItems
                    history += response.object["output"]?.arrayValue ?? []
                }
            }
            if let conversation = request.conversationId {
                guard try store.conversation(id: conversation) != nil else {
                    throw ResponsesError.notFound("Conversation with id '\(conversation)' not found.", param: "conversation")
                }
                history = try store.items(conversation: conversation)
            }
            var binding: ContainerBinding? = nil
            switch request.codeInterpreter {
            case .id(let container)?:
                guard try tool.engine.session(id: container) != nil else {
                    throw ResponsesError.notFound("Container with id '\(container)' not found (it may have expired or been deleted).",
                                                  param: "tools.container")
                }
                binding = .fixed(container.lowercased())
            case .auto(let fileIds, let memoryLimit)?:
                for (i, file) in fileIds.enumerated() where try tool.engine.store.file(id: file) == nil {
                    throw ResponsesError.notFound("File with id '\(file)' not found.", param: "tools.container.file_ids[\(i)]")
                }
                var memory: Int64? = nil
                if let memoryLimit, let bytes = ContainerMemory.bytes(memoryLimit) {
                    let ceiling = tool.limits.sessionMemoryCeiling
                    guard bytes <= ceiling else {
                        throw ResponsesError.invalid("\"tools.container.memory_limit\" \(memoryLimit) is above this server's maximum "
                            + "for a container, \(Limits.describeBytes(ceiling))", param: "tools.container.memory_limit")
                    }
                    memory = bytes
                }
                let key = request.conversationId.map { "responses-conversation:" + $0 } ?? "responses-chain:" + chainId
                binding = .auto(key: key, fileIds: fileIds, memoryBytes: memory)
            case nil:
                break
            }
            // An attached stored file must exist; its name is what the model is told to open.
            var request = request
            for (i, item) in request.input.enumerated() where item["type"]?.stringValue == "message" {
                guard case .object(var message) = item, var parts = message["content"]?.arrayValue else { continue }
                for (k, part) in parts.enumerated() where part["type"]?.stringValue == "input_file" {
                    guard let id = part["file_id"]?.stringValue, case .object(var p) = part else { continue }
                    guard let file = try tool.engine.store.file(id: id) else {
                        throw ResponsesError.notFound("File with id '\(id)' not found.", param: "input[\(i)].content[\(k)].file_id")
                    }
                    if p["filename"] == nil { p["filename"] = .string(file.name) }
                    parts[k] = .object(p)
                }
                message["content"] = .array(parts)
                request.input[i] = .object(message)
            }
            if history.isEmpty && request.input.isEmpty {
                throw ResponsesError.invalid("\"input\" is empty: send a message (a string or items)", param: "input")
            }
            return PreparedResponse(request: request, id: id, chainId: chainId, history: history, binding: binding)
        } catch let error as ResponsesError {
            throw error
        } catch {
            throw ResponsesError.server("cannot read the stored state: \(error)")
        }
    }

    /// Runs the response to its end and stores it. With a sink the events stream as they happen; `started` is
    /// called once the first event is released. Errors thrown before that (a model server that refuses the
    /// first call) have sent nothing; afterwards failures end the stream with `response.failed`.
    public func run(_ prepared: PreparedResponse, sink: EventSink?, logger: Logger) async throws -> JSONValue {
        let request = prepared.request
        let sequencer = EventSequencer(sink: sink)
        let runner = ResponseRunner(request: request, history: prepared.history + request.input, upstream: upstream, tool: tool,
                                    binding: prepared.binding, execute: execute, events: sequencer,
                                    base: baseObject(prepared), logger: logger)
        let outcome: ResponseRunner.Outcome
        do {
            outcome = try await runner.run()
        } catch {
            // After the stream started, the failure is said in it (`error`); before, the caller answers with it.
            guard sink != nil, sequencer.committed else { throw error }
            if !(error is CancellationError) {
                let failure = (error as? ResponsesError) ?? ResponsesError.server("\(error)")
                logger.error("response failed", metadata: ["error": "\(failure.message)"])
                await sequencer.emit("error", ["code": failure.code.map { .string($0) } ?? "server_error",
                                               "message": .string(failure.message), "param": failure.param.map { .string($0) } ?? .null])
            }
            return .null
        }
        let final: JSONValue
        let terminal: String
        switch outcome {
        case .completed:
            final = runner.object(status: "completed")
            terminal = "response.completed"
        case .incomplete(let reason):
            final = runner.object(status: "incomplete", incomplete: ["reason": .string(reason)])
            terminal = "response.incomplete"
        case .failed(let error):
            if sink == nil { throw error }
            final = runner.object(status: "failed", error: error.responseError)
            terminal = "response.failed"
        }
        let conversationItems: [JSONValue]
        if case .failed = outcome { conversationItems = [] } else { conversationItems = request.input + runner.output }
        let stored = request.store
            ? StoredResponse(id: prepared.id, createdAt: final["created_at"]?.intLike ?? 0, chainId: prepared.chainId,
                             previousResponseId: request.previousResponseId, conversationId: request.conversationId,
                             object: final, inputItems: request.input, include: request.include.sorted())
            : nil
        do {
            try store.save(stored, conversationItems: conversationItems, conversationId: request.conversationId)
        } catch {
            logger.error("cannot store the response", metadata: ["error": "\(error)"])
            let failure = ResponsesError.server("the response could not be stored: \(error)")
            if sink == nil { throw failure }
            await sequencer.emit("error", ["code": "server_error", "message": .string(failure.message), "param": .null])
            return final
        }
        let shown = Self.publicObject(final, view: view(request.include))
        await sequencer.emit(terminal, ["response": shown])
        return shown
    }

    func baseObject(_ prepared: PreparedResponse) -> [String: JSONValue] {
        let r = prepared.request
        return [
            "id": .string(prepared.id), "object": "response", "created_at": .int(Int(Date().timeIntervalSince1970)),
            "model": .string(r.model), "instructions": r.instructions.map { .string($0) } ?? .null,
            "previous_response_id": r.previousResponseId.map { .string($0) } ?? .null,
            "conversation": r.conversationId.map { ["id": .string($0)] } ?? .null,
            "tools": .array(r.toolsJSON), "tool_choice": r.toolChoice, "parallel_tool_calls": .bool(r.parallelToolCalls),
            "temperature": .double(r.temperature ?? 1), "top_p": .double(r.topP ?? 1),
            "max_output_tokens": r.maxOutputTokens.map { .int($0) } ?? .null, "max_tool_calls": .null,
            "metadata": .object(r.metadata), "store": .bool(r.store), "background": false,
            "text": r.text ?? ["format": ["type": "text"], "verbosity": "medium"], "truncation": "disabled",
            "reasoning": ["effort": .null, "summary": .null], "user": r.user.map { .string($0) } ?? .null,
            "service_tier": "default",
        ]
    }

    /// The response object as the API shows it (private keys removed, outputs only when asked for).
    public static func publicObject(_ object: JSONValue, view: ItemView) -> JSONValue {
        guard case .object(var o) = object else { return object }
        if let output = o["output"]?.arrayValue {
            o["output"] = .array(output.map { Items.publicForm($0, view: view) })
        }
        return .object(o)
    }

    /// What a request with these `include` values sees of items.
    public func view(_ include: Set<String>) -> ItemView { ItemView(include: include, urls: tool.urls) }

    // MARK: Stored responses

    func stored(_ id: String) throws(ResponsesError) -> StoredResponse {
        let found: StoredResponse?
        do { found = try store.response(id: id) } catch { throw ResponsesError.server("cannot read the response: \(error)") }
        guard let found else { throw ResponsesError.notFound("Response with id '\(id)' not found.", param: "response_id") }
        return found
    }

    /// `GET /v1/responses/{id}`: outputs are shown when the create request or this one includes them.
    public func retrieve(id: String, include: Set<String>) throws(ResponsesError) -> JSONValue {
        let response = try stored(id)
        return Self.publicObject(response.object, view: view(include.union(response.include)))
    }

    public func delete(id: String) throws(ResponsesError) -> JSONValue {
        _ = try stored(id)
        do { try store.deleteResponse(id: id) } catch { throw ResponsesError.server("cannot delete the response: \(error)") }
        return ["id": .string(id), "object": "response", "deleted": true]
    }

    /// The input items of a response (its own input, not its chain's), oldest first.
    public func inputItems(id: String, include: Set<String>) throws(ResponsesError) -> [JSONValue] {
        let view = view(include)
        return try stored(id).inputItems.map { Items.publicForm($0, view: view) }
    }

    // MARK: Conversations

    public func createConversation(items: [JSONValue], metadata: JSONValue) throws(ResponsesError) -> StoredConversation {
        do { return try store.createConversation(metadata: metadata, items: items) } catch {
            throw ResponsesError.server("cannot create the conversation: \(error)")
        }
    }

    public func conversation(id: String) throws(ResponsesError) -> StoredConversation {
        let found: StoredConversation?
        do { found = try store.conversation(id: id) } catch { throw ResponsesError.server("cannot read the conversation: \(error)") }
        guard let found else { throw ResponsesError.notFound("Conversation with id '\(id)' not found.", param: "conversation_id") }
        return found
    }

    /// Every stored conversation, oldest first (not in OpenAI's API, which has no list of conversations).
    public func conversations() throws(ResponsesError) -> [StoredConversation] {
        do { return try store.conversations() } catch { throw ResponsesError.server("cannot read the conversations: \(error)") }
    }

    public func updateConversation(id: String, metadata: JSONValue) throws(ResponsesError) -> StoredConversation {
        _ = try conversation(id: id)
        do { return try store.updateConversation(id: id, metadata: metadata) ?? conversation(id: id) } catch let e as ResponsesError {
            throw e
        } catch {
            throw ResponsesError.server("cannot update the conversation: \(error)")
        }
    }

    /// Deletes the conversation, its items and its automatic container.
    public func deleteConversation(id: String) async throws(ResponsesError) -> JSONValue {
        _ = try conversation(id: id)
        do {
            try store.deleteConversation(id: id)
            if let session = try await tool.sessions.existingSession(conversation: "responses-conversation:" + id) {
                _ = try tool.engine.deleteSession(id: session)
            }
        } catch {
            throw ResponsesError.server("cannot delete the conversation: \(error)")
        }
        return ["id": .string(id), "object": "conversation.deleted", "deleted": true]
    }

    public func conversationItems(id: String, include: Set<String>) throws(ResponsesError) -> [JSONValue] {
        _ = try conversation(id: id)
        let view = view(include)
        do { return try store.items(conversation: id).map { Items.publicForm($0, view: view) } } catch {
            throw ResponsesError.server("cannot read the conversation's items: \(error)")
        }
    }

    public func addConversationItems(id: String, items: [JSONValue]) throws(ResponsesError) -> [JSONValue] {
        _ = try conversation(id: id)
        do { try store.appendItems(conversation: id, items: items) } catch {
            throw ResponsesError.server("cannot add the items: \(error)")
        }
        return items.map { Items.publicForm($0, includeOutputs: false) }
    }

    public func conversationItem(id: String, itemId: String, include: Set<String>) throws(ResponsesError) -> JSONValue {
        guard let item = try conversationItems(id: id, include: include).first(where: { $0["id"]?.stringValue == itemId }) else {
            throw ResponsesError.notFound("Item with id '\(itemId)' not found in conversation '\(id)'.", param: "item_id")
        }
        return item
    }

    public func deleteConversationItem(id: String, itemId: String) throws(ResponsesError) -> StoredConversation {
        let conversation = try conversation(id: id)
        let deleted: Bool
        do { deleted = try store.deleteItem(conversation: id, itemId: itemId) } catch {
            throw ResponsesError.server("cannot delete the item: \(error)")
        }
        guard deleted else { throw ResponsesError.notFound("Item with id '\(itemId)' not found in conversation '\(id)'.", param: "item_id") }
        return conversation
    }

    // MARK: Models

    public func models() async -> [String] { await upstream.models() }
}
