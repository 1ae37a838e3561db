import Foundation
import InterpreterCore
import Logging
import MCP

/// The MCP side of `execute_python`: `tools/list` and `tools/call` handlers, independent of the transport, so
/// that `codeinterp mcp` (stdio) and the HTTP server's `/mcp` (Streamable HTTP) share them.
public struct MCPToolHandler: Sendable {
    public let tool: PythonTool
    /// The conversation every call of this MCP connection runs in (its session keeps state between calls).
    public let conversationId: String

    public init(tool: PythonTool, conversationId: String) {
        self.tool = tool
        self.conversationId = conversationId
    }

    public static let serverName = "codeinterp"
    public static let instructions = "codeinterp runs Python in a local sandbox: call execute_python with code; "
        + "files live in /mnt/data; figures come back as images and files as resource links."

    public func listTools() -> ListTools.Result {
        ListTools.Result(tools: [mcpTool()])
    }

    func mcpTool() -> Tool {
        let d = tool.definition
        return Tool(name: d.name, title: d.title, description: d.description,
                    inputSchema: Self.value(d.parameters(strict: false)),
                    annotations: .init(title: d.title, readOnlyHint: false, destructiveHint: false,
                                       idempotentHint: false, openWorldHint: false))
    }

    /// Runs a `tools/call`. Unknown tools are protocol errors (JSON-RPC error -32602); everything that goes
    /// wrong with the call itself (bad arguments, the code raised, a limit) is a result with `isError: true`.
    public func callTool(_ params: CallTool.Parameters) async throws -> CallTool.Result {
        guard params.name == ToolDefinition.toolName else {
            throw MCPError.invalidParams("Unknown tool: \(params.name) (this server has \(ToolDefinition.toolName))")
        }
        let arguments = Self.json(params.arguments.map { Value.object($0) } ?? .null)
        let checked = ToolCall.checkArguments(name: params.name, raw: arguments, field: "arguments")
        let outcome = await tool.run(ToolCall(shape: .anthropic, callId: "", name: params.name, arguments: checked),
                                     conversationId: conversationId)
        return Self.result(outcome)
    }

    /// An outcome as MCP content: the text, figures as image content, files as resource links.
    public static func result(_ outcome: ToolOutcome) -> CallTool.Result {
        var content: [Tool.Content] = [.text(text: outcome.text, annotations: nil, _meta: nil)]
        for image in outcome.images {
            content.append(.image(data: image.base64, mimeType: image.mimeType, annotations: nil, _meta: nil))
        }
        for (file, url) in outcome.files {
            // The SDK's resource_link has no `size` field: the size is in the description.
            content.append(.resourceLink(uri: url, name: file.name, title: file.path.isEmpty ? nil : file.path,
                                         description: "\(file.mimeType), \(file.sizeBytes) bytes", mimeType: file.mimeType))
        }
        return CallTool.Result(content: content, isError: outcome.isError)
    }

    /// Registers the handlers on an MCP server.
    public func register(on server: Server) async {
        await server.withMethodHandler(ListTools.self) { _ in self.listTools() }
        await server.withMethodHandler(CallTool.self) { params in try await self.callTool(params) }
    }

    /// A server (protocol revision up to 2025-11-25) with the tools capability and these handlers.
    public func makeServer(version: String) async -> Server {
        let server = Server(name: Self.serverName, version: version, title: "codeinterp",
                            instructions: Self.instructions,
                            capabilities: .init(tools: .init(listChanged: false)))
        await register(on: server)
        return server
    }

    static func value(_ json: JSONValue) -> Value {
        (try? JSONDecoder().decode(Value.self, from: Data(json.serialized().utf8))) ?? .null
    }

    static func json(_ value: Value) -> JSONValue {
        guard let data = try? JSONEncoder().encode(value), let json = try? JSONValue.parse(data) else { return .null }
        return json
    }
}
