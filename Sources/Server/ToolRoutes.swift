import Foundation
import HTTPTypes
import Hummingbird
import InterpreterCore
import Logging
import MCP
import NIOCore
import Synchronization
import Tools

/// The tool routes: `execute_python` for chat backends that run their own model loop (`/v1/tools`,
/// `/v1/tools/call`, `/v1/links/resolve`) and for MCP hosts over Streamable HTTP (`/mcp`).
/// All of them go through the same `PythonTool` as `codeinterp mcp` and `codeinterp chat`, with the server's
/// signed absolute file URLs, and its executions through the server's admission and metrics (`ServerExecutions`).
final class ToolState: Sendable {
    private let tool = Mutex<PythonTool?>(nil)
    let mcpSessions = MCPHTTPSessions()

    /// The tool, created on first use (it opens its tables in the engine's database).
    func pythonTool(server: CodeInterpServer) throws -> PythonTool {
        try tool.withLock { existing in
            if let existing { return existing }
            let urls = ClosureFileURLs { [weak server] file in server?.signedURL(fileId: file.id) ?? "" }
            let made = try PythonTool(executor: server.executions, urls: urls)
            existing = made
            return made
        }
    }
}

extension CodeInterpServer {
    func addToolRoutes(to router: Router<ServerRequestContext>) {
        router.get("/v1/tools") { [self] request, _ in try toolDefinition(request) }
        router.post("/v1/tools/call") { [self] request, _ in try await callTool(request) }
        router.post("/v1/links/resolve") { [self] request, _ in try await resolveLinks(request) }
        router.post("/mcp") { [self] request, context in try await mcp(request, context) }
        router.get("/mcp") { [self] request, context in try await mcp(request, context) }
        router.delete("/mcp") { [self] request, context in try await mcp(request, context) }
    }

    func pythonTool() throws -> PythonTool {
        do {
            return try toolState.pythonTool(server: self)
        } catch {
            throw APIError.internalError("the execute_python tool could not be set up: \(error)")
        }
    }

    // MARK: GET /v1/tools

    func toolDefinition(_ request: Request) throws -> Response {
        let name = request.uri.queryParameters["format"].map(String.init) ?? ToolFormat.openAIChat.rawValue
        guard let format = ToolFormat(rawValue: name) else {
            throw APIError.invalidRequest("unknown format \"\(name)\": use one of "
                + ToolFormat.allCases.map(\.rawValue).joined(separator: ", "), param: "format", code: "invalid_format")
        }
        return toolJSON(try pythonTool().definition.json(format: format))
    }

    // MARK: POST /v1/tools/call

    func callTool(_ request: Request) async throws -> Response {
        let body = try await toolRequestBody(request, allowed: ["call", "conversation_id"])
        guard let call = body["call"], !call.isNull else {
            throw APIError.invalidRequest("missing \"call\": the model's tool call as it came (a Chat Completions "
                + "tool_calls[] entry, a Responses function_call item or an Anthropic tool_use block)", param: "call")
        }
        let conversationId = try body.nonEmptyString("conversation_id")
        let parsed: ToolCall
        do {
            parsed = try ToolCall.parse(call)
        } catch {
            throw APIError.invalidRequest(error.message, param: "call", code: "invalid_tool_call")
        }
        let outcome = try await pythonTool().run(parsed, conversationId: conversationId)
        var response = toolJSON(outcome.message(for: parsed.shape, callId: parsed.callId))
        if let session = outcome.sessionId { response.headers[Self.sessionHeader] = session }
        return response
    }

    static let sessionHeader = HTTPField.Name("X-Codeinterp-Session-Id")!

    // MARK: POST /v1/links/resolve

    func resolveLinks(_ request: Request) async throws -> Response {
        let body = try await toolRequestBody(request, allowed: ["text", "conversation_id", "session_id"])
        guard case .string(let text)? = body["text"] else {
            throw APIError.invalidRequest("\"text\" must be the model's answer as a string", param: "text")
        }
        let conversationId = try body.nonEmptyString("conversation_id")
        let sessionId = try body.nonEmptyString("session_id")
        let tool = try pythonTool()
        let resolved: ResolvedText
        switch (conversationId, sessionId) {
        case (let c?, nil): resolved = await tool.resolveLinks(in: text, conversationId: c)
        case (nil, let s?): resolved = tool.resolveLinks(in: text, sessionId: s.lowercased())
        default:
            throw APIError.invalidRequest("send exactly one of \"conversation_id\" (the id given to /v1/tools/call) "
                + "and \"session_id\"", param: "conversation_id")
        }
        return toolJSON([
            "text": .string(resolved.text),
            "annotations": .array(resolved.citations.map(\.json)),
            "unresolved": .array(resolved.unresolved.map { .string($0) }),
        ])
    }

    // MARK: Helpers

    func toolJSON(_ value: JSONValue) -> Response {
        jsonResponse(raw: Data(value.serialized().utf8))
    }

    /// A JSON object body whose keys are all in `allowed` (an unknown one is a 400 that names it).
    func toolRequestBody(_ request: Request, allowed: Set<String>) async throws -> ToolRequestFields {
        try objectBody(try await jsonBody(request), allowed: allowed)
    }

    /// `toolRequestBody` for a body already collected.
    func objectBody(_ data: Data, allowed: Set<String>) throws -> ToolRequestFields {
        try ToolRequestFields(toolBody: data, allowed: allowed)
    }

    // MARK: /mcp (Streamable HTTP)

