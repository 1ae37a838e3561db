import Foundation
import InterpreterCore
import Logging
@testable import Sandbox
import Testing
@testable import Tools
#if canImport(Glibc)
import Glibc
#endif

/// The worker replaced under a running tool (what a server does when `codeinterp packages` changes the set).
@Suite("A worker replaced while conversations go on", .serialized)
struct WorkerRestartTests {
    @Test func aRunningCellFinishesASessionKeepsItsVariablesAndNewRunsForkFromTheNewWorker() async throws {
        let engine = try ToolFixture.makeEngine(dataDirectory: ToolFixture.makeDataDirectory("restart"))
        defer { engine.shutdown() }
        let tool = try PythonTool(engine: engine, urls: ToolFixture.urls)
        let conversation = ToolFixture.conversation()
        let first = await tool.run(ExecutePythonArguments(code: "answer = 41"), conversationId: conversation)
        #expect(!first.isError, "\(first.text)")
        let oldPid = try #require(engine.workerProcessID)

        // A stateless execution in flight while the worker is replaced.
        let running = Task { try await engine.execute(ExecutionRequest(code: "import time\ntime.sleep(3)\nprint('finished')")) }
        try await Task.sleep(for: .seconds(1))
        try await engine.restartWorker(logger: Logger(label: "test"))
        let newPid = try #require(engine.workerProcessID)
        #expect(newPid != oldPid)

        let finished = try await running.value
        #expect(finished.status == .ok && finished.stdout == "finished\n", "\(finished)")
        // The session's interpreter stays where it was, with its variables.
        let later = await tool.run(ExecutePythonArguments(code: "answer + 1"), conversationId: conversation)
        #expect(!later.isError && later.text.contains("42"), "\(later.text)")
        let fresh = try await engine.execute(ExecutionRequest(code: "6 * 7"))
        #expect(fresh.status == .ok && fresh.result?["text/plain"] == "42")

        // The old zygote stops once nothing of it is left: here, once the session is gone.
        #expect(kill(oldPid, 0) == 0, "the old worker stopped while a session's interpreter lived in it")
        let session = try #require(try await tool.sessions.existingSession(conversation: conversation))
        _ = try engine.deleteSession(id: session)
        let deadlockGuard = ContinuousClock.now + .seconds(60)
        while kill(oldPid, 0) == 0 && ContinuousClock.now < deadlockGuard { try await Task.sleep(for: .milliseconds(100)) }
        #expect(kill(oldPid, 0) != 0, "the old worker outlived its last child")
        #expect(engine.workerProcessID == newPid && engine.workerRunning)
    }

    /// An operator adds a module to a profile's `preload` while the engine runs: the engine replaces its worker by
    /// itself, and later executions start with the module imported.
    @Test func aProfilesNewPreloadIsImportedByTheNextWorker() async throws {
        let profiles = ToolFixture.makeDataDirectory("restart-profiles")
        let base = ToolFixture.packageRoot.appendingPathComponent("sandbox-profiles/default.json").path
        func writeProfile(preload: [String]) throws {
            let json = try JSONSerialization.data(withJSONObject: ["name": "default", "extends": base, "preload": preload])
            try json.write(to: URL(fileURLWithPath: profiles + "/default.json"), options: .atomic)
        }
        try writeProfile(preload: [])
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_PROFILES_DIR"] = profiles
        var config = EngineConfiguration.defaults(dataDirectory: ToolFixture.makeDataDirectory("restart-preload"), environment: env)
        config.slots = 2
        config.preload = ["numpy"]
        let engine = try ExecutionEngine(configuration: config)
        defer { engine.shutdown() }
        let probe = ExecutionRequest(code: "import sys\n'tabnanny' in sys.modules")
        #expect(try await engine.execute(probe).result?["text/plain"] == "False")
        let oldPid = try #require(engine.workerProcessID)

        let watch = Task { await engine.restartWorkerWhenPackagesChange(every: .milliseconds(200), logger: Logger(label: "test")) }
        defer { watch.cancel() }
        try await Task.sleep(for: .milliseconds(500))
        try writeProfile(preload: ["tabnanny"])
        var seen: String?
        let deadlockGuard = ContinuousClock.now + .seconds(120)
        while seen != "True" && ContinuousClock.now < deadlockGuard {
            try await Task.sleep(for: .milliseconds(200))
            seen = try await engine.execute(probe).result?["text/plain"]
        }
        #expect(seen == "True", "the new preload never reached the executions")
        #expect(engine.workerProcessID != oldPid)
    }
}
