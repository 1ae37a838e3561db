import ArgumentParser
import Foundation
import Logging
import MCP
import Sandbox
import Tools

struct McpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcp",
        abstract: "Serve the execute_python tool over the Model Context Protocol on standard input/output.",
        discussion: """
            Standard output carries only the protocol (newline-delimited JSON-RPC); logs go to standard error. \
            Every call of one connection runs in the same session (variables and files persist); --conversation \
            NAME keeps that session across restarts of the server.
            """)

    @Option(help: "Sandbox profile the code runs under: a name from sandbox-profiles/ or a path.")
    var profile = "default"

    @Option(help: "Conversation name: calls share its session, also after a restart (default: one per run).")
    var conversation: String?

    @OptionGroup var engineOptions: EngineOptions

    func run() async throws {
        // Nothing but protocol may reach stdout: every log line goes to stderr.
        var logger = Logger(label: "codeinterp.mcp", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .warning
        var config = EngineConfiguration.defaults(dataDirectory: engineOptions.dataDirectory)
        if let slots = engineOptions.slots { config.slots = slots }
        let engine = try ExecutionEngine(configuration: config, logger: logger)
        defer { engine.shutdown() }
        let tool: PythonTool
        do {
            tool = try PythonTool(engine: engine, urls: LocalFileURLs(store: engine.store), profile: profile)
        } catch {
            FileHandle.standardError.write(Data("codeinterp mcp: \(error)\n".utf8))
            throw ExitCode(2)
        }
        // Start the interpreter while the client initializes.
        let warmup = Task { try? await engine.start() }
        let handler = MCPToolHandler(tool: tool, conversationId: conversation ?? "mcp-" + UUID().uuidString.lowercased())
        let server = await handler.makeServer(version: codeinterpVersion)
        try await server.start(transport: StdioTransport(logger: logger))
        await server.waitUntilCompleted()
        warmup.cancel()
    }
}

let codeinterpVersion = "0.1.0"
