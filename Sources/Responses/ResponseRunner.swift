import FileStore
import Foundation
import InterpreterCore
import Logging
import Sandbox
import Tools

/// Where streamed events go. `started` is called once, when the first event is released: until then nothing has
/// been sent, so a failure can still be answered with an HTTP error.
public struct EventSink: Sendable {
    public var send: @Sendable (_ type: String, _ event: JSONValue) async -> Void
    public var started: @Sendable () -> Void

    public init(send: @escaping @Sendable (String, JSONValue) async -> Void, started: @escaping @Sendable () -> Void = {}) {
        self.send = send
        self.started = started
    }
}

/// Numbers the events of one response (`sequence_number` from 0) and holds them back until `commit()`.
final class EventSequencer {
    private var sequence = 0
    private var held: [(String, JSONValue)] = []
    private(set) var committed = false
    let sink: EventSink?

    init(sink: EventSink?) { self.sink = sink }

    func emit(_ type: String, _ fields: [String: JSONValue]) async {
        guard let sink else { return }
        var event = fields
        event["type"] = .string(type)
        event["sequence_number"] = .int(sequence)
        sequence += 1
        if committed {
            await sink.send(type, .object(event))
        } else {
            held.append((type, .object(event)))
        }
    }

    func commit() async {
        guard !committed, let sink else {
            committed = true
            return
        }
        committed = true
        sink.started()
        for (type, event) in held { await sink.send(type, event) }
        held = []
    }
}

/// Where the code of one response runs.
enum ContainerBinding: Sendable {
    /// A container the request named (it must exist).
    case fixed(String)
    /// The automatic container of a conversation or response chain (`key`), created on first use with `fileIds`
    /// (and its own memory limit, when one was asked for).
    case auto(key: String, fileIds: [String], memoryBytes: Int64?)
}

/// The tool loop of one response: model turn, code runs in the container, next turn, until the model answers (or
/// hands a call of the caller's own function tools back). Emits OpenAI's stream events as it goes and builds the
/// output items (stored form).
final class ResponseRunner {
    let request: ResponseRequest
    let history: [JSONValue]
    let upstream: any ModelUpstream
    let tool: PythonTool
    let binding: ContainerBinding?
    let execute: @Sendable (ExecutionRequest) async throws -> ExecutionResult
    let events: EventSequencer
    let logger: Logger
    let maxRounds: Int
    /// The response object's fixed fields (id, created_at, model, ...), without status/output/usage.
    let base: [String: JSONValue]

    private(set) var output: [JSONValue] = []
    private(set) var usage = TokenUsage()
    private var containerId: String?
    private var containerNotice: String?
    /// Figures the code displayed that no message has cited yet: the next message cites each at 0..0, as
    /// OpenAI does, so that a backend finds them among the annotations and downloads them like linked files.
    private var uncitedFigures: [FileReference] = []

    // The turn being streamed.
    private var openMessage: (index: Int, id: String, text: String)?
    private var openCalls: [Int: OpenCall] = [:]
    private var callOrder: [Int] = []

    struct OpenCall {
        var outputIndex: Int
        var itemId: String
        var callId: String
        var name: String
        var isCode: Bool
        var arguments = ""
        var code = CodeArgumentStream()
        var opened = false
    }

    enum Outcome {
        case completed
        case incomplete(reason: String)
        case failed(ResponsesError)
    }

    init(request: ResponseRequest, history: [JSONValue], upstream: any ModelUpstream, tool: PythonTool,
         binding: ContainerBinding?, execute: @escaping @Sendable (ExecutionRequest) async throws -> ExecutionResult,
         events: EventSequencer, base: [String: JSONValue], logger: Logger, maxRounds: Int = 16) {
        self.request = request
        self.history = history
        self.upstream = upstream
        self.tool = tool
        self.binding = binding
        self.execute = execute
        self.events = events
        self.base = base
        self.logger = logger
        self.maxRounds = maxRounds
    }

    var codeEnabled: Bool { binding != nil }

