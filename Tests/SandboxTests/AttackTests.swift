import FileStore
import Foundation
import InterpreterCore
import Testing
@testable import Sandbox

/// Each security claim, shown by trying the attack. scripts/test runs these inside an outer pid+net namespace.
@Suite("Attacks fail", .serialized)
struct AttackTests {
    @Test func networkConnectionIsRefused() async throws {
        let r = try await EngineFixture.run("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)")
        #expect(r.status == .error)
        #expect(r.error?.name == "PermissionError")
    }

    @Test func shadowIsUnreadable() async throws {
        // Masked by an empty file and unreadable by the slot uid anyway: no hash may come back either way.
        let r = try await EngineFixture.run("""
            try:
                leaked = 'root:' in open('/etc/shadow').read()
            except PermissionError:
                leaked = False
            leaked
            """)
        #expect(r.status == .ok)
        #expect(r.result?["text/plain"] == "False")
        if getuid() == 0 {
            #expect(try String(contentsOfFile: "/etc/shadow", encoding: .utf8).contains("root:"), "the host file must have content for this test to mean anything")
        }
    }

    @Test func theEnginesEnvironmentIsInvisible() async throws {
        // An engine of its own, started after the secret is set: the shared one may have spawned its worker before,
        // and would then prove nothing.
        let secret = "ci-secret-" + UUID().uuidString
        setenv("CODEINTERP_TEST_SECRET", secret, 1)
        defer { unsetenv("CODEINTERP_TEST_SECRET") }
        #expect(ProcessInfo.processInfo.environment["CODEINTERP_TEST_SECRET"] == secret, "the secret must be in the environment a spawn would inherit")
        let engine = try ExecutionEngine(configuration: EngineFixture.smallConfiguration("environment", uidBase: 2_700_000, preload: []))
        defer { engine.shutdown() }
        let r = try await engine.execute(ExecutionRequest(code: """
            import os, glob
            leaks = [k for k, v in os.environ.items() if '\(secret)' in v or k == 'CODEINTERP_TEST_SECRET']
            for path in glob.glob('/proc/*/environ'):
                try:
                    if b'\(secret)' in open(path, 'rb').read(): leaks.append(path)
                except OSError:
                    pass
            (leaks, sorted(p for p in os.listdir('/proc') if p.isdigit()) == [str(os.getpid())])
            """))
        #expect(r.status == .ok, "\(r.error?.value ?? "")")
        #expect(r.result?["text/plain"] == "([], True)")
        // Nor does the worker itself hold it.
        let worker = try #require(engine.workerProcessID)
        let workerEnvironment = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(worker)/environ"))
        #expect(!workerEnvironment.isEmpty && workerEnvironment.range(of: Data(secret.utf8)) == nil)
    }

