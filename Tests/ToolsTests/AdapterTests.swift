import FileStore
import Foundation
import InterpreterCore
import MCP
import Sandbox
import Testing
@testable import Tools

let chartCode = """
import matplotlib.pyplot as plt
plt.plot([1, 3, 2])
plt.title("trend")
plt.savefig("chart.png")
plt.show()
"""

func isPNG(base64: String?) -> Bool {
    guard let base64, let data = Data(base64Encoded: base64) else { return false }
    return data.starts(with: [0x89, 0x50, 0x4E, 0x47])
}

@Suite("Call adapter with a real engine", .serialized)
struct AdapterTests {
    let tool = ToolFixture.tool

    @Test func responsesCallWithAChartGetsAnImage() async throws {
        let call: JSONValue = ["type": "function_call", "id": "fc_1", "call_id": "call_r", "name": "execute_python",
                               "arguments": .string(JSONValue.object(["code": .string(chartCode), "session_id": .null]).serialized())]
        let message = try await tool.respond(to: call, conversationId: ToolFixture.conversation())
        #expect(message["type"] == "function_call_output")
        #expect(message["call_id"] == "call_r")
        let output = try #require(message["output"]?.arrayValue)
        #expect(output.first?["type"] == "input_text")
        let text = try #require(output.first?["text"]?.stringValue)
        #expect(text.contains("https://ci.example/files/"), "\(text)")
        #expect(text.contains("sandbox:/mnt/data/chart.png"))
        let image = try #require(output.first { $0["type"] == "input_image" })
        let url = try #require(image["image_url"]?.stringValue)
        #expect(url.hasPrefix("data:image/png;base64,"))
        #expect(isPNG(base64: String(url.dropFirst("data:image/png;base64,".count))))
    }

    @Test func anthropicCallWithAChartGetsAnImageBlock() async throws {
        let call: JSONValue = ["type": "tool_use", "id": "toolu_1", "name": "execute_python", "input": ["code": .string(chartCode)]]
        let message = try await tool.respond(to: call, conversationId: ToolFixture.conversation())
        #expect(message["type"] == "tool_result")
        #expect(message["tool_use_id"] == "toolu_1")
        #expect(message["is_error"] == false)
        let content = try #require(message["content"]?.arrayValue)
        #expect(content.first?["type"] == "text")
        let image = try #require(content.first { $0["type"] == "image" })
        #expect(image["source"]?["type"] == "base64")
        #expect(image["source"]?["media_type"] == "image/png")
        #expect(isPNG(base64: image["source"]?["data"]?.stringValue))
    }

    @Test func chatCompletionsCallWithAChartGetsLinksOnly() async throws {
        let call: JSONValue = ["id": "call_c", "type": "function",
                               "function": ["name": "execute_python", "arguments": .string(JSONValue.object(["code": .string(chartCode)]).serialized())]]
        let message = try await tool.respond(to: call, conversationId: ToolFixture.conversation())
        #expect(Set(message.objectValue?.keys ?? [:].keys) == ["role", "tool_call_id", "content"])
        #expect(message["role"] == "tool")
        #expect(message["tool_call_id"] == "call_c")
        let content = try #require(message["content"]?.stringValue)
        #expect(content.contains("[chart.png](https://ci.example/files/"), "\(content)")
        #expect(content.contains("figures:"))
        #expect(!content.contains("base64"))
    }

    @Test func valueStdoutAndTracebackReachTheModel() async throws {
        let conversation = ToolFixture.conversation()
        let ok = try await tool.respond(to: ["type": "tool_use", "id": "a", "name": "execute_python",
                                             "input": ["code": "print('hello')\nx = 41\nx + 1"]], conversationId: conversation)
        let okText = try #require(ok["content"]?.arrayValue?.first?["text"]?.stringValue)
        #expect(okText.contains("hello") && okText.contains("42"))
        #expect(ok["is_error"] == false)

        let failed = try await tool.respond(to: ["type": "tool_use", "id": "b", "name": "execute_python",
                                                 "input": ["code": "def f():\n    return x / 0\nf()"]], conversationId: conversation)
        #expect(failed["is_error"] == true)
        let text = try #require(failed["content"]?.arrayValue?.first?["text"]?.stringValue)
        #expect(text.contains("ZeroDivisionError"))
        #expect(text.contains("return x / 0"), "the traceback shows the failing line: \(text)")
    }

