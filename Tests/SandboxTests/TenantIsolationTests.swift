import Crypto
import Foundation
import InterpreterCore
import Testing
@testable import Sandbox

/// Tenants of one long-lived zygote, attacking each other. Each test tries the attack for real and asserts what
/// the victim (or the attacker) sees; scripts/test runs these as root and as an unprivileged user, inside an
/// outer pid + network namespace.
@Suite("Tenants stay apart", .serialized)
struct TenantIsolationTests {
    /// A marker no test code contains: the attacker knows only its prefix and its hash.
    struct Marker {
        let value = "CIMARK-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        var digest: String { SHA256.hash(data: Data(value.utf8)).map { String(format: "%02x", $0) }.joined() }
    }

    /// Python that searches memory for the marker (prefix + hash only) and returns where it found it: its own
    /// anonymous memory through ctypes (what a child inherits from the zygote), other processes' through
    /// /proc/PID/mem.
    static func memorySearch(digest: String, pids: String) -> String {
        """
        import ctypes, hashlib, os
        prefix, digest, found = b'CIMARK-', '\(digest)', []
        def scan(pid, data, line):
            i = data.find(prefix)
            while i >= 0:
                if hashlib.sha256(data[i:i + 39]).hexdigest() == digest:
                    found.append(f'{pid}: {line}')
                i = data.find(prefix, i + 1)
        def regions(pid):
            for line in open(f'/proc/{pid}/maps').read().splitlines():
                fields = line.split()
                path = fields[5] if len(fields) > 5 else ''
                if fields[1].startswith('r') and path in ('', '[heap]', '[stack]'):
                    start, end = (int(x, 16) for x in fields[0].split('-'))
                    yield line, start, end
        for line, start, end in list(regions('self')):
            scan('self', ctypes.string_at(start, end - start), line)
        def search(pid):
            try:
                mem = open(f'/proc/{pid}/mem', 'rb', buffering=0)
                maps = list(regions(pid))
            except OSError as e:
                return f'{pid}: {type(e).__name__}'
            with mem:
                for line, start, end in maps:
                    try:
                        mem.seek(start)
                        scan(pid, mem.read(end - start), line)
                    except (OSError, OverflowError, ValueError):
                        continue
            return None
        errors = [e for e in (search(p) for p in \(pids)) if e]
        (found, errors)
        """
    }

    @Test func aLaterExecutionFindsNothingOfAnEarlierTenantInItsMemory() async throws {
        let marker = Marker()
        // Printed (relayed stdout), returned (the outcome) and held in a variable (the interpreter's heap).
        let earlier = try await EngineFixture.run("secret = '\(marker.value)'\nprint(secret)\nsecret")
        #expect(earlier.stdout.contains(marker.value))
        let digest = marker.digest
        #expect(digest.count == 64)
        for _ in 0..<3 {
            let later = try await EngineFixture.run(Self.memorySearch(digest: digest, pids: "[]"), timeout: 60)
            #expect(later.status == .ok, "\(later.error?.value ?? "")")
            #expect(later.result?["text/plain"] == "([], [])", "the earlier tenant's marker is in a later child's memory")
        }
    }

    @Test func theSearchFindsAMarkerThatIsThere() async throws {
        // The memory search above must be able to fail: it finds a marker in its own process.
        let marker = Marker()
        let r = try await EngineFixture.run("held = ''.join(['\(marker.value.prefix(10))', '\(marker.value.dropFirst(10))'])\n"
            + Self.memorySearch(digest: marker.digest, pids: "[]"), timeout: 60)
        #expect(r.status == .ok, "\(r.error?.value ?? "")")
        #expect(r.result?["text/plain"]?.hasPrefix("(['self: ") == true, "\(r.result?["text/plain"] ?? "nil")")
    }

    @Test func aNeighbourCannotBeSeenReadOrKilled() async throws {
        let marker = Marker()
        async let victim = EngineFixture.run("import time\nsecret = '\(marker.value)'\ntime.sleep(3)\nsecret", timeout: 20)
        try await Task.sleep(for: .milliseconds(800))
        let attacker = try await EngineFixture.run("""
            import os, signal
            visible = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
            killed = []
            for pid in range(1, 4096):
                if pid == os.getpid():
                    continue
                try:
                    os.kill(pid, signal.SIGKILL); killed.append(pid)
                except OSError:
                    pass
            """ + "\n" + Self.memorySearch(digest: marker.digest, pids: "[p for p in visible if p != os.getpid()]")
            + "\n(visible, killed, found)", timeout: 60)
        #expect(attacker.status == .ok, "\(attacker.error?.value ?? "")")
        // Alone in its pid namespace: itself, nobody to read or kill.
        #expect(attacker.result?["text/plain"] == "([1], [], [])", "\(attacker.result?["text/plain"] ?? "nil")")
        let v = try await victim
        #expect(v.status == .ok, "the victim died: \(v.status) \(v.error?.value ?? "")")
        #expect(v.result?["text/plain"] == "'\(marker.value)'")
    }

