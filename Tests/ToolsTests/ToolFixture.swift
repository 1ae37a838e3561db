import Foundation
import InterpreterCore
import Sandbox
@testable import Tools

/// One engine shared by the suites that run code (starting it preloads the scientific stack, which takes seconds).
enum ToolFixture {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func makeDataDirectory(_ label: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-tools-\(label)-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func makeEngine(dataDirectory: String) throws -> ExecutionEngine {
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_PROFILES_DIR"] = packageRoot.appendingPathComponent("sandbox-profiles").path
        var config = EngineConfiguration.defaults(dataDirectory: dataDirectory, environment: env)
        config.slots = 4
        config.preload = ["numpy", "pandas", "matplotlib", "matplotlib.pyplot"]
        return try ExecutionEngine(configuration: config)
    }

    /// URLs as the HTTP server would hand them out: absolute, naming the file id.
    static let urls = ClosureFileURLs { "https://ci.example/files/\($0.id)/\($0.name)" }

    static let engine: ExecutionEngine = try! makeEngine(dataDirectory: makeDataDirectory("shared"))
    static let tool: PythonTool = try! PythonTool(engine: engine, urls: urls)

    static func conversation() -> String { "test-" + UUID().uuidString.lowercased() }
}