    @Test func badArgumentsGiveAToolResultNotAnError() async throws {
        let chat = try await tool.respond(to: ["id": "call_x", "type": "function",
                                               "function": ["name": "execute_python", "arguments": "{\"code\": print(1)}"]],
                                          conversationId: nil)
        #expect(chat["role"] == "tool" && chat["tool_call_id"] == "call_x")
        #expect(chat["content"]?.stringValue?.contains("not valid JSON") == true)

        let anthropic = try await tool.respond(to: ["type": "tool_use", "id": "t", "name": "execute_python", "input": ["source": "1"]],
                                               conversationId: nil)
        #expect(anthropic["is_error"] == true)
        #expect(anthropic["content"]?.arrayValue?.first?["text"]?.stringValue?.contains("Missing the required argument \"code\"") == true)

        let responses = try await tool.respond(to: ["type": "function_call", "call_id": "c", "name": "python", "arguments": "{}"],
                                               conversationId: nil)
        #expect(responses["output"]?.arrayValue?.first?["text"]?.stringValue?.contains("no tool named \"python\"") == true)
    }

    @Test func stoppedRunsAreErrorsThatNameTheLimit() {
        let timeout = tool.describe(ExecutionResult(id: "exec_t", status: .timeout), sessionId: nil, notice: nil)
        #expect(timeout.isError)
        #expect(timeout.text.contains("longer than the 30 s limit"))
        let memory = tool.describe(ExecutionResult(id: "exec_m", status: .memoryLimit), sessionId: nil, notice: nil)
        #expect(memory.isError && memory.text.contains("1 GB memory limit"))
        let blocked = tool.describe(ExecutionResult(id: "exec_b", status: .blockedSyscall, blockedSyscall: "ptrace"),
                                    sessionId: nil, notice: nil)
        #expect(blocked.isError && blocked.text.contains("ptrace"))
        let anthropic = timeout.message(for: .anthropic, callId: "t")
        #expect(anthropic["is_error"] == true)
    }

    @Test
    func realTimeoutIsAnErrorThatSaysSo() async throws {
        let message = try await tool.respond(
            to: ["type": "tool_use", "id": "t", "name": "execute_python", "input": ["code": "while True: pass"]],
            conversationId: ToolFixture.conversation())
        #expect(message["is_error"] == true)
        let text = message["content"]?.arrayValue?.first?["text"]?.stringValue ?? ""
        #expect(text.contains("longer than the 30 s limit"), "\(text)")
    }
}

@Suite("Conversations and links with a real engine", .serialized)
struct ConversationTests {
    @Test func stateAndFilesPersistWithinAConversation() async throws {
        let tool = ToolFixture.tool
        let conversation = ToolFixture.conversation()
        _ = await tool.run(ExecutePythonArguments(code: "x = 41\nopen('a.txt', 'w').write('kept')"), conversationId: conversation)
        let second = await tool.run(ExecutePythonArguments(code: "x + 1, open('a.txt').read()"), conversationId: conversation)
        #expect(second.result?.result?["text/plain"] == "(42, 'kept')")
        // Another conversation is another session.
        let other = await tool.run(ExecutePythonArguments(code: "'x' in globals()"), conversationId: ToolFixture.conversation())
        #expect(other.result?.result?["text/plain"] == "False")
    }

    @Test func withoutAConversationTheModelGetsASessionIdToReuse() async throws {
        let tool = ToolFixture.tool
        let first = await tool.run(ExecutePythonArguments(code: "y = 7"), conversationId: nil)
        let sessionId = try #require(first.sessionId)
        #expect(first.text.contains("session_id \(sessionId)"))
        let second = await tool.run(ExecutePythonArguments(code: "y * 6", sessionId: sessionId), conversationId: nil)
        #expect(second.result?.result?["text/plain"] == "42")
        let gone = await tool.run(ExecutePythonArguments(code: "1", sessionId: "00000000-0000-0000-0000-000000000000"), conversationId: nil)
        #expect(gone.text.contains("does not exist"))
    }

    @Test func deletedSessionIsReplacedAndTheModelIsTold() async throws {
        let tool = ToolFixture.tool
        let conversation = ToolFixture.conversation()
        let first = await tool.run(ExecutePythonArguments(code: "z = 1"), conversationId: conversation)
        let old = try #require(first.sessionId)
        try ToolFixture.engine.deleteSession(id: old)
        let second = await tool.run(ExecutePythonArguments(code: "'z' in globals()"), conversationId: conversation)
        #expect(second.sessionId != old)
        #expect(second.result?.result?["text/plain"] == "False")
        #expect(second.text.contains("expired or was deleted"))
        let third = await tool.run(ExecutePythonArguments(code: "1"), conversationId: conversation)
        #expect(third.sessionId == second.sessionId && !third.text.contains("expired"))
    }

