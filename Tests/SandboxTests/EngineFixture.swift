import Foundation
import InterpreterCore
@testable import Sandbox

/// One engine (one zygote) shared by the suites: starting it preloads the scientific stack, which takes seconds.
enum EngineFixture {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static let dataDirectory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    static let engine: ExecutionEngine = {
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_PROFILES_DIR"] = packageRoot.appendingPathComponent("sandbox-profiles").path
        var config = EngineConfiguration.defaults(dataDirectory: dataDirectory, environment: env)
        config.slots = 4
        return try! ExecutionEngine(configuration: config)
    }()

    /// A configuration for a suite's own engine (one slot of each kind, its own data directory and uids), for
    /// tests that need an engine to themselves: eviction, restarts.
    static func smallConfiguration(_ name: String, uidBase: UInt32, preload: [String]) -> EngineConfiguration {
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_PROFILES_DIR"] = packageRoot.appendingPathComponent("sandbox-profiles").path
        var config = EngineConfiguration.defaults(dataDirectory: dataDirectory + "-" + name, environment: env)
        config.slots = 1
        config.sessionSlots = 1
        config.preload = preload
        config.uidBase = uidBase
        return config
    }

    static func run(_ code: String, timeout: Double? = nil, memory: Int64? = nil, profile: String = "default") async throws -> ExecutionResult {
        try await engine.execute(ExecutionRequest(code: code, profile: profile, timeoutSeconds: timeout, memoryBytes: memory))
    }
}
