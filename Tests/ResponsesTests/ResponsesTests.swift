import FileStore
import Foundation
import InterpreterCore
import Logging
import Sandbox
import Synchronization
import Testing
import Tools
@testable import Responses

/// An engine that is never started: these tests run the loop with a stand-in for the sandbox's execution.
enum Fixture {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let engine: ExecutionEngine = {
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_PROFILES_DIR"] = packageRoot.appendingPathComponent("sandbox-profiles").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-responses-tests-\(UUID().uuidString.prefix(8))").path
        let config = EngineConfiguration.defaults(dataDirectory: dir, environment: env)
        return try! ExecutionEngine(configuration: config)
    }()

    static let tool = try! PythonTool(engine: engine, urls: ClosureFileURLs { "https://files.test/\($0.id)" })

    /// Runs one response through a service whose "sandbox" writes chart.png and prints what it was given.
    static func run(_ body: JSONValue, turns: [AssistantTurn], service: ResponsesService? = nil) async throws
        -> (response: JSONValue, events: [JSONValue], service: ResponsesService) {
        let engine = self.engine
        let service = try service ?? makeService(turns: turns, engine: engine)
        let collected = Mutex<[JSONValue]>([])
        let prepared = try service.prepare(try ResponseRequest.parse(body))
        let sink = EventSink(send: { _, event in collected.withLock { $0.append(event) } })
        let response = try await service.run(prepared, sink: body["stream"] == true ? sink : nil, logger: Logger(label: "test"))
        return (response, collected.withLock { $0 }, service)
    }

    static func makeService(turns: [AssistantTurn], engine: ExecutionEngine) throws -> ResponsesService {
        try ResponsesService(tool: tool, upstream: ScriptedUpstream(turns: turns), execute: { request in
            _ = try engine.addSessionFile(sessionId: request.sessionId!, name: "chart.png", bytes: Array("PNG fake".utf8))
            return ExecutionResult(id: "exec", sessionId: request.sessionId, status: .ok, stdout: "ran: \(request.code)\n",
                                   result: ["text/plain": "42"])
        })
    }

    static func call(_ id: String, _ name: String, _ arguments: String) -> JSONValue {
        ["id": .string(id), "type": "function", "function": ["name": .string(name), "arguments": .string(arguments)]]
    }
}

@Suite("Responses: code arguments streamed as the model writes them")
struct CodeArgumentStreamTests {
    @Test func everySplitOfTheArgumentsGivesTheSameCode() {
        let code = "print(\"héllo\\n\")\n\tx = '😀' # tab\u{1F600}"
        let arguments = JSONValue.object(["code": .string(code)]).serialized()
        // JSONEncoder escapes nothing beyond what it must; also try an ASCII-only encoding with \u escapes.
        let escaped = arguments.replacingOccurrences(of: "😀", with: "\\ud83d\\ude00").replacingOccurrences(of: "é", with: "\\u00e9")
        for text in [arguments, escaped] {
            let scalars = Array(text.unicodeScalars)
            for cut in 1..<scalars.count {
                var stream = CodeArgumentStream()
                var out = stream.feed(String(String.UnicodeScalarView(scalars[..<cut])))
                out += stream.feed(String(String.UnicodeScalarView(scalars[cut...])))
                #expect(out == code, "split at \(cut) of \(text)")
            }
            var stream = CodeArgumentStream()
            var pieces: [String] = []
            for scalar in scalars { pieces.append(stream.feed(String(scalar))) }
            #expect(pieces.joined() == code)
            #expect(pieces.filter { !$0.isEmpty }.count > 10, "the code arrives in many pieces, not at the end")
        }
    }

    @Test func codeAfterAnotherKeyAndBareCode() {
        var stream = CodeArgumentStream()
        #expect(stream.feed(#"{"session_id": null, "other": {"a": [1, "}"]}, "co"#) == "")
        #expect(stream.feed(#"de": "1 + 1"#) == "1 + 1")
        #expect(stream.feed(#""}"#) == "")
        #expect(CodeArgumentStream.code(fromArguments: "print(2)") == .success("print(2)"))
        #expect(CodeArgumentStream.code(fromArguments: #"{"code": 3}"#) != .success("3"))
        #expect(CodeArgumentStream.code(fromArguments: #"{"code": "x"#) != .success("x"))
    }
}