    @Test func killAllProcessesReachesOnlyTheSandbox() async throws {
        try await EngineFixture.engine.start()
        let zygote = try #require(EngineFixture.engine.workerProcessID)
        // A victim in another slot (another uid) runs while the attacker signals every process it may.
        async let victim = EngineFixture.run("import time\ntime.sleep(2)\n'victim ok'", timeout: 10)
        try await Task.sleep(for: .milliseconds(500))
        // Linux skips the caller itself, and the attacker's pid namespace holds nothing else: no process to signal
        // (ESRCH), and it runs on, alone.
        let attacker = try await EngineFixture.run("""
            import os
            try:
                os.kill(-1, 9)
                reached = 'something'
            except ProcessLookupError:
                reached = 'nothing'
            reached
            """)
        #expect(attacker.status == .ok && attacker.result?["text/plain"] == "'nothing'",
                "\(attacker.status) \(attacker.error.map { "\($0.name): \($0.value)" } ?? "")")
        let v = try await victim
        #expect(v.status == .ok && v.result?["text/plain"] == "'victim ok'", "the victim died: \(v.status)")
        #expect(EngineFixture.engine.workerProcessID == zygote, "the zygote was replaced: the attack reached it")
    }

    @Test func runsAsUnprivilegedUser() async throws {
        // Unprivileged, the engine's own group stays (a user namespace may not drop supplementary groups).
        let r = try await EngineFixture.run("import os\n(os.getuid() != 0, os.getgid() != 0, [g for g in os.getgroups() if g != os.getgid()])")
        #expect(r.result?["text/plain"] == "(True, True, [])")
    }

    @Test func filesOutsideMntDataDoNotPersist() async throws {
        let first = try await EngineFixture.run("""
            open('/tmp/left.txt', 'w').write('x')
            try:
                open('/usr/evil.txt', 'w')
                usr = 'writable'
            except OSError as e:
                usr = type(e).__name__
            usr
            """)
        #expect(first.result?["text/plain"] == "'OSError'" || first.result?["text/plain"] == "'PermissionError'")
        #expect(first.files.isEmpty)
        let second = try await EngineFixture.run("import os\nos.path.exists('/tmp/left.txt')")
        #expect(second.result?["text/plain"] == "False")
        #expect(!FileManager.default.fileExists(atPath: "/usr/evil.txt"))
    }

    @Test func symlinkToPasswdIsNotCollected() async throws {
        let r = try await EngineFixture.run("""
            import os
            os.symlink('/etc/passwd', 'passwd_link')
            os.makedirs('sub', exist_ok=True)
            os.symlink('/etc', 'sub/etc_link')
            open('real.txt', 'w').write('ok')
            """)
        #expect(r.status == .ok)
        #expect(r.files.map(\.name) == ["real.txt"])
    }

    @Test func forbiddenSystemCallKillsAndIsNamed() async throws {
        let r = try await EngineFixture.run("""
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ptrace(0, 0, 0, 0)
            'not reached'
            """)
        #expect(r.status == .blockedSyscall)
        #expect(r.blockedSyscall == "ptrace")
        let next = try await EngineFixture.run("'fine'")
        #expect(next.status == .ok)
    }

    @Test func unshareIsBlocked() async throws {
        let r = try await EngineFixture.run("import ctypes\nctypes.CDLL(None).unshare(0x10000000)")
        #expect(r.status == .blockedSyscall)
        #expect(r.blockedSyscall == "unshare")
    }

    @Test func framesOfUnknownKindsOnTheSandboxsDescriptorsAreSkipped() async throws {
        // User code can write on the result (3) and report (5) descriptors too: what is no frame of theirs is ignored.
        let r = try await EngineFixture.run("""
            import os, struct
            os.write(3, struct.pack('<IBI', 8, 0xEE, 0) + b'abc')
            os.write(5, struct.pack('<IBI', 8, 0xEE, 0) + b'abc')
            os.write(5, struct.pack('<IBI', 6, 40, 0) + b'x')  # a blocked-call frame without its number
            'still here'
            """)
        #expect(r.status == .ok, "\(r.status) \(r.error.map { "\($0.name): \($0.value)" } ?? "")")
        #expect(r.result?["text/plain"] == "'still here'")
        #expect(r.blockedSyscall == nil)
    }

    @Test func aFrameClaimingGigabytesCostsOnlyThatCodesResult() async throws {
        // The frame after the claim is swallowed: the outcome is lost, nothing is allocated, the next code is unharmed.
        let claim = "import os, struct\nfor fd in (3, 5):\n    os.write(fd, struct.pack('<IBI', 0xFFFFFFF0, 30, 0) + b'x' * 100)\n'lost'"
        let r = try await EngineFixture.run(claim, timeout: 10)
        // Killed, not timed out: the one-shot interpreter exits, nothing waits for the wall-clock limit.
        #expect(r.status == .killed, "\(r.status)")
        let next = try await EngineFixture.run("'fine'")
        #expect(next.status == .ok && next.result?["text/plain"] == "'fine'")

        // A session's interpreter lives on: that cell runs into its wall-clock limit, the next one gets a fresh one.
        let engine = EngineFixture.engine
        let session = try engine.createSession(SessionOptions(name: "claims"))
        defer { _ = try? engine.deleteSession(id: session.id) }
        let cell = try await engine.execute(ExecutionRequest(code: claim, timeoutSeconds: 2, sessionId: session.id))
        #expect(cell.status == .timeout, "\(cell.status)")
        let after = try await engine.execute(ExecutionRequest(code: "'fine'", sessionId: session.id))
        #expect(after.status == .ok && after.result?["text/plain"] == "'fine'", "\(after.status)")
    }

    @Test func displayFramesOfTheCodesOwnAreCappedAndLabelNothingButItsResult() async throws {
        // Display frames the code writes itself come before the runtime's, which are the ones its result keeps.
        let r = try await EngineFixture.run("""
            import os, struct
            for _ in range(500):
                os.write(3, struct.pack('<IBI', 5 + 4, 32, 0) + b'junk')
            import matplotlib.pyplot as plt
            plt.plot([1, 2])
            plt.show()
            """)
        #expect(r.status == .ok, "\(r.status) \(r.error.map { "\($0.name): \($0.value)" } ?? "")")
        #expect(r.displays.count == 1, "one display in the outcome, whatever frames came before it")
        let display = try #require(r.displays.first)
        let stored = try #require(try EngineFixture.engine.store.file(id: display.fileId))
        let png = try #require(FileManager.default.contents(atPath: EngineFixture.engine.store.blobPath(for: stored)))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
    }
}