    /// The function tools the model is offered: the code interpreter's, then the caller's.
    var offeredTools: [FunctionTool] {
        var tools: [FunctionTool] = []
        if codeEnabled {
            tools.append(FunctionTool(
                name: ResponseRequest.codeToolName, description: tool.definition.description,
                parameters: ["type": "object",
                             "properties": ["code": ["type": "string", "description": "The Python code to run. End with an expression to get its value back."]],
                             "required": ["code"], "additionalProperties": false],
                strict: true))
        }
        return tools + request.functionTools
    }

    var upstreamToolChoice: JSONValue {
        if case .object(let o) = request.toolChoice, o["type"]?.stringValue == "code_interpreter" {
            return ["type": "function", "name": .string(ResponseRequest.codeToolName)]
        }
        return request.toolChoice
    }

    /// The response object in its stored form.
    func object(status: String, error: JSONValue = .null, incomplete: JSONValue = .null, withUsage: Bool = true) -> JSONValue {
        var o = base
        o["status"] = .string(status)
        o["output"] = .array(output)
        o["error"] = error
        o["incomplete_details"] = incomplete
        o["usage"] = withUsage ? usage.json : .null
        return .object(o)
    }

    var view: ItemView { ItemView(include: request.include, urls: tool.urls) }

    func publicItem(_ item: JSONValue) -> JSONValue { Items.publicForm(item, view: view) }

    // MARK: The loop

    /// Runs to the answer. Upstream failures before anything was streamed are thrown (the caller can still answer
    /// with an HTTP error); later ones end the response as failed.
    func run() async throws -> Outcome {
        let started = ResponsesService.publicObject(object(status: "in_progress", withUsage: false), view: view)
        await events.emit("response.created", ["response": started])
        await events.emit("response.in_progress", ["response": started])
        for round in 0...maxRounds {
            let last = round == maxRounds
            let upstreamRequest = UpstreamRequest(
                model: request.model, instructions: request.instructions, items: history + output,
                tools: last ? [] : offeredTools, toolChoice: last ? "none" : upstreamToolChoice,
                temperature: request.temperature, topP: request.topP, maxOutputTokens: request.maxOutputTokens,
                parallelToolCalls: request.parallelToolCalls, text: request.text)
            let turn: UpstreamTurn
            do {
                turn = try await upstream.turn(upstreamRequest) { event in
                    await self.events.commit()
                    try await self.handle(event)
                }
            } catch let error as UpstreamError {
                logger.warning("model call failed", metadata: ["error": "\(error.message)", "round": "\(round)"])
                guard events.committed || round > 0 else { throw error.apiError }
                await events.commit()
                await abandonTurn()
                return .failed(error.apiError)
            }
            await events.commit()
            if let u = turn.usage { usage = usage + u }
            // Calls the stream did not announce (a non-streamed answer) are opened now.
            for (index, call) in turn.toolCalls.enumerated() where openCalls[index]?.opened != true {
                try await handle(.toolCall(index: index, id: call.id, name: call.name.isEmpty ? ResponseRequest.codeToolName : call.name,
                                           argumentsDelta: String(call.arguments.dropFirst(openCalls[index]?.arguments.count ?? 0))))
            }
            let calls = callOrder.compactMap { openCalls[$0] }
            if openMessage != nil || (calls.isEmpty && !turn.truncated) {
                if openMessage == nil { await openMessageItem() }
                await finishMessage()
            }
            var handBack = false
            for call in calls {
                if call.isCode {
                    try await runCode(call)
                } else {
                    await finishFunctionCall(call)
                    handBack = true
                }
            }
            openCalls = [:]
            callOrder = []
            if turn.truncated { return .incomplete(reason: "max_output_tokens") }
            if calls.isEmpty || handBack { return .completed }
        }
        return .completed
    }

    /// A failed model call mid-turn: what was open is closed as incomplete.
    func abandonTurn() async {
        if let m = openMessage {
            output[m.index] = messageItem(id: m.id, text: m.text, annotations: [], status: "incomplete")
            openMessage = nil
        }
        for index in callOrder {
            guard let call = openCalls[index], call.opened, case .object(var item) = output[call.outputIndex] else { continue }
            item["status"] = "incomplete"
            output[call.outputIndex] = .object(item)
        }
        openCalls = [:]
        callOrder = []
    }

