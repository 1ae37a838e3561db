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

            When a `codeinterp serve` runs for the same data directory, the code runs there (through its local \
            socket, in milliseconds); otherwise, with --standalone or another --profile, in an engine of this \
            command's own (which first imports the scientific stack: seconds). If the server stops, later calls \
            run in an engine of this command's own.
            """)

    @Option(help: "Sandbox profile the code runs under: a name from sandbox-profiles/ or a path.")
    var profile = "default"

    @Option(help: "Conversation name: calls share its session, also after a restart (default: one per run).")
    var conversation: String?

    @Flag(help: "Start an engine of this command's own even when a server runs for the data directory.")
    var standalone = false

    @OptionGroup var engineOptions: EngineOptions

    func run() async throws {
        // Nothing but protocol may reach stdout: every log line goes to stderr.
        var logger = Logger(label: "codeinterp.mcp", factory: { StreamLogHandler.standardError(label: $0) })
        logger.logLevel = .warning
        var config = EngineConfiguration.defaults(dataDirectory: engineOptions.dataDirectory)
        if let slots = engineOptions.slots { config.slots = slots }
        let log = logger
        let executor = try CommandExecutor.make(configuration: config, standalone: standalone, profile: profile,
                                                logger: logger, notice: { log.warning("\($0)") })
        defer { executor.shutdown() }
        let tool: PythonTool
        do {
            tool = try PythonTool(executor: executor.executor, urls: LocalFileURLs(store: executor.store), profile: profile)
        } catch {
            FileHandle.standardError.write(Data("codeinterp mcp: \(error)\n".utf8))
            throw ExitCode(2)
        }
        // Start an engine of our own while the client initializes (a server's is running already).
        let warmup = Task {
            if case .engine(let engine) = executor { _ = try? await engine.start() }
        }
        let handler = MCPToolHandler(tool: tool, conversationId: conversation ?? "mcp-" + UUID().uuidString.lowercased())
        let server = await handler.makeServer(version: codeinterpVersion)
        try await server.start(transport: StdioTransport(logger: logger))
        await server.waitUntilCompleted()
        warmup.cancel()
    }
}

let codeinterpVersion = "0.1.0"
