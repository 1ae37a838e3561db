import Foundation
import InterpreterCore
import NIOCore
import Testing
@testable import Tools

@Suite("Tool definitions")
struct ToolDefinitionTests {
    let definition = ToolDefinition(limits: Limits(wallSeconds: 30, memoryBytes: 1 << 30))

    func keys(_ value: JSONValue?) -> Set<String> { Set(value?.objectValue?.keys ?? [:].keys) }

    /// The subset of JSON Schema the providers accept for tool inputs, checked structurally.
    func checkSchema(_ schema: JSONValue?, strict: Bool) {
        let validTypes: Set<String> = ["string", "number", "integer", "boolean", "object", "array", "null"]
        #expect(schema?["type"] == "object")
        let properties = schema?["properties"]?.objectValue ?? [:]
        #expect(Set(properties.keys) == ["code", "session_id", "timeout_s"])
        for (name, property) in properties {
            let types: [String]
            switch property["type"] {
            case .string(let t)?: types = [t]
            case .array(let ts)?: types = ts.compactMap(\.stringValue)
            default: types = []
            }
            #expect(!types.isEmpty && types.allSatisfy(validTypes.contains), "property \(name)")
            #expect(property["description"]?.stringValue?.isEmpty == false, "property \(name)")
        }
        let required = Set((schema?["required"]?.arrayValue ?? []).compactMap(\.stringValue))
        #expect(required.isSubset(of: Set(properties.keys)))
        #expect(required.contains("code"))
        #expect(schema?["additionalProperties"] == false)
        if strict {
            // OpenAI strict mode: every property required, optional ones nullable.
            #expect(required == Set(properties.keys))
            #expect(properties["session_id"]?["type"] == ["string", "null"])
        } else {
            #expect(required == ["code"])
            #expect(properties["session_id"]?["type"] == "string")
        }
    }

    @Test func chatCompletionsShape() throws {
        let json = definition.json(format: .openAIChat)
        #expect(keys(json) == ["type", "function"])
        #expect(json["type"] == "function")
        #expect(keys(json["function"]) == ["name", "description", "parameters", "strict"])
        #expect(json["function"]?["strict"] == true)
        checkSchema(json["function"]?["parameters"], strict: true)
        let name = try #require(json["function"]?["name"]?.stringValue)
        #expect(name.wholeMatch(of: /[a-zA-Z0-9_-]{1,64}/) != nil)
    }

    @Test func chatCompletionsWithoutStrictOmitsIt() {
        let loose = ToolDefinition(limits: Limits(), strict: false).json(format: .openAIChat)
        #expect(keys(loose["function"]) == ["name", "description", "parameters"])
        checkSchema(loose["function"]?["parameters"], strict: false)
    }

    @Test func responsesShape() {
        let json = definition.json(format: .openAIResponses)
        #expect(keys(json) == ["type", "name", "description", "parameters", "strict"])
        #expect(json["type"] == "function")
        #expect(json["name"] == "execute_python")
        #expect(json["strict"] == true)
        checkSchema(json["parameters"], strict: true)
    }

    @Test func anthropicShape() {
        let json = definition.json(format: .anthropic)
        #expect(keys(json) == ["name", "description", "input_schema"])
        #expect(json["name"] == "execute_python")
        checkSchema(json["input_schema"], strict: false)
    }

    @Test func mcpShape() {
        let json = definition.json(format: .mcp)
        #expect(keys(json) == ["name", "title", "description", "inputSchema", "annotations"])
        checkSchema(json["inputSchema"], strict: false)
        #expect(keys(json["annotations"]).isSuperset(of: ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"]))
        #expect(json["annotations"]?["openWorldHint"] == false)
    }

    @Test func descriptionTellsTheModelWhatTheSandboxOffers() throws {
        let text = definition.description
        for needle in ["numpy", "pandas", "matplotlib", "scipy", "seaborn", "scikit-learn", "sympy", "openpyxl", "PIL",
                       "reportlab", "/mnt/data", "no network", "30 s", "1 GB", "persists", "last expression",
                       "plt.show()", "sandbox:/mnt/data/"] {
            #expect(text.contains(needle), "description lacks \(needle)")
        }
        let tighter = ToolDefinition(limits: Limits(wallSeconds: 7.5, memoryBytes: 512 << 20)).description
        #expect(tighter.contains("7.5 s") && tighter.contains("512 MB"))
        // Providers cap descriptions (OpenAI: 1024 characters for function descriptions in some clients).
        #expect(text.count <= 1024)
    }
}

