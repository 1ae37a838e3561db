import Foundation
import InterpreterCore
import Testing
@testable import Sandbox

/// Every limit ends the run cleanly, and the next run works.
@Suite("Limits end executions cleanly", .serialized)
struct LimitTests {
    func nextRunWorks() async throws {
        let r = try await EngineFixture.run("1 + 1")
        #expect(r.status == .ok && r.result?["text/plain"] == "2")
    }

    @Test func infiniteLoopEndsAtTheWallTimeout() async throws {
        let r = try await EngineFixture.run("while True:\n    pass", timeout: 1.5)
        #expect(r.status == .timeout)
        // Ended by the wall clock, not by the CPU limit it would also reach spinning.
        #expect(r.error?.value.contains("wall-clock limit of 1.5 s") == true, "\(r.error?.value ?? "")")
        try await nextRunWorks()
    }

    @Test func sleepingCodeEndsAtTheWallTimeout() async throws {
        let r = try await EngineFixture.run("import time\nprint('before', flush=True)\ntime.sleep(60)", timeout: 1)
        #expect(r.status == .timeout)
        #expect(r.stdout == "before\n")
        try await nextRunWorks()
    }

    @Test func memoryBombEndsWithMemoryError() async throws {
        let r = try await EngineFixture.run("x = bytearray(8 * 1024**3)", memory: 256 << 20)
        #expect(r.status == .memoryLimit)
        #expect(r.error?.name == "MemoryError")
        try await nextRunWorks()
    }

    @Test func growingMemoryEndsAtTheLimit() async throws {
        let r = try await EngineFixture.run("chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024**2))", timeout: 20, memory: 300 << 20)
        #expect(r.status == .memoryLimit)
        try await nextRunWorks()
    }

    @Test func forkBombIsContained() async throws {
        let r = try await EngineFixture.run("""
            import os
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
            """, timeout: 3)
        #expect(r.status == .timeout)
        try await nextRunWorks()
    }

    @Test func outputFloodIsTruncated() async throws {
        let r = try await EngineFixture.run("import sys\nsys.stdout.write('x' * (5 * 1024 * 1024))\nprint()\n'done'")
        #expect(r.truncated.stdout)
        #expect(r.stdout.utf8.count <= 1 << 20)
        #expect(r.status == .ok)
        #expect(r.result?["text/plain"] == "'done'")
        let flood = try await EngineFixture.run("while True:\n    print('y' * 1000)", timeout: 20)
        #expect(flood.status == .outputLimit)
        try await nextRunWorks()
    }

    @Test(arguments: [
        "import ctypes\nctypes.string_at(0)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "import os\nos._exit(3)",
    ])
    func crashingChildIsReportedAsKilled(code: String) async throws {
        let r = try await EngineFixture.run(code)
        #expect(r.status == .killed)
        #expect(r.error?.name == "ProcessKilled")
        try await nextRunWorks()
    }

    @Test func nothingIsLeftBehind() async throws {
        _ = try await EngineFixture.run("import subprocess\nsubprocess.Popen(['sleep', '30'])\nprint('spawned')")
        // Only the /mnt/data of children forked ahead of the next executions remain.
        let live = EngineFixture.engine.liveWorkdirs
        let workdirs = try FileManager.default.contentsOfDirectory(atPath: EngineFixture.dataDirectory + "/work")
            .filter { !live.contains(EngineFixture.dataDirectory + "/work/" + $0) }
        #expect(workdirs.isEmpty, "left-over work directories: \(workdirs)")
        let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        #expect(!mounts.contains(EngineFixture.dataDirectory + "/work"))
        // The orphaned `sleep` died with its execution. (Other processes of sandbox uids may be alive: sessions'
        // interpreters and executions of other suites; the `sleep 30` is this test's alone.)
        var leftovers: [String] = []
        for pid in try FileManager.default.contentsOfDirectory(atPath: "/proc") where Int(pid) != nil {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                  let uidLine = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }),
                  let uid = uidLine.split(separator: "\t").dropFirst().first.flatMap({ Int($0) }),
                  let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8) else { continue }
            if uid >= 2_000_000 && uid < 2_001_000 && cmdline == "sleep\u{0}30\u{0}" { leftovers.append(pid) }
        }
        #expect(leftovers.isEmpty, "the orphaned sleep is still alive: \(leftovers)")
    }
}