    func handle(_ event: UpstreamEvent) async throws {
        switch event {
        case .text(let delta):
            guard !delta.isEmpty else { return }
            if openMessage == nil { await openMessageItem() }
            openMessage!.text += delta
            await events.emit("response.output_text.delta", [
                "item_id": .string(openMessage!.id), "output_index": .int(openMessage!.index), "content_index": 0,
                "delta": .string(delta), "logprobs": [],
            ])
        case .toolCall(let index, let id, let name, let delta):
            var call = openCalls[index] ?? OpenCall(outputIndex: -1, itemId: "", callId: id, name: name, isCode: false)
            call.callId = id
            if !name.isEmpty { call.name = name }
            call.arguments += delta
            if !call.opened {
                guard !call.name.isEmpty else {
                    openCalls[index] = call
                    return
                }
                if openMessage != nil { await finishMessage() }
                // The code tool, or any name when it is the only tool (a model that calls it `python`, `run`...).
                call.isCode = codeEnabled && (ResponseRequest.codeToolAliases.contains(call.name) || request.functionTools.isEmpty)
                call.outputIndex = output.count
                call.opened = true
                callOrder.append(index)
                if call.isCode {
                    call.itemId = ResponseIDs.make("ci")
                    let container = try await self.container()
                    let item: JSONValue = ["type": "code_interpreter_call", "id": .string(call.itemId), "status": "in_progress",
                                           "code": "", "container_id": .string(container), "outputs": .null]
                    output.append(item)
                    await events.emit("response.output_item.added", ["output_index": .int(call.outputIndex), "item": publicItem(item)])
                    await events.emit("response.code_interpreter_call.in_progress",
                                      ["output_index": .int(call.outputIndex), "item_id": .string(call.itemId)])
                    let first = call.code.feed(call.arguments)
                    if !first.isEmpty { await codeDelta(call, first) }
                } else {
                    call.itemId = ResponseIDs.make("fc")
                    let item: JSONValue = ["type": "function_call", "id": .string(call.itemId), "call_id": .string(call.callId),
                                           "name": .string(call.name), "arguments": "", "status": "in_progress"]
                    output.append(item)
                    await events.emit("response.output_item.added", ["output_index": .int(call.outputIndex), "item": item])
                    if !call.arguments.isEmpty { await argumentsDelta(call, call.arguments) }
                }
                openCalls[index] = call
                return
            }
            if call.isCode {
                let piece = call.code.feed(delta)
                if !piece.isEmpty { await codeDelta(call, piece) }
            } else if !delta.isEmpty {
                await argumentsDelta(call, delta)
            }
            openCalls[index] = call
        }
    }

    func codeDelta(_ call: OpenCall, _ delta: String) async {
        await events.emit("response.code_interpreter_call_code.delta",
                          ["output_index": .int(call.outputIndex), "item_id": .string(call.itemId), "delta": .string(delta)])
    }

    func argumentsDelta(_ call: OpenCall, _ delta: String) async {
        await events.emit("response.function_call_arguments.delta",
                          ["output_index": .int(call.outputIndex), "item_id": .string(call.itemId), "delta": .string(delta)])
    }

    // MARK: Messages

    func messageItem(id: String, text: String, annotations: [JSONValue], status: String) -> JSONValue {
        ["type": "message", "id": .string(id), "role": "assistant", "status": .string(status),
         "content": [["type": "output_text", "text": .string(text), "annotations": .array(annotations), "logprobs": []]]]
    }

    func openMessageItem() async {
        let id = ResponseIDs.make("msg")
        let index = output.count
        openMessage = (index, id, "")
        let item: JSONValue = ["type": "message", "id": .string(id), "role": "assistant", "status": "in_progress", "content": []]
        output.append(item)
        await events.emit("response.output_item.added", ["output_index": .int(index), "item": item])
        await events.emit("response.content_part.added", [
            "item_id": .string(id), "output_index": .int(index), "content_index": 0,
            "part": ["type": "output_text", "text": "", "annotations": [], "logprobs": []],
        ])
    }