@Suite("Tool call parsing")
struct ToolCallParsingTests {
    @Test func detectsEachShape() throws {
        let chat = try ToolCall.parse(["id": "call_1", "type": "function",
                                       "function": ["name": "execute_python", "arguments": "{\"code\":\"1+1\",\"session_id\":null}"]])
        #expect(chat.shape == .openAIChat && chat.callId == "call_1")
        #expect(try chat.arguments.get() == ExecutePythonArguments(code: "1+1"))

        let responses = try ToolCall.parse(["type": "function_call", "id": "fc_9", "call_id": "call_2", "name": "execute_python",
                                            "arguments": "{\"code\":\"2\",\"session_id\":\"abc\"}"])
        #expect(responses.shape == .openAIResponses && responses.callId == "call_2")
        #expect(try responses.arguments.get() == ExecutePythonArguments(code: "2", sessionId: "abc"))

        let anthropic = try ToolCall.parse(["type": "tool_use", "id": "toolu_3", "name": "execute_python", "input": ["code": "3"]])
        #expect(anthropic.shape == .anthropic && anthropic.callId == "toolu_3")
        #expect(try anthropic.arguments.get().code == "3")
    }

    func problem(_ call: JSONValue) throws -> String {
        let parsed = try ToolCall.parse(call)
        guard case .failure(let error) = parsed.arguments else { Issue.record("expected a problem"); return "" }
        return error.message
    }

    @Test func badArgumentsAreExplainedToTheModel() throws {
        let notJSON = try problem(["id": "c", "type": "function", "function": ["name": "execute_python", "arguments": "{code: print(1)"]])
        #expect(notJSON.contains("not valid JSON"))
        let missing = try problem(["type": "tool_use", "id": "t", "name": "execute_python", "input": ["script": "print(1)"]])
        #expect(missing.contains("\"code\"") && missing.contains("script"))
        let wrongType = try problem(["type": "function_call", "call_id": "c", "name": "execute_python", "arguments": "{\"code\": 42}"])
        #expect(wrongType.contains("must be a string") && wrongType.contains("number"))
        let typo = try problem(["type": "tool_use", "id": "t", "name": "execute_python", "input": ["code": "1", "timeout": 2]])
        #expect(typo.contains("Unknown argument(s): timeout") && typo.contains("not run"))
        let badTimeout = try problem(["type": "tool_use", "id": "t", "name": "execute_python", "input": ["code": "1", "timeout_s": -1]])
        #expect(badTimeout.contains("timeout_s"))
        let timed = try ToolCall.parse(["type": "tool_use", "id": "t", "name": "execute_python", "input": ["code": "1", "timeout_s": 2]])
        #expect(try timed.arguments.get() == ExecutePythonArguments(code: "1", timeoutSeconds: 2))
        let wrongSession = try problem(["type": "tool_use", "id": "t", "name": "execute_python", "input": ["code": "1", "session_id": 5]])
        #expect(wrongSession.contains("session_id"))
        let wrongTool = try problem(["type": "tool_use", "id": "t", "name": "run_code", "input": ["code": "1"]])
        #expect(wrongTool.contains("run_code") && wrongTool.contains("execute_python"))
        let empty = try problem(["type": "tool_use", "id": "t", "name": "execute_python", "input": ["code": "  \n"]])
        #expect(empty.contains("empty"))
        let array = try problem(["id": "c", "type": "function", "function": ["name": "execute_python", "arguments": "[1]"]])
        #expect(array.contains("JSON object"))
    }

    @Test func unrecognisableCallsThrow() {
        #expect(throws: ToolCallError.self) { try ToolCall.parse(["name": "execute_python", "code": "1"]) }
        #expect(throws: ToolCallError.self) { try ToolCall.parse("execute_python") }
    }
}

@Suite("Link resolution")
struct LinkResolverTests {
    let urls = ClosureFileURLs { "https://files.example/\($0.id)/\($0.name)" }
    let files = [
        FileReference(id: "f1", name: "chart.png", path: "/mnt/data/chart.png", mimeType: "image/png", sizeBytes: 10, sessionId: "s"),
        FileReference(id: "f2", name: "my report.csv", path: "/mnt/data/out/my report.csv", mimeType: "text/csv", sizeBytes: 5, sessionId: "s"),
    ]

    func span(_ text: String, _ c: FileCitation) -> String {
        String(String.UnicodeScalarView(Array(text.unicodeScalars)[c.startIndex..<c.endIndex]))
    }

