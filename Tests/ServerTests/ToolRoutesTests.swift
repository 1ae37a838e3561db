import AsyncHTTPClient
import Foundation
import Hummingbird
import Server
import Testing

/// The tool routes over real HTTP: what a chat backend running its own model loop, or an MCP host, sees.
@Suite("HTTP: tools, tool calls, links, MCP", .serialized)
struct ToolRoutesTests {
    static let chart = """
        import matplotlib.pyplot as plt
        plt.plot([1, 3, 2])
        plt.title("tools")
        plt.show()
        """

    func call(_ server: TestServer, _ call: [String: Any], conversation: String? = nil) async throws -> TestServer.Reply {
        var body: [String: Any] = ["call": call]
        if let conversation { body["conversation_id"] = conversation }
        return try await server.request(.post, "/v1/tools/call", json: body)
    }

    func chatCall(_ code: String, id: String = "call_1") -> [String: Any] {
        let arguments = String(decoding: try! JSONSerialization.data(withJSONObject: ["code": code]), as: UTF8.self)
        return ["id": id, "type": "function", "function": ["name": "execute_python", "arguments": arguments]]
    }

    static func isPNG(_ data: Data) -> Bool { data.starts(with: [0x89, 0x50, 0x4E, 0x47]) }

    @Test func definitionInEachFormat() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let chat = try await server.request(.get, "/v1/tools?format=openai-chat").json()
        #expect(chat["type"] as? String == "function")
        let function = try #require(chat["function"] as? [String: Any])
        #expect(function["name"] as? String == "execute_python")
        #expect((function["parameters"] as? [String: Any])?["type"] as? String == "object")
        #expect((function["description"] as? String)?.contains("/mnt/data") == true)

        let byDefault = try await server.request(.get, "/v1/tools").json()
        #expect((byDefault["function"] as? [String: Any])?["name"] as? String == "execute_python")

        let responses = try await server.request(.get, "/v1/tools?format=openai-responses").json()
        #expect(responses["type"] as? String == "function")
        #expect(responses["name"] as? String == "execute_python")
        #expect(responses["parameters"] is [String: Any])

        let anthropic = try await server.request(.get, "/v1/tools?format=anthropic").json()
        #expect(anthropic["name"] as? String == "execute_python")
        #expect((anthropic["input_schema"] as? [String: Any])?["required"] as? [String] == ["code"])
        #expect(anthropic["type"] == nil)

        let mcp = try await server.request(.get, "/v1/tools?format=mcp").json()
        #expect(mcp["name"] as? String == "execute_python")
        #expect(mcp["inputSchema"] is [String: Any])

        let unknown = try await server.request(.get, "/v1/tools?format=gemini")
        #expect(unknown.status == 400)
        let message = try #require(try unknown.envelope()["message"] as? String)
        for valid in ["openai-chat", "openai-responses", "anthropic", "mcp"] { #expect(message.contains(valid), "\(message)") }
    }