    /// Ends the open message: its `sandbox:/mnt/data/...` links become container_file_citation annotations.
    func finishMessage() async {
        guard let m = openMessage else { return }
        openMessage = nil
        let annotations = citations(in: m.text)
        for (k, annotation) in annotations.enumerated() {
            await events.emit("response.output_text.annotation.added", [
                "item_id": .string(m.id), "output_index": .int(m.index), "content_index": 0,
                "annotation_index": .int(k), "annotation": annotation,
            ])
        }
        await events.emit("response.output_text.done", [
            "item_id": .string(m.id), "output_index": .int(m.index), "content_index": 0, "text": .string(m.text), "logprobs": [],
        ])
        let part: JSONValue = ["type": "output_text", "text": .string(m.text), "annotations": .array(annotations), "logprobs": []]
        await events.emit("response.content_part.done", [
            "item_id": .string(m.id), "output_index": .int(m.index), "content_index": 0, "part": part,
        ])
        let item = messageItem(id: m.id, text: m.text, annotations: annotations, status: "completed")
        output[m.index] = item
        await events.emit("response.output_item.done", ["output_index": .int(m.index), "item": item])
    }

    func citations(in text: String) -> [JSONValue] {
        guard let containerId else { return [] }
        var out: [JSONValue] = []
        if text.contains("sandbox:/mnt/data/"), let files = try? tool.engine.sessionFiles(sessionId: containerId) {
            let resolved = LinkResolver.citations(in: text, files: files.map(FileReference.init), containerId: containerId)
            out = resolved.citations.map {
                ["type": "container_file_citation", "container_id": .string($0.containerId), "file_id": .string($0.fileId),
                 "filename": .string($0.filename), "start_index": .int($0.startIndex), "end_index": .int($0.endIndex)]
            }
        }
        for figure in uncitedFigures {
            out.append(["type": "container_file_citation", "container_id": .string(containerId), "file_id": .string(figure.id),
                        "filename": .string(figure.name), "start_index": 0, "end_index": 0])
        }
        uncitedFigures = []
        return out
    }

    // MARK: Calls

    func finishFunctionCall(_ call: OpenCall) async {
        await events.emit("response.function_call_arguments.done", [
            "output_index": .int(call.outputIndex), "item_id": .string(call.itemId), "arguments": .string(call.arguments),
            "name": .string(call.name),
        ])
        let item: JSONValue = ["type": "function_call", "id": .string(call.itemId), "call_id": .string(call.callId),
                               "name": .string(call.name), "arguments": .string(call.arguments), "status": "completed"]
        output[call.outputIndex] = item
        await events.emit("response.output_item.done", ["output_index": .int(call.outputIndex), "item": item])
    }

    /// The container this response's code runs in (the automatic one is created on first use).
    func container() async throws -> String {
        if let containerId { return containerId }
        switch binding {
        case .fixed(let id)?:
            containerId = id
        case .auto(let key, let fileIds, let memory)?:
            let existing = try await tool.sessions.existingSession(conversation: key)
            let session = try await tool.sessions.session(conversation: key, memoryBytes: memory)
            if existing == nil {
                for id in fileIds { _ = try tool.engine.addSessionFile(sessionId: session.sessionId, fileId: id) }
            }
            containerId = session.sessionId
            containerNotice = session.notice
        case nil:
            throw ResponsesError.server("no code_interpreter tool in this request")
        }
        // Files the request's input attaches are put in the container, as OpenAI does.
        for file in Items.attachedFiles(request.input) {
            if let id = file.fileId {
                _ = try tool.engine.addSessionFile(sessionId: containerId!, fileId: id)
            } else if let name = file.name, let data = file.data {
                _ = try tool.engine.addSessionFile(sessionId: containerId!, name: name, bytes: data)
            }
        }
        return containerId!
    }