    @Test func conversationKeepsItsSessionAcrossANewEngine() async throws {
        let dir = ToolFixture.makeDataDirectory("restart")
        let conversation = "bot-chat-1"
        var sessionId: String?
        do {
            let engine = try ToolFixture.makeEngine(dataDirectory: dir)
            defer { engine.shutdown() }
            let tool = try PythonTool(engine: engine, urls: ToolFixture.urls)
            let outcome = await tool.run(ExecutePythonArguments(code: "open('notes.txt', 'w').write('from before the restart')"),
                                         conversationId: conversation)
            #expect(outcome.result?.status == .ok)
            sessionId = outcome.sessionId
        }
        let engine = try ToolFixture.makeEngine(dataDirectory: dir)
        defer { engine.shutdown() }
        let tool = try PythonTool(engine: engine, urls: ToolFixture.urls)
        let outcome = await tool.run(ExecutePythonArguments(code: "open('notes.txt').read()"), conversationId: conversation)
        #expect(outcome.sessionId == sessionId)
        #expect(outcome.result?.result?["text/plain"] == "'from before the restart'")
        #expect(!outcome.text.contains("expired"))
    }

    @Test func answerLinksResolveToTheConversationsFiles() async throws {
        let tool = ToolFixture.tool
        let conversation = ToolFixture.conversation()
        let outcome = await tool.run(ExecutePythonArguments(code: chartCode), conversationId: conversation)
        let chart = try #require(outcome.files.first { $0.file.name == "chart.png" })
        let answer = "Here: [chart](sandbox:/mnt/data/chart.png). Also sandbox:/mnt/data/missing.csv"
        let resolved = await tool.resolveLinks(in: answer, conversationId: conversation)
        #expect(resolved.citations.count == 1)
        let citation = try #require(resolved.citations.first)
        #expect(citation.fileId == chart.file.id)
        #expect(citation.containerId == outcome.sessionId)
        #expect(resolved.text.contains("[chart](\(chart.url))"))
        #expect(resolved.unresolved == ["/mnt/data/missing.csv"])
    }
}

@Suite("MCP handler with a real engine", .serialized)
struct MCPHandlerTests {
    let handler = MCPToolHandler(tool: ToolFixture.tool, conversationId: ToolFixture.conversation())

    @Test func listsExecutePython() throws {
        let tools = handler.listTools().tools
        #expect(tools.map(\.name) == ["execute_python"])
        let encoded = try JSONValue.parse(JSONEncoder().encode(tools[0]))
        #expect(encoded["inputSchema"]?["required"] == ["code"])
        #expect(encoded["title"] != nil && encoded["annotations"]?["readOnlyHint"] == false)
    }

    @Test func chartComesBackAsImageAndResourceLink() async throws {
        let result = try await handler.callTool(.init(name: "execute_python", arguments: ["code": .string(chartCode)]))
        #expect(result.isError == false)
        let encoded = try JSONValue.parse(JSONEncoder().encode(result))
        let content = try #require(encoded["content"]?.arrayValue)
        let image = try #require(content.first { $0["type"] == "image" })
        #expect(image["mimeType"] == "image/png" && isPNG(base64: image["data"]?.stringValue))
        let link = try #require(content.first { $0["type"] == "resource_link" })
        #expect(link["name"] == "chart.png" && link["mimeType"] == "image/png")
        #expect(link["uri"]?.stringValue?.hasPrefix("https://ci.example/files/") == true)
    }

    @Test func raisingCodeIsAnErrorResultAndUnknownToolsAreProtocolErrors() async throws {
        let result = try await handler.callTool(.init(name: "execute_python", arguments: ["code": "raise ValueError('bad input')"]))
        #expect(result.isError == true)
        guard case .text(let text, _, _)? = result.content.first else { Issue.record("no text"); return }
        #expect(text.contains("ValueError: bad input"))
        await #expect(throws: MCPError.self) { try await handler.callTool(.init(name: "shell", arguments: [:])) }
        let missing = try await handler.callTool(.init(name: "execute_python", arguments: [:]))
        #expect(missing.isError == true)
    }
}