    /// MCP over Streamable HTTP with the SDK's `StatefulHTTPServerTransport`: an `initialize` POST opens an MCP
    /// session (`Mcp-Session-Id`), with its own conversation (state persists between its calls); POSTs are
    /// answered as SSE; GET opens the server's stream; DELETE ends the session. The API key is checked by the
    /// auth middleware like every route; here, a browser `Origin` must be one of the configured CORS origins.
    func mcp(_ request: Request, _ context: ServerRequestContext) async throws -> Response {
        if let origin = request.headers[.origin], !mcpOriginAllowed(origin) {
            throw APIError(status: .forbidden, message: "origin \(origin) may not use /mcp: add it to cors_origins",
                           type: "permission_error", param: "Origin", code: "origin_not_allowed")
        }
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        var body: Data? = nil
        if request.method == .post {
            body = try await jsonBody(request)
        }
        let mcpRequest = MCP.HTTPRequest(method: request.method.rawValue, headers: headers, body: body, path: request.uri.path)
        let tool = try pythonTool()
        let reply = await toolState.mcpSessions.handle(mcpRequest) { sessionId in
            await MCPToolHandler(tool: tool, conversationId: "mcp-" + sessionId).makeServer(version: Self.version)
        }
        return Self.response(reply)
    }

    func mcpOriginAllowed(_ origin: String) -> Bool {
        if CORSPolicy(origins: configuration.corsOrigins).allowed(origin) != nil { return true }
        // Same origin as the server itself (a page it served).
        return origin == baseURL
    }

    static func response(_ reply: MCP.HTTPResponse) -> Response {
        var fields = HTTPFields()
        for (name, value) in reply.headers {
            if let field = HTTPField.Name(name) { fields[field] = value }
        }
        let status = HTTPTypes.HTTPResponse.Status(code: reply.statusCode)
        switch reply {
        case .stream(let stream, _):
            let body = ResponseBody { writer in
                do {
                    for try await chunk in stream { try await writer.write(ByteBuffer(bytes: chunk)) }
                } catch {
                    // The session ended or the client went away: end the stream.
                }
                try await writer.finish(nil)
            }
            return Response(status: status, headers: fields, body: body)
        default:
            if let data = reply.bodyData {
                return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
            }
            return Response(status: status, headers: fields)
        }
    }
}

/// The MCP sessions of `/mcp`: one SDK `Server` and `StatefulHTTPServerTransport` per session, created by an
/// `initialize` request, ended by DELETE, idle expiry or shutdown.
actor MCPHTTPSessions {
    struct Session {
        let server: MCP.Server
        let transport: StatefulHTTPServerTransport
        var lastUsed: Date
    }

    private var sessions: [String: Session] = [:]
    private var closed = false

    /// Origin is checked by the route against the configured origins; the rest is the SDK's standard checks.
    static let validation = StandardValidationPipeline(validators: [
        AcceptHeaderValidator(mode: .sseRequired),
        ContentTypeValidator(),
        ProtocolVersionValidator(),
        SessionValidator(),
    ])

    private struct FixedSessionID: SessionIDGenerator {
        let id: String
        func generateSessionID() -> String { id }
    }

    var count: Int { sessions.count }

    func handle(_ request: MCP.HTTPRequest,
                makeServer: @Sendable (String) async -> MCP.Server) async -> MCP.HTTPResponse {
        let sessionId = request.header(HTTPHeaderName.sessionID)
        if let sessionId, var session = sessions[sessionId] {
            session.lastUsed = Date()
            sessions[sessionId] = session
            let response = await session.transport.handleRequest(request)
            if request.method.uppercased() == "DELETE", response.statusCode == 200 {
                sessions.removeValue(forKey: sessionId)
                await session.server.stop()
            }
            return response
        }
        if sessionId != nil {
            return .error(statusCode: 404, .invalidRequest("Not Found: no such MCP session (it expired or was deleted); initialize again"))
        }
        guard request.method.uppercased() == "POST", let body = request.body, Self.isInitialize(body) else {
            if request.method.uppercased() == "POST" {
                return .error(statusCode: 400, .invalidRequest("Bad Request: send initialize first, then the "
                    + "\(HTTPHeaderName.sessionID) header it returns with every request"))
            }
            return .error(statusCode: 400, .invalidRequest("Bad Request: missing \(HTTPHeaderName.sessionID) header"))
        }
        guard !closed else { return .error(statusCode: 503, .internalError("the server is shutting down")) }
        let id = "mcps_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let transport = StatefulHTTPServerTransport(sessionIDGenerator: FixedSessionID(id: id), validationPipeline: Self.validation)
        let server = await makeServer(id)
        do {
            try await server.start(transport: transport)
        } catch {
            await server.stop()
            return .error(statusCode: 500, .internalError("could not start the MCP session: \(error)"))
        }
        let response = await transport.handleRequest(request)
        if case .error = response {
            await server.stop()
        } else {
            sessions[id] = Session(server: server, transport: transport, lastUsed: Date())
        }
        return response
    }

    static func isInitialize(_ body: Data) -> Bool {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return false }
        return object["method"] as? String == "initialize" && object["id"] != nil
    }

    /// Ends sessions unused for `idleSeconds`.
    func expire(idleSeconds: Int) async -> Int {
        let cutoff = Date().addingTimeInterval(-Double(idleSeconds))
        let stale = sessions.filter { $0.value.lastUsed < cutoff }
        for (id, session) in stale {
            sessions.removeValue(forKey: id)
            await session.server.stop()
        }
        return stale.count
    }

    /// Ends every session (closing their streams) and refuses new ones.
    func closeAll() async {
        closed = true
        let all = sessions
        sessions = [:]
        for session in all.values { await session.server.stop() }
    }
}