    @Test func aConcurrentExecutionCannotForgeAnotherOnesStatus() async throws {
        async let victim = EngineFixture.run("import time\ntime.sleep(2)\n'victim ok'", timeout: 20)
        try await Task.sleep(for: .milliseconds(500))
        // Whatever is mapped shared, scribble on it: a report page of another child would turn its result.
        let attacker = try await EngineFixture.run("""
            import ctypes
            shared = []
            for line in open('/proc/self/maps'):
                addr, perms = line.split()[:2]
                if perms == 'rw-s':
                    start, end = (int(x, 16) for x in addr.split('-'))
                    ctypes.memset(start, 0x41, end - start)
                    shared.append(line.strip())
            shared
            """)
        #expect(attacker.status == .ok)
        let v = try await victim
        #expect(v.status == .ok && v.blockedSyscall == nil, "the victim's result was changed: \(v.status) \(v.blockedSyscall ?? "")")
        #expect(v.result?["text/plain"] == "'victim ok'")
    }

    @Test func detachedProcessesEndWithTheirExecution() async throws {
        let tag = String(Int.random(in: 100_000...999_999))
        let r = try await EngineFixture.run("""
            import os, subprocess, time
            subprocess.Popen(['sleep', '\(tag)'], start_new_session=True)
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execvp('sleep', ['sleep', '\(tag)'])
                os._exit(0)
            time.sleep(0.3)
            'started'
            """)
        #expect(r.status == .ok, "\(r.error?.value ?? "")")
        #expect(r.result?["text/plain"] == "'started'")
        // This test process's /proc sees every descendant of the engine, sandbox namespaces included.
        let survivors = try processes(withCommandLine: "sleep\u{0}\(tag)\u{0}")
        #expect(survivors.isEmpty, "still alive after the execution returned: \(survivors)")
        let next = try await EngineFixture.run("'next'")
        #expect(next.status == .ok)
    }

    @Test func forkBehavesAsInPython() async throws {
        // One write per process (a line formatted first), so the two lines cannot interleave in the pipe.
        let r = try await EngineFixture.run("import os\nprint(f'pid is {os.fork() != 0}', flush=True)\n'main'")
        #expect(r.status == .ok, "\(r.status) \(r.error?.value ?? "")")
        #expect(r.stdout.contains("pid is True"))
        #expect(r.stdout.contains("pid is False"))
        #expect(r.result?["text/plain"] == "'main'")
        let mp = try await EngineFixture.run("""
            import multiprocessing as mp
            with mp.get_context('fork').Pool(2) as pool:
                squares = pool.map(abs, [-1, -2, -3])
            squares
            """, timeout: 30)
        #expect(mp.status == .ok, "\(mp.error?.value ?? "")")
        #expect(mp.result?["text/plain"] == "[1, 2, 3]")
    }

    @Test func childrenHoldNoCapabilities() async throws {
        let r = try await EngineFixture.run("""
            fields = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)
            (fields['CapEff'].strip(), fields['CapPrm'].strip(), fields['CapBnd'].strip(), fields['CapAmb'].strip())
            """)
        #expect(r.status == .ok, "\(r.error?.value ?? "")")
        #expect(r.result?["text/plain"] == "('0000000000000000', '0000000000000000', '0000000000000000', '0000000000000000')")
    }

    @Test func aSessionGetsItsCPUAllowanceInEveryCell() async throws {
        // 1 CPU second per cell, four cells of ~0.7 s: the whole life uses far more than one cell's allowance.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ci-cpu-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let profile = dir + "/one-cpu-second.json"
        let base = EngineFixture.packageRoot.appendingPathComponent("sandbox-profiles/default.json").path
        try FileManager.default.copyItem(atPath: base, toPath: dir + "/default.json")
        try #"{"extends": "default", "limits": {"cpu_seconds": 1, "wall_seconds": 20}}"#.write(toFile: profile, atomically: true, encoding: .utf8)
        let engine = EngineFixture.engine
        let session = try engine.createSession(SessionOptions(profile: profile))
        for cell in 1...4 {
            let r = try await engine.execute(ExecutionRequest(code: """
                import time
                t = time.process_time()
                while time.process_time() - t < 0.7:
                    pass
                \(cell)
                """, sessionId: session.id))
            #expect(r.status == .ok, "cell \(cell): \(r.status) \(r.error?.value ?? "") cpu_ms=\(r.usage.cpuMs)")
            #expect(r.result?["text/plain"] == "\(cell)")
        }
        // And the limit still holds within one cell.
        let spin = try await engine.execute(ExecutionRequest(code: "while True: pass", sessionId: session.id))
        #expect(spin.status == .timeout)
        try engine.deleteSession(id: session.id)
    }
}

/// Pids (as this process sees them) whose command line is exactly `cmdline`.
func processes(withCommandLine cmdline: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { pid in
        Int(pid) != nil && (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) == cmdline
    }
}