    @Test func chatCallLinksTheFigureWithASignedURLThatDownloads() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let reply = try await call(server, chatCall(Self.chart, id: "call_chat"), conversation: "conv-chat-\(UUID())")
        #expect(reply.status == 200)
        let message = try reply.json()
        #expect(message["role"] as? String == "tool")
        #expect(message["tool_call_id"] as? String == "call_chat")
        let content = try #require(message["content"] as? String, "Chat tool results are text only")
        let url = try #require(content.firstMatch(of: /\((http:\/\/127\.0\.0\.1:\d+\/v1\/files\/[^)]+\/content\?expires=\d+&sig=[0-9a-f]+)\)/)?.1,
                               "no signed link in: \(content)")
        let download = try await server.request(.get, String(url), key: nil)
        #expect(download.status == 200)
        #expect(download.header("Content-Type")?.hasPrefix("image/png") == true)
        #expect(Self.isPNG(download.body))
    }

    @Test func responsesCallGetsTheFigureAsAnInputImage() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let arguments = String(decoding: try JSONSerialization.data(withJSONObject: ["code": Self.chart]), as: UTF8.self)
        let reply = try await call(server, ["type": "function_call", "call_id": "call_resp", "name": "execute_python",
                                            "arguments": arguments])
        #expect(reply.status == 200)
        let item = try reply.json()
        #expect(item["type"] as? String == "function_call_output")
        #expect(item["call_id"] as? String == "call_resp")
        let output = try #require(item["output"] as? [[String: Any]])
        #expect(output.first?["type"] as? String == "input_text")
        let image = try #require(output.first { $0["type"] as? String == "input_image" }?["image_url"] as? String)
        #expect(image.hasPrefix("data:image/png;base64,"))
        let png = try #require(Data(base64Encoded: String(image.dropFirst("data:image/png;base64,".count))))
        #expect(Self.isPNG(png))
    }

    @Test func anthropicCallGetsTheFigureAsAnImageBlock() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let reply = try await call(server, ["type": "tool_use", "id": "toolu_1", "name": "execute_python",
                                            "input": ["code": Self.chart + "\nprint('drawn')"]])
        #expect(reply.status == 200)
        let block = try reply.json()
        #expect(block["type"] as? String == "tool_result")
        #expect(block["tool_use_id"] as? String == "toolu_1")
        #expect(block["is_error"] as? Bool == false)
        let content = try #require(block["content"] as? [[String: Any]])
        #expect((content.first?["text"] as? String)?.contains("drawn") == true)
        let source = try #require(content.first { $0["type"] as? String == "image" }?["source"] as? [String: Any])
        #expect(source["type"] as? String == "base64")
        #expect(source["media_type"] as? String == "image/png")
        let data = try #require(source["data"] as? String)
        #expect(Self.isPNG(try #require(Data(base64Encoded: data))))
    }

    @Test func badArgumentsAreAToolResultNotAnHTTPError() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let notJSON = try await call(server, ["id": "call_bad", "type": "function",
                                              "function": ["name": "execute_python", "arguments": "{code: print(1)"]])
        #expect(notJSON.status == 200)
        let notJSONText = try #require(try notJSON.json()["content"] as? String)
        #expect(notJSONText.contains("not valid JSON"), "\(notJSONText)")

        let noCode = try await call(server, ["type": "tool_use", "id": "toolu_bad", "name": "execute_python", "input": ["source": "1"]])
        #expect(noCode.status == 200)
        let block = try noCode.json()
        #expect(block["is_error"] as? Bool == true)
        let text = try #require((block["content"] as? [[String: Any]])?.first?["text"] as? String)
        #expect(text.contains("\"code\""), "\(text)")
        #expect(text.contains("source"), "the unknown argument is named: \(text)")

        let wrongTool = try await call(server, ["type": "function_call", "call_id": "c", "name": "shell", "arguments": "{}"])
        #expect(wrongTool.status == 200)
        let wrongText = try #require((try wrongTool.json()["output"] as? [[String: Any]])?.first?["text"] as? String)
        #expect(wrongText.contains("shell") && wrongText.contains("execute_python"), "\(wrongText)")

        // Not a call at all: nothing could answer it, so the request itself is wrong.
        let notACall = try await server.request(.post, "/v1/tools/call", json: ["call": ["hello": "world"]])
        #expect(notACall.status == 400)
        #expect(try notACall.envelope()["param"] as? String == "call")
        let missing = try await server.request(.post, "/v1/tools/call", json: ["conversation": "x"])
        #expect(missing.status == 400)
        #expect(try missing.envelope()["message"] as? String == "unknown field \"conversation\" (accepted: call, conversation_id)")
    }

    @Test func aConversationKeepsItsStateAcrossCalls() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let conversation = "conv-state-\(UUID())"
        let first = try await call(server, chatCall("answer = 41\nprint('set')"), conversation: conversation)
        #expect(try first.json()["content"] as? String == "stdout:\nset")
        let session = try #require(first.header("X-Codeinterp-Session-Id"))
        let second = try await call(server, chatCall("answer + 1", id: "call_2"), conversation: conversation)
        #expect((try second.json()["content"] as? String)?.contains("42") == true)
        #expect(second.header("X-Codeinterp-Session-Id") == session)
        // Another conversation has its own interpreter.
        let other = try await call(server, chatCall("answer"), conversation: "conv-other-\(UUID())")
        #expect((try other.json()["content"] as? String)?.contains("NameError") == true)
        #expect(other.header("X-Codeinterp-Session-Id") != session)
    }

    @Test func linksResolveToSignedURLsWithSpans() async throws {
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        let conversation = "conv-links-\(UUID())"
        let wrote = try await call(server, chatCall("open('report.csv', 'w').write('a,b\\n1,2\\n')"), conversation: conversation)
        #expect(wrote.status == 200)
        let answer = "Here it is: [report.csv](sandbox:/mnt/data/report.csv). Also sandbox:/mnt/data/missing.txt"
        let reply = try await server.request(.post, "/v1/links/resolve", json: ["text": answer, "conversation_id": conversation])
        #expect(reply.status == 200)
        let resolved = try reply.json()
        let text = try #require(resolved["text"] as? String)
        #expect(!text.contains("sandbox:/mnt/data/report.csv"))
        #expect(resolved["unresolved"] as? [String] == ["/mnt/data/missing.txt"])
        let annotations = try #require(resolved["annotations"] as? [[String: Any]])
        #expect(annotations.count == 1)
        let citation = try #require(annotations.first)
        #expect(citation["type"] as? String == "container_file_citation")
        #expect(citation["filename"] as? String == "report.csv")
        let start = try #require(citation["start_index"] as? Int), end = try #require(citation["end_index"] as? Int)
        let scalars = Array(text.unicodeScalars)
        let span = String(String.UnicodeScalarView(scalars[start..<end]))
        #expect(span == citation["url"] as? String)
        #expect(span.hasPrefix(server.base + "/v1/files/"))
        let download = try await server.request(.get, span, key: nil)
        #expect(download.status == 200)
        #expect(download.text == "a,b\n1,2\n")

        let unknown = try await server.request(.post, "/v1/links/resolve", json: ["text": answer, "conversation_id": "never-used"])
        #expect(try unknown.json()["unresolved"] as? [String] == ["/mnt/data/report.csv", "/mnt/data/missing.txt"])
    }

    static var initialize: [String: Any] {[
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": ["protocolVersion": "2025-11-25", "capabilities": [String: Any](),
                   "clientInfo": ["name": "tests", "version": "1"]],
    ]}
    static let mcpAccept = ("Accept", "application/json, text/event-stream")

    @Test func mcpChecksTheKeyAndTheOrigin() async throws {
        let server = try await TestServer.start { $0.corsOrigins = ["https://app.example.com"] }
        defer { Task { await server.stop() } }
        let noKey = try await server.request(.post, "/mcp", key: nil, headers: [Self.mcpAccept], json: Self.initialize)
        #expect(noKey.status == 401)
        #expect(try noKey.envelope()["type"] as? String == "authentication_error")

        let evil = try await server.request(.post, "/mcp", headers: [Self.mcpAccept, ("Origin", "https://evil.example.com")],
                                            json: Self.initialize)
        #expect(evil.status == 403)
        #expect(try evil.envelope()["code"] as? String == "origin_not_allowed")
        #expect(evil.header("Mcp-Session-Id") == nil)

        // The configured origin gets an MCP session, answered over SSE.
        let allowed = try await server.request(.post, "/mcp", headers: [Self.mcpAccept, ("Origin", "https://app.example.com")],
                                               json: Self.initialize)
        #expect(allowed.status == 200)
        #expect(allowed.header("Content-Type")?.hasPrefix("text/event-stream") == true)
        let session = try #require(allowed.header("Mcp-Session-Id"))
        // A page on that origin may read the session id (CORS exposes it).
        #expect(allowed.header("Access-Control-Allow-Origin") == "https://app.example.com")
        #expect(allowed.header("Access-Control-Expose-Headers")?.contains("Mcp-Session-Id") == true)
        #expect(allowed.text.contains("\"serverInfo\""), "\(allowed.text)")

        let list = try await server.request(.post, "/mcp", headers: [Self.mcpAccept, ("Mcp-Session-Id", session),
                                                                     ("MCP-Protocol-Version", "2025-11-25")],
                                            json: ["jsonrpc": "2.0", "id": 2, "method": "tools/list"])
        #expect(list.status == 200)
        #expect(list.text.contains("\"execute_python\""), "\(list.text)")
        let ended = try await server.request(.delete, "/mcp", headers: [("Mcp-Session-Id", session)])
        #expect(ended.status == 200)
        let after = try await server.request(.post, "/mcp", headers: [Self.mcpAccept, ("Mcp-Session-Id", session)],
                                             json: ["jsonrpc": "2.0", "id": 3, "method": "tools/list"])
        #expect(after.status == 404)
    }

    /// A tool call is an execution like `/v1/execute`: counted in /metrics, and refused while the queue is full
    /// (as a result that tells the model to call again, not a hang behind the running code).
    @Test func toolCallsShareTheQueueAndTheMetricsOfExecutions() async throws {
        let server = try await TestServer.start {
            $0.maxConcurrentExecutions = 1
            $0.maxQueuedExecutions = 0
        }
        defer { Task { await server.stop() } }
        let ran = try await call(server, chatCall("print(6 * 7)", id: "call_counted"))
        #expect(ran.status == 200)
        #expect((try ran.json()["content"] as? String)?.contains("42") == true)
        var metrics = try await server.request(.get, "/metrics").text
        #expect(metrics.contains("codeinterp_executions_total{status=\"ok\"} 1\n"), "\(metrics)")

        var reader = try await server.stream("import time\nprint('started', flush=True)\ntime.sleep(20)")
        #expect(try await reader.next()?.name == "stdout")
        let refused = try await call(server, chatCall("print('never')", id: "call_refused"))
        #expect(refused.status == 200)
        let content = try #require(try refused.json()["content"] as? String)
        #expect(content.contains("busy") && content.contains("Nothing ran"), "\(content)")
        #expect(!content.contains("never"))
        metrics = try await server.request(.get, "/metrics").text
        #expect(metrics.contains("codeinterp_executions_rejected_total 1\n"), "\(metrics)")
    }
}