@Suite("Responses: history as Chat Completions messages")
struct ItemConversionTests {
    @Test func codeRunsBecomeToolCallsWithTheirResults() throws {
        let input = try Items.normalizeInput("Plot it")
        let history: [JSONValue] = input + [
            ["type": "message", "id": "msg_1", "role": "assistant", "content": [["type": "output_text", "text": "Let me run it.", "annotations": []]]],
            ["type": "code_interpreter_call", "id": "ci_1", "code": "1+1", "container_id": "c", "status": "completed",
             "outputs": [["type": "logs", "logs": "2"]], "x_codeinterp": ["model_text": "value:\n2", "model_text_images": "value:\n2"]],
            ["type": "function_call", "id": "fc_1", "call_id": "call_w", "name": "weather", "arguments": "{}"],
            ["type": "function_call_output", "call_id": "call_w", "output": "sunny"],
            ["type": "message", "id": "msg_2", "role": "assistant", "content": [["type": "output_text", "text": "Done.", "annotations": []]]],
        ]
        let messages = Items.chatMessages(instructions: "Be brief.", items: history)
        #expect(messages.count == 6)
        #expect(messages[0] == ["role": "system", "content": "Be brief."])
        #expect(messages[1] == ["role": "user", "content": "Plot it"])
        #expect(messages[2]["content"] == "Let me run it.")
        let calls = try #require(messages[2]["tool_calls"]?.arrayValue)
        #expect(calls.map { $0["id"] } == ["ci_1", "call_w"])
        #expect(calls[0]["function"]?["name"] == "execute_python")
        #expect(try JSONValue.parse(calls[0]["function"]?["arguments"]?.stringValue ?? "") == ["code": "1+1"])
        #expect(messages[3] == ["role": "tool", "tool_call_id": "ci_1", "content": "value:\n2"])
        #expect(messages[4] == ["role": "tool", "tool_call_id": "call_w", "content": "sunny"])
        #expect(messages[5] == ["role": "assistant", "content": "Done."])
        // Shown to a caller: no private keys; outputs only when asked for.
        #expect(Items.publicForm(history[2], includeOutputs: false)["outputs"] == .null)
        #expect(Items.publicForm(history[2], includeOutputs: true)["x_codeinterp"] == nil)
        #expect(Items.publicForm(history[2], includeOutputs: true)["outputs"]?.arrayValue?.count == 1)
        // For a Responses upstream the run is a function call of execute_python and its output.
        let upstream = Items.responsesInput(Array(history[2...2]))
        #expect(upstream.map { $0["type"] } == ["function_call", "function_call_output"])
        #expect(upstream[1]["call_id"] == "ci_1")
    }

    @Test func badRequestsNameTheParameter() {
        func param(_ body: JSONValue) -> String? {
            do { _ = try ResponseRequest.parse(body); return nil } catch { return error.param }
        }
        #expect(param(["model": "m", "input": "x", "tools": [["type": "web_search"]]]) == "tools[0].type")
        #expect(param(["model": "m", "input": "x", "tools": [["type": "code_interpreter"]]]) == "tools[0].container")
        #expect(param(["model": "m", "input": "x", "temperature": 3]) == "temperature")
        #expect(param(["model": "m", "input": [["type": "message", "role": "robot", "content": "x"]]]) == "input[0].role")
        #expect(param(["model": "m", "input": "x", "previous_response_id": "resp_1", "conversation": "conv_1"]) == "conversation")
        #expect(param(["input": "x"]) == "model")
        #expect(param(["model": "m", "input": "x", "stremm": true]) == "stremm")
        #expect(param(["model": "m", "input": "x", "tools": [["type": "code_interpreter", "container": ["type": "auto"]]]]) == nil)
    }
}

@Suite("Responses: the tool loop and its stream events", .serialized)
struct ResponseLoopTests {
    static let code = "import matplotlib\nprint(6 * 7)"