    func runCode(_ call: OpenCall) async throws {
        var call = call
        let container = try await self.container()
        let index = call.outputIndex
        let itemId = JSONValue.string(call.itemId)
        let code: String
        let problem: String?
        switch CodeArgumentStream.code(fromArguments: call.arguments) {
        case .success(let c):
            code = c
            problem = nil
        case .failure(let p):
            code = call.code.emitted.isEmpty ? call.arguments : call.code.emitted
            problem = p.message
        }
        let rest = call.code.finish(finalCode: code)
        if !rest.isEmpty { await codeDelta(call, rest) }
        await events.emit("response.code_interpreter_call_code.done", ["output_index": .int(index), "item_id": itemId, "code": .string(code)])

        var item: [String: JSONValue] = ["type": "code_interpreter_call", "id": itemId, "code": .string(code),
                                         "container_id": .string(container)]
        if let problem {
            let text = "The call was not run: \(problem)"
            item["status"] = "failed"
            item["outputs"] = [["type": "logs", "logs": .string(text)]]
            item[Items.privateKey] = ["model_text": .string(text), "model_text_images": .string(text)]
            output[index] = .object(item)
            await events.emit("response.output_item.done", ["output_index": .int(index), "item": publicItem(.object(item))])
            return
        }
        output[index] = .object(item.merging(["status": "interpreting", "outputs": .null]) { $1 })
        await events.emit("response.code_interpreter_call.interpreting", ["output_index": .int(index), "item_id": itemId])

        var outputs: [JSONValue] = []
        var status = "completed"
        var modelText = "", modelTextImages = ""
        var execution = JSONValue.null
        do {
            if try tool.engine.session(id: container) == nil {
                throw ResponsesError.notFound("the container \(container) no longer exists (it expired or was deleted)")
            }
            let result = try await execute(ExecutionRequest(code: code, sessionId: container))
            let outcome = tool.describe(result, sessionId: container, notice: containerNotice)
            containerNotice = nil
            let logs = Self.logs(outcome)
            if !logs.isEmpty { outputs.append(["type": "logs", "logs": .string(logs)]) }
            for image in outcome.images {
                outputs.append(["type": "image", "url": .string("data:\(image.mimeType);base64,\(image.base64)")])
                uncitedFigures.append(image.file)
            }
            modelText = outcome.textOnly
            modelTextImages = outcome.text
            execution = Items.storedExecution(result)
        } catch {
            // The caller went away: the engine stopped the code; the loop ends here.
            if error is CancellationError || Task.isCancelled { throw CancellationError() }
            let text = "The sandbox failed to run the code: \(error). Nothing ran."
            logger.error("code run failed", metadata: ["error": "\(error)"])
            outputs = [["type": "logs", "logs": .string(text)]]
            modelText = text
            modelTextImages = text
            status = "failed"
        }
        item["status"] = .string(status)
        item["outputs"] = .array(outputs)
        item[Items.privateKey] = ["model_text": .string(modelText), "model_text_images": .string(modelTextImages),
                                  "execution": execution]
        output[index] = .object(item)
        if status == "completed" {
            await events.emit("response.code_interpreter_call.completed", ["output_index": .int(index), "item_id": itemId])
        }
        await events.emit("response.output_item.done", ["output_index": .int(index), "item": publicItem(.object(item))])
    }

    /// OpenAI's `logs`: what the code printed, the value of its last expression, the traceback if it raised.
    static func logs(_ outcome: ToolOutcome) -> String {
        guard let result = outcome.result else { return outcome.textOnly }
        var parts: [String] = []
        if !result.stdout.isEmpty { parts.append(result.stdout) }
        if !result.stderr.isEmpty { parts.append(result.stderr) }
        if let error = result.error {
            parts.append(error.traceback.isEmpty ? "\(error.name): \(error.value)" : error.traceback.joined(separator: "\n"))
        }
        if let value = result.result?["text/plain"] { parts.append(value) }
        if result.status != .ok && result.status != .error { parts.append("[\(result.status.rawValue)]") }
        return parts.map { $0.hasSuffix("\n") ? String($0.dropLast()) : $0 }.joined(separator: "\n")
    }
}