    @Test func rewritesMarkdownAndBareLinksWithSpans() throws {
        let text = "Voilà — [the chart](sandbox:/mnt/data/chart.png) and [data](sandbox:/mnt/data/out/my report.csv).\n"
            + "Bare: sandbox:/mnt/data/chart.png. Missing: [x](sandbox:/mnt/data/nope.txt)"
        let r = LinkResolver.resolve(text, files: files, containerId: "s", urls: urls)
        #expect(r.text == "Voilà — [the chart](https://files.example/f1/chart.png) and [data](https://files.example/f2/my report.csv).\n"
            + "Bare: https://files.example/f1/chart.png. Missing: [x](sandbox:/mnt/data/nope.txt)")
        #expect(r.citations.map(\.fileId) == ["f1", "f2", "f1"])
        for c in r.citations {
            #expect(span(r.text, c) == c.url)
            #expect(c.containerId == "s" && c.type == "container_file_citation")
        }
        #expect(r.citations[1].filename == "my report.csv")
        #expect(r.unresolved == ["/mnt/data/nope.txt"])
        let json = r.citations[0].json
        #expect(Set(json.objectValue!.keys).isSuperset(of: ["type", "container_id", "file_id", "filename", "start_index", "end_index"]))
    }

    @Test func percentEncodedNamesAndTextWithoutLinks() {
        let r = LinkResolver.resolve("[r](sandbox:/mnt/data/out/my%20report.csv)", files: files, containerId: "s", urls: urls)
        #expect(r.citations.first?.fileId == "f2")
        let plain = LinkResolver.resolve("no links here, sandbox: only", files: files, containerId: "s", urls: urls)
        #expect(plain.text == "no links here, sandbox: only" && plain.citations.isEmpty && plain.unresolved.isEmpty)
    }
}

@Suite("Chat Completions streaming")
struct StreamTests {
    @Test func accumulatesTextAndToolCallDeltasByIndex() throws {
        var acc = ChatStreamAccumulator()
        let lines = [
            #"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":"Let me "}}]}"#,
            "",
            #"data: {"choices":[{"index":0,"delta":{"content":"compute."}}]}"#,
            #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"execute_python","arguments":""}}]}}]}"#,
            #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"execute_python","arguments":"{\"code\":"}}]}}]}"#,
            #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"code\": \"1+1\"}"}}]}}]}"#,
            #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":" \"2\"}"}}]}}]}"#,
            #"data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "data: [DONE]",
        ]
        var streamed = ""
        for line in lines { if let t = try acc.feed(line: line + "\r") { streamed += t } }
        #expect(streamed == "Let me compute.")
        #expect(acc.done && acc.finishReason == "tool_calls")
        let turn = acc.turn
        #expect(turn.toolCalls.count == 2)
        #expect(turn.toolCalls[0]["id"] == "call_a")
        #expect(turn.toolCalls[0]["function"]?["arguments"] == "{\"code\": \"1+1\"}")
        #expect(turn.toolCalls[1]["function"]?["arguments"] == "{\"code\": \"2\"}")
        #expect(try ToolCall.parse(turn.toolCalls[1]).arguments.get().code == "2")
    }

    @Test func aStreamIsReadAsServerSentEventsWhateverItsLineEnds() async throws {
        // CRLF line ends, a comment, one chunk object spread over two data lines, and a last event the server
        // ended without its blank line.
        let stream = ": keep-alive\r\n\r\n"
            + "data: {\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\"4\"}}]}\r\n\r\n"
            + "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n"
            + "data: [DONE]"
        var acc = ChatStreamAccumulator()
        var streamed = ""
        try await ModelServerBody.forEachEvent(in: .bytes(ByteBuffer(string: stream))) { event in
            if let t = try acc.feed(data: event.data) { streamed += t }
            return !acc.done
        }
        #expect(streamed == "4")
        #expect(acc.done && acc.finishReason == "stop")
    }

    @Test func errorsInTheStreamAreReported() {
        var acc = ChatStreamAccumulator()
        #expect(throws: ProviderError.self) { try acc.feed(line: #"data: {"error":{"message":"model overloaded"}}"#) }
    }

    @Test func retryAfterIsHonoured() {
        #expect(OpenAIChatProvider.retryDelay(retryAfter: "7", attempt: 0, cap: 60) == 7)
        #expect(OpenAIChatProvider.retryDelay(retryAfter: "600", attempt: 0, cap: 60) == 60)
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        let date = "Tue, 14 Nov 2023 22:13:40 GMT"  // now + 20 s
        #expect(OpenAIChatProvider.retryDelay(retryAfter: date, attempt: 0, cap: 60, now: now) == 20)
        #expect(OpenAIChatProvider.retryDelay(retryAfter: nil, attempt: 3, cap: 60) == 8)
    }

    @Test func httpErrorsSayWhatWentWrong() {
        let body = Array(#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#.utf8)
        let text = OpenAIChatProvider.describeHTTPError(status: 401, body: body, url: "u", attempts: 1)
        #expect(text.contains("401") && text.contains("Incorrect API key provided"))
    }
}
