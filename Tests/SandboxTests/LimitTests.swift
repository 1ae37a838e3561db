import Foundation
import InterpreterCore
import Synchronization
import TestSupport
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

    @Test func forkBombIsBoundedAndTheHostUnaffected() async throws {
        let engine = EngineFixture.engine
        let limits = try engine.profile("default").0.limits
        // With a uid per slot the process limit is the execution's own; with one uid for every execution (a user
        // namespace) it bounds them together (Isolation.swift).
        let bound = limits.processes * (geteuid() == 0 ? 1 : engine.configuration.statelessSlots + engine.configuration.sessionSlots)
        let done = Atomic<Bool>(false)
        // Each process of the bomb is named, so this test's /proc (which sees every sandbox) can count them.
        let bomb = Task {
            defer { done.store(true, ordering: .sequentiallyConsistent) }
            return try await EngineFixture.run("""
                import ctypes, os
                ctypes.CDLL(None).prctl(15, b'ci-forkbomb', 0, 0, 0)
                while True:
                    try:
                        os.fork()
                    except OSError:
                        pass
                """, timeout: 3)
        }
        var most = 0
        var hostChecked = false
        while !done.load(ordering: .sequentiallyConsistent) {
            let count = try processes(named: "ci-forkbomb").count
            most = max(most, count)
            if count >= 10 && !hostChecked {
                // At the bomb's height, the host still starts processes and another tenant still runs.
                hostChecked = true
                #expect(try Subprocess.run(["/bin/sh", "-c", "exit 7"]).status == 7, "the host could not start a process")
                let neighbour = try await EngineFixture.run("import os\nos.getpid(), 6 * 7", timeout: 10)
                #expect(neighbour.status == .ok && neighbour.result?["text/plain"] == "(1, 42)",
                        "a neighbour failed during the bomb: \(neighbour.status) \(neighbour.error?.value ?? "")")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let r = try await bomb.value
        #expect(r.status == .timeout)
        #expect(hostChecked, "the bomb never reached 10 processes (at most \(most)): it did not run")
        #expect(most <= bound, "\(most) processes of the bomb at once; the limit is \(bound)")
        #expect(try processes(named: "ci-forkbomb").isEmpty, "processes of the bomb outlived it")
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

    @Test func theCPULimitsSignalIsReportedByTheSandbox() async throws {
        // pid 1 would ignore SIGXCPU: the sandbox's handler reports it on the report descriptor and ends the process.
        let r = try await EngineFixture.run("""
            import resource
            resource.setrlimit(resource.RLIMIT_CPU, (1, resource.getrlimit(resource.RLIMIT_CPU)[1]))
            while True:
                pass
            """, timeout: 20)
        #expect(r.status == .timeout, "\(r.status) \(r.error?.value ?? "")")
        #expect(r.error?.value.contains("CPU limit") == true, "\(r.error?.value ?? "")")
        try await nextRunWorks()
    }

    @Test func aSignalTheInterpreterSendsItselfIsNamed() async throws {
        // As pid 1 it would survive SIGTERM: the runtime reports the signal and exits with 128 + it.
        let r = try await EngineFixture.run("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)")
        #expect(r.status == .killed)
        #expect(r.error?.value.contains("signal 15") == true, "\(r.error?.value ?? "")")
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

/// Pids (as this process sees them) whose command name (`comm`) is `name`.
func processes(named name: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { pid in
        Int(pid) != nil && (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) == name + "\n"
    }
}