    @Test func codeRunThenAnswerInOpenAIsEventOrder() async throws {
        let arguments = JSONValue.object(["code": .string(Self.code)]).serialized()
        let turns = [
            AssistantTurn(text: "", toolCalls: [Fixture.call("call_1", "execute_python", arguments)]),
            AssistantTurn(text: "It is 42. [chart](sandbox:/mnt/data/chart.png)", toolCalls: []),
        ]
        let body: JSONValue = ["model": "test-model", "input": "What is 6*7?", "stream": true,
                               "include": ["code_interpreter_call.outputs"],
                               "tools": [["type": "code_interpreter", "container": ["type": "auto"]]]]
        let (response, events, _) = try await Fixture.run(body, turns: turns)
        let types = events.compactMap { $0["type"]?.stringValue }
        // Consecutive duplicates (deltas) collapsed: the order a client sees.
        var order: [String] = []
        for t in types where order.last != t { order.append(t) }
        #expect(order == [
            "response.created", "response.in_progress",
            "response.output_item.added", "response.code_interpreter_call.in_progress",
            "response.code_interpreter_call_code.delta", "response.code_interpreter_call_code.done",
            "response.code_interpreter_call.interpreting", "response.code_interpreter_call.completed", "response.output_item.done",
            "response.output_item.added", "response.content_part.added", "response.output_text.delta",
            "response.output_text.annotation.added", "response.output_text.done", "response.content_part.done",
            "response.output_item.done", "response.completed",
        ])
        #expect(events.map { $0["sequence_number"] } == (0..<events.count).map { .int($0) })
        #expect(types.filter { $0 == "response.code_interpreter_call_code.delta" }.count > 1, "code streams in pieces")
        let deltas = events.filter { $0["type"] == "response.code_interpreter_call_code.delta" }.compactMap { $0["delta"]?.stringValue }
        #expect(deltas.joined() == Self.code)

        #expect(response["status"] == "completed")
        let output = try #require(response["output"]?.arrayValue)
        #expect(output.map { $0["type"] } == ["code_interpreter_call", "message"])
        let call = output[0]
        #expect(call["code"] == .string(Self.code))
        #expect(call["status"] == "completed")
        #expect(call["id"]?.stringValue?.hasPrefix("ci_") == true)
        #expect(call["x_codeinterp"] == nil)
        #expect(call["outputs"] == [["type": "logs", "logs": .string("ran: \(Self.code)\n42")]])
        let text = try #require(output[1]["content"]?.arrayValue?.first)
        #expect(text["text"] == "It is 42. [chart](sandbox:/mnt/data/chart.png)")
        let annotation = try #require(text["annotations"]?.arrayValue?.first)
        #expect(annotation["type"] == "container_file_citation")
        #expect(annotation["container_id"] == call["container_id"])
        #expect(annotation["filename"] == "chart.png")
        let scalars = Array("It is 42. [chart](sandbox:/mnt/data/chart.png)".unicodeScalars)
        let start = try #require(annotation["start_index"]?.intLike), end = try #require(annotation["end_index"]?.intLike)
        #expect(String(String.UnicodeScalarView(scalars[start..<end])) == "sandbox:/mnt/data/chart.png")
        let file = try #require(try Fixture.engine.store.file(id: annotation["file_id"]?.stringValue ?? ""))
        #expect(file.name == "chart.png")
    }

    @Test func secondTurnReusesTheContainerAndWithoutIncludeOutputsAreNull() async throws {
        let first = [AssistantTurn(text: "", toolCalls: [Fixture.call("c1", "execute_python", #"{"code":"x = 1"}"#)]),
                     AssistantTurn(text: "Set.", toolCalls: [])]
        let tools: JSONValue = [["type": "code_interpreter", "container": ["type": "auto"]]]
        let one = try await Fixture.run(["model": "m", "input": "set x", "tools": tools], turns: first)
        // The second response's model turn index continues from the history (2 assistant messages so far).
        let two = try await Fixture.run(["model": "m", "input": "again", "tools": tools,
                                         "previous_response_id": one.response["id"]!], turns: [], service: one.service)
        let c1 = one.response["output"]?.arrayValue?.first
        let c2 = two.response["output"]?.arrayValue?.first
        #expect(c1?["outputs"] == .null)
        #expect(c1?["container_id"] != nil)
        #expect(c2?["container_id"] == c1?["container_id"], "one automatic container per response chain")
        #expect(two.response["previous_response_id"] == one.response["id"])
    }

    @Test func callerFunctionToolsAreHandedBack() async throws {
        let turns = [AssistantTurn(text: "", toolCalls: [Fixture.call("call_w", "get_weather", #"{"city":"Oslo"}"#)]),
                     AssistantTurn(text: "It is sunny in Oslo.", toolCalls: [])]
        let tools: JSONValue = [["type": "function", "name": "get_weather", "parameters": ["type": "object"]]]
        let one = try await Fixture.run(["model": "m", "input": "Weather?", "tools": tools, "stream": true], turns: turns)
        let output = try #require(one.response["output"]?.arrayValue)
        #expect(output.map { $0["type"] } == ["function_call"])
        #expect(output[0]["call_id"] == "call_w")
        #expect(output[0]["arguments"] == #"{"city":"Oslo"}"#)
        #expect(one.events.contains { $0["type"] == "response.function_call_arguments.done" && $0["name"] == "get_weather" })
        let two = try await Fixture.run(["model": "m", "tools": tools, "previous_response_id": one.response["id"]!,
                                         "input": [["type": "function_call_output", "call_id": "call_w", "output": "sunny"]]],
                                        turns: [], service: one.service)
        #expect(two.response["output"]?.arrayValue?.first?["content"]?.arrayValue?.first?["text"] == "It is sunny in Oslo.")
    }
}

@Suite("Responses: upstream streams")
struct UpstreamStreamTests {
    @Test func chatToolCallDeltasSplitAcrossChunksAreMerged() throws {
        var state = ChatTurnState()
        let chunks: [JSONValue] = [
            ["choices": [["index": 0, "delta": ["role": "assistant", "content": "Let me "]]]],
            ["choices": [["index": 0, "delta": ["content": "see."]]]],
            ["choices": [["index": 0, "delta": ["tool_calls": [["index": 0, "id": "call_9", "type": "function",
                                                                  "function": ["name": "execute_python", "arguments": ""]]]]]]],
            ["choices": [["index": 0, "delta": ["tool_calls": [["index": 0, "function": ["arguments": "{\"code\": \"1"]]]]]]],
            ["choices": [["index": 0, "delta": ["tool_calls": [["index": 0, "function": ["arguments": " + 1\"}"]]]]]]],
            ["choices": [["index": 0, "delta": [:], "finish_reason": "tool_calls"]]],
            ["choices": [], "usage": ["prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17]],
        ]
        var events: [UpstreamEvent] = []
        for chunk in chunks { events += try state.feed(chunk: chunk) }
        #expect(events.first == .text("Let me "))
        #expect(events.last == .toolCall(index: 0, id: "call_9", name: "execute_python", argumentsDelta: " + 1\"}"))
        #expect(state.turn == UpstreamTurn(text: "Let me see.", toolCalls: [
            UpstreamToolCall(id: "call_9", name: "execute_python", arguments: #"{"code": "1 + 1"}"#)],
            usage: TokenUsage(input: 12, output: 5)))
        #expect(throws: UpstreamError.self) { try state.feed(chunk: ["error": ["message": "overloaded"]]) }
    }

    @Test func upstreamFailuresBecomeOpenAIErrors() {
        let limited = UpstreamHTTP.httpError(status: 429, body: Array(#"{"error":{"message":"slow"}}"#.utf8), retryAfter: "7", url: "u")
        #expect(limited.apiError.status == 429)
        #expect(limited.apiError.retryAfter == 7)
        #expect(limited.apiError.type == "rate_limit_error")
        let refused = UpstreamHTTP.httpError(status: 401, body: [], retryAfter: nil, url: "u")
        #expect(refused.apiError.status == 502, "the caller's key is fine: the server's upstream key is not")
        #expect(refused.apiError.code == "upstream_authentication_failed")
        #expect(UpstreamHTTP.httpError(status: 503, body: [], retryAfter: nil, url: "u").apiError.code == "upstream_error")
    }

    @Test func theBundledDemoIsTheExampleScript() throws {
        let example = try Data(contentsOf: Fixture.packageRoot.appendingPathComponent("examples/scripted-demo.json"))
        #expect(Array(example) == PackageResources.scripted_demo_json,
                "Sources/Responses/scripted-demo.json must be a copy of examples/scripted-demo.json")
        #expect(try ScriptedUpstream.demo().turns.count == 3)
    }
}

@Suite("Responses: what codeinterp adds")
struct CodeinterpExtensionTests {
    /// A run's native result is stored without URLs (they expire) and shown, with fresh ones, only when asked for.
    @Test func theNativeResultShowsOnlyWithItsIncludeValueAndWithFreshURLs() throws {
        let result = ExecutionResult(id: "exec_1", status: .ok, stdout: "hi\n", result: ["text/html": "<table></table>"],
                                     displays: [Display(mimeType: "image/png", fileId: "f-fig", url: "https://old/fig")],
                                     files: [StoredFileRef(id: "f-csv", name: "a.csv", path: "/mnt/data/a.csv", mimeType: "text/csv",
                                                           sizeBytes: 3, sha256: "x", url: "https://old/csv", storePath: "/host/path")])
        let stored = Items.storedExecution(result)
        #expect(!stored.serialized().contains("https://old"))
        #expect(!stored.serialized().contains("/host/path"))
        let item: JSONValue = ["type": "code_interpreter_call", "id": "ci_1", "code": "print('hi')", "outputs": [],
                               "x_codeinterp": ["model_text": "stdout: hi", "execution": stored]]
        let urls = ClosureFileURLs { "https://signed.test/\($0.id)" }
        #expect(Items.publicForm(item, view: ItemView(include: ["code_interpreter_call.outputs"], urls: urls))["x_codeinterp"] == nil)
        let shown = Items.publicForm(item, view: ItemView(include: ["x_codeinterp.execution"], urls: urls))
        #expect(shown["outputs"] == .null)
        let execution = try #require(shown["x_codeinterp"]?["execution"])
        #expect(shown["x_codeinterp"]?["model_text"] == nil, "what the model was told stays private")
        #expect(execution["stdout"] == "hi\n")
        #expect(execution["files"]?.arrayValue?.first?["url"] == "https://signed.test/f-csv")
        #expect(execution["displays"]?.arrayValue?.first?["url"] == "https://signed.test/f-fig")
        // A message is shown as it was: the include value is about code runs.
        let message: JSONValue = ["type": "message", "id": "msg_1", "role": "user", "content": []]
        #expect(Items.publicForm(message, view: ItemView(include: ["x_codeinterp.execution"], urls: urls)) == message)
        #expect(try ResponseRequest.parse(["model": "m", "input": "x", "include": ["x_codeinterp.execution"]]).include
                == ["x_codeinterp.execution"])
    }

    @Test func theDemoExploresTheFileTheNewestMessageAttaches() throws {
        let file: JSONValue = ["type": "message", "role": "user", "content": [
            ["type": "input_text", "text": "look"], ["type": "input_file", "file_id": "f", "filename": "Q3 sales.xlsx"]]]
        #expect(AttachmentTour.attachment(in: [file])! == ("Q3 sales.xlsx", 0))
        let call: JSONValue = ["type": "code_interpreter_call", "id": "ci_1", "code": "1", "outputs": []]
        #expect(AttachmentTour.attachment(in: [file, call])! == ("Q3 sales.xlsx", 1))
        let later: JSONValue = ["type": "message", "role": "user", "content": [["type": "input_text", "text": "and now?"]]]
        #expect(AttachmentTour.attachment(in: [file, call, later]) == nil, "a later message without a file: the script again")

        let turns = AttachmentTour.turns(for: "Q3 sales.xlsx")
        #expect(turns.count == 3)
        let code = try #require(JSONValue.parse(turns[0].toolCalls[0]["function"]?["arguments"]?.stringValue ?? "")["code"]?.stringValue)
        #expect(code.contains("pd.read_excel(\"/mnt/data/Q3 sales.xlsx\")"))
        #expect(AttachmentTour.chartName(for: "Q3 sales.xlsx") == "Q3_sales-chart.png")
        #expect(turns[2].text.contains("(sandbox:/mnt/data/Q3_sales-chart.png)"))
        #expect(AttachmentTour.python(#"a"b\c.csv"#) == #""a\"b\\c.csv""#)
        #expect(try ScriptedUpstream.demo().exploresAttachments)
        #expect(!(ScriptedUpstream(turns: []).exploresAttachments), "a configured script plays as written")
    }
}

/// A model that writes `text` and then fails (or fails at once when `text` is empty).
struct FailingUpstream: ModelUpstream {
    let text: String
    let error: UpstreamError
    var label: String { "failing" }
    func models() async -> [String] { [] }
    func turn(_ request: UpstreamRequest, onEvent: (UpstreamEvent) async throws -> Void) async throws -> UpstreamTurn {
        if !text.isEmpty { try await onEvent(.text(text)) }
        throw error
    }
}

@Suite("Responses: a failing model")
struct FailingModelTests {
    func run(_ upstream: FailingUpstream, stream: Bool) async throws -> (Result<JSONValue, any Error>, [JSONValue], Bool) {
        let service = try ResponsesService(tool: Fixture.tool, upstream: upstream)
        let events = Mutex<[JSONValue]>([])
        let started = Mutex(false)
        let sink = EventSink(send: { _, e in events.withLock { $0.append(e) } }, started: { started.withLock { $0 = true } })
        let prepared = try service.prepare(try ResponseRequest.parse(["model": "m", "input": "hi", "stream": .bool(stream)]))
        let result: Result<JSONValue, any Error>
        do { result = .success(try await service.run(prepared, sink: stream ? sink : nil, logger: Logger(label: "t"))) } catch {
            result = .failure(error)
        }
        return (result, events.withLock { $0 }, started.withLock { $0 })
    }

    @Test func beforeAnyOutputNothingIsSentAndTheErrorIsThrown() async throws {
        let (result, events, started) = try await run(FailingUpstream(text: "", error: UpstreamError(.rateLimited, "slow", retryAfter: 3)),
                                                      stream: true)
        #expect(events.isEmpty, "response.created was held back, so the caller can still answer 429")
        #expect(!started)
        guard case .failure(let error as ResponsesError) = result else { Issue.record("expected an error"); return }
        #expect(error.status == 429)
        #expect(error.retryAfter == 3)
    }

    @Test func afterOutputTheStreamEndsWithResponseFailed() async throws {
        let (result, events, started) = try await run(FailingUpstream(text: "Partial", error: UpstreamError(.disconnected, "broke off")),
                                                      stream: true)
        #expect(started)
        #expect(events.first?["type"] == "response.created")
        #expect(events.contains { $0["type"] == "response.output_text.delta" && $0["delta"] == "Partial" })
        let last = try #require(events.last)
        #expect(last["type"] == "response.failed")
        #expect(last["response"]?["status"] == "failed")
        #expect(last["response"]?["error"]?["code"] == "upstream_disconnected")
        #expect(last["response"]?["output"]?.arrayValue?.first?["status"] == "incomplete")
        #expect(events.map { $0["sequence_number"] } == (0..<events.count).map { .int($0) })
        guard case .success(let response) = result else { Issue.record("expected the failed response"); return }
        #expect(response["status"] == "failed")
    }

    @Test func notStreamedEveryFailureIsAnError() async throws {
        let (result, _, _) = try await run(FailingUpstream(text: "Partial", error: UpstreamError(.server, "500")), stream: false)
        guard case .failure(let error as ResponsesError) = result else { Issue.record("expected an error"); return }
        #expect(error.status == 502)
        #expect(error.code == "upstream_error")
    }
}
