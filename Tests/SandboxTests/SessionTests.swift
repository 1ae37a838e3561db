import FileStore
import Foundation
import InterpreterCore
import Testing
@testable import Sandbox

@Suite("Sessions keep state like a notebook kernel", .serialized)
struct SessionTests {
    let engine = EngineFixture.engine

    func run(_ code: String, in session: SessionRecord, timeout: Double? = nil) async throws -> ExecutionResult {
        try await engine.execute(ExecutionRequest(code: code, timeoutSeconds: timeout, sessionId: session.id))
    }

    @Test func variablesImportsAndFunctionsPersistAcrossExecutions() async throws {
        let session = try engine.createSession(SessionOptions(name: "state"))
        defer { _ = try? engine.deleteSession(id: session.id) }
        let first = try await run("import pandas as pd\nx = 41\ndef double(v):\n    return 2 * v", in: session)
        #expect(first.status == .ok, "\(first.error.map { $0.traceback.joined(separator: "\n") } ?? first.stderr)")
        #expect(first.sessionId == session.id)
        let second = try await run("x += 1\nprint(double(x))\npd.DataFrame({'a': [x]}).a.sum()", in: session)
        #expect(second.status == .ok, "\(second.error.map { $0.traceback.joined(separator: "\n") } ?? second.stderr)")
        #expect(second.stdout == "84\n")
        #expect(second.result?["text/plain"] == "42")
        #expect(!second.stderr.contains("restarted"))
        #expect(try engine.session(id: session.id)?.executionCount == 2)
    }

    @Test func filesPersistAndOnlyChangedOnesAreReported() async throws {
        let session = try engine.createSession(SessionOptions())
        defer { _ = try? engine.deleteSession(id: session.id) }
        let write = try await run("open('notes.txt', 'w').write('v1')", in: session)
        #expect(write.files.map(\.path) == ["/mnt/data/notes.txt"])
        let untouched = try await run("open('notes.txt').read()", in: session)
        #expect(untouched.result?["text/plain"] == "'v1'")
        #expect(untouched.files.isEmpty, "an unchanged file is reported again: \(untouched.files.map(\.path))")
        let rewrite = try await run("open('notes.txt', 'w').write('version 2')", in: session)
        let v2 = try #require(rewrite.files.first)
        #expect(v2.sizeBytes == 9)
        // The session lists one current version per path.
        let listed = try engine.sessionFiles(sessionId: session.id)
        #expect(listed.map(\.id) == [v2.id])
        let removed = try await run("import os\nos.remove('notes.txt')", in: session)
        #expect(removed.status == .ok)
        #expect(try engine.sessionFiles(sessionId: session.id).isEmpty)
    }

    @Test func timeoutStopsTheInterpreterButKeepsTheFiles() async throws {
        let session = try engine.createSession(SessionOptions())
        defer { _ = try? engine.deleteSession(id: session.id) }
        let first = try await run("state = 'kept in memory'\nopen('result.csv', 'w').write('a,b\\n1,2\\n')", in: session)
        #expect(first.status == .ok && first.files.map(\.name) == ["result.csv"], "\(first)")
        let stuck = try await run("while True:\n    pass", in: session, timeout: 1)
        #expect(stuck.status == .timeout)
        #expect(stuck.stderr.contains("next execution starts a fresh interpreter"))
        let after = try await run("import os\nprint(open('result.csv').read().strip())\nstate", in: session)
        #expect(after.stdout == "a,b\n1,2\n", "\(after)")
        #expect(after.error?.name == "NameError", "state survived the kill: \(String(describing: after.result))")
        #expect(after.stderr.contains("interpreter was restarted"))
        // And it works as a session again from there.
        _ = try await run("y = 5", in: session)
        let next = try await run("y * 2", in: session)
        #expect(next.result?["text/plain"] == "10")
    }

    @Test func anInterpreterThatExitsIsReplaced() async throws {
        let session = try engine.createSession(SessionOptions())
        defer { _ = try? engine.deleteSession(id: session.id) }
        _ = try await run("z = 1", in: session)
        let exited = try await run("import os\nos._exit(3)", in: session)
        #expect(exited.status == .killed)
        let next = try await run("print('alive')", in: session)
        #expect(next.status == .ok)
        #expect(next.stdout == "alive\n")
    }

    @Test func uploadedCSVIsReadWithPandas() async throws {
        let session = try engine.createSession(SessionOptions())
        defer { _ = try? engine.deleteSession(id: session.id) }
        let csv = "region,sales\nnorth,10\nsouth,32\n"
        let upload = try engine.addSessionFile(sessionId: session.id, name: "../../uploads/sales.csv", bytes: Array(csv.utf8))
        #expect(upload.path == "/mnt/data/sales.csv")
        #expect(upload.source == "user")
        let r = try await run("import pandas as pd\ndf = pd.read_csv('/mnt/data/sales.csv')\nint(df.sales.sum())", in: session)
        #expect(r.status == .ok, "\(r.error.map { $0.traceback.joined(separator: "\n") } ?? r.stderr)")
        #expect(r.result?["text/plain"] == "42")
        #expect(r.files.isEmpty, "the upload came back as an output: \(r.files.map(\.path))")
        // The code can replace what the user uploaded (the file belongs to the session's uid).
        let edit = try await run("open('sales.csv', 'a').write('east,1\\n')", in: session)
        #expect(edit.status == .ok, "\(edit.error?.value ?? "")")
        #expect(edit.files.first?.source == "assistant")
        #expect(try engine.sessionFiles(sessionId: session.id).count == 1)
    }

    @Test func aSessionCannotReachAnotherSessionsFiles() async throws {
        let a = try engine.createSession(SessionOptions())
        let b = try engine.createSession(SessionOptions())
        defer { _ = try? engine.deleteSession(id: a.id); _ = try? engine.deleteSession(id: b.id) }
        _ = try await run("open('secret.txt', 'w').write('a only')", in: a)
        // Every way to name A's file: its host path, climbing out of /mnt/data towards it, and other processes'
        // roots and working directories through /proc.
        let search = """
            import glob
            paths = ['/mnt/data/secret.txt', '\(engine.sessionDirectory(a.id))/secret.txt', '../\(a.id)/secret.txt',
                     '/mnt/data/../../sessions/\(a.id)/secret.txt'] + glob.glob('/proc/*/root/mnt/data/secret.txt') + glob.glob('/proc/*/cwd/secret.txt')
            found = []
            for p in paths:
                try:
                    found.append(open(p).read())
                except OSError:
                    pass
            found
            """
        // The search finds the file where it is (it can fail)...
        let inA = try await run(search, in: a)
        #expect(inA.result?["text/plain"]?.hasPrefix("['a only'") == true, "\(inA.result?["text/plain"] ?? "") \(inA.error?.value ?? "")")
        // ...and nothing from B, which also sees an empty /mnt/data.
        let inB = try await run("import os\nprint(os.listdir('/mnt/data'))\n" + search, in: b)
        #expect(inB.status == .ok, "\(inB.error?.value ?? "")")
        #expect(inB.stdout == "[]\n")
        #expect(inB.result?["text/plain"] == "[]", "B reached A's file: \(inB.result?["text/plain"] ?? "")")
        let stillThere = try await run("open('secret.txt').read()", in: a)
        #expect(stillThere.result?["text/plain"] == "'a only'")
    }

    @Test func deletedAndIdleSessionsAreGone() async throws {
        let session = try engine.createSession(SessionOptions(idleTimeoutSeconds: 60))
        _ = try await run("open('x.txt', 'w').write('x')", in: session)
        let directory = engine.sessionDirectory(session.id)
        #expect(FileManager.default.fileExists(atPath: directory))
        // Nothing expires before its time... (other suites share the database: count only this session)
        try engine.sweep(now: Date().addingTimeInterval(30))
        #expect(try engine.session(id: session.id) != nil)
        #expect(FileManager.default.fileExists(atPath: directory))
        // ...and an idle session goes with its files and interpreter once it is due.
        let report = try engine.sweep(now: Date().addingTimeInterval(61))
        #expect(report.expiredSessions >= 1)
        #expect(try engine.session(id: session.id) == nil)
        #expect(!FileManager.default.fileExists(atPath: directory))
        await #expect(throws: EngineError.self) { try await run("1", in: session) }

        let other = try engine.createSession(SessionOptions())
        #expect(try engine.deleteSession(id: other.id))
        #expect(try engine.deleteSession(id: other.id) == false)
        #expect(throws: EngineError.self) { try engine.sessionFiles(sessionId: other.id) }
    }

    /// A profile whose /mnt/data holds 8 MiB (a file, as operators pass one), for the budget's tests.
    static let smallDataProfile: String = {
        // Next to the default profile it extends (a base is looked up in the extending profile's directory).
        let dir = EngineFixture.dataDirectory + "-profiles"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try? FileManager.default.createSymbolicLink(atPath: dir + "/default.json",
                                                    withDestinationPath: EngineFixture.packageRoot.appendingPathComponent("sandbox-profiles/default.json").path)
        let text = #"{"name": "small-data", "extends": "default", "limits": {"data_bytes": 8388608}}"#
        _ = FileManager.default.createFile(atPath: dir + "/small-data.json", contents: Data(text.utf8))
        return dir + "/small-data.json"
    }()

    @Test func aSessionWritesNoMoreThanItsByteBudget() async throws {
        let session = try engine.createSession(SessionOptions(profile: Self.smallDataProfile))
        defer { _ = try? engine.deleteSession(id: session.id) }
        let upload = try engine.addSessionFile(sessionId: session.id, name: "input.csv", bytes: Array(repeating: UInt8(ascii: "1"), count: 1 << 20))
        let fill = try await run(#"""
            written = 0
            try:
                for i in range(4):
                    with open(f'part{i}', 'wb') as f:
                        for _ in range(4):
                            f.write(b'\0' * (1 << 20)); written += 1
                r = 'no error'
            except OSError as e:
                r = e.strerror
            (written < 8, r)
            """#, in: session)
        #expect(fill.status == .ok && fill.result?["text/plain"] == "(True, 'No space left on device')",
                "\(fill.status) \(fill.result?["text/plain"] ?? "") \(fill.stderr)")
        #expect(fill.stderr.contains("/mnt/data reached its budget of 8 MiB"), "\(fill.stderr)")
        // The budget is the session's, not the cell's: the next cell finds it still full...
        let more = try await run("open('more', 'wb').write(b'x' * (1 << 20))", in: session)
        #expect(more.status == .error && more.error?.value.contains("No space left on device") == true, "\(more.status) \(more.error?.value ?? "")")
        // ...and what is on disk for the session is within it too.
        let onDisk = try FileManager.default.contentsOfDirectory(atPath: engine.sessionDirectory(session.id)).reduce(Int64(0)) { total, name in
            total + ((try FileManager.default.attributesOfItem(atPath: engine.sessionDirectory(session.id) + "/" + name)[.size] as? Int64) ?? 0)
        }
        #expect(onDisk <= 8 << 20, "\(onDisk) bytes of the session on disk")
        // An upload that does not fit is refused, saying why; deleting files makes room again.
        #expect(throws: EngineError.self) { _ = try engine.addSessionFile(sessionId: session.id, name: "big.bin", bytes: Array(repeating: 0, count: 2 << 20)) }
        let freed = try await run("import os\nfor n in os.listdir('.'):\n    n.startswith('part') and os.remove(n)\nopen('after', 'wb').write(b'y' * (1 << 20))", in: session)
        #expect(freed.status == .ok, "\(freed.error?.value ?? "")")
        // The uploaded file survived all of it, and a fresh interpreter (after a timeout) starts with the files.
        _ = try await run("import time\ntime.sleep(10)", in: session, timeout: 0.5)
        let listing = try await run("import os\nsorted(os.listdir('.'))", in: session)
        #expect(listing.result?["text/plain"] == "['after', 'input.csv', 'more']", "\(listing.result?["text/plain"] ?? "") \(listing.stderr)")
        #expect(!listing.files.contains { $0.id == upload.id })
    }

    @Test func filesOfEveryKindOutliveTheInterpreter() async throws {
        let session = try engine.createSession(SessionOptions())
        defer { _ = try? engine.deleteSession(id: session.id) }
        let made = try await run(#"""
            import os
            os.makedirs('deep/er'); open('deep/er/x.txt', 'w').write('x'); os.symlink('deep/er/x.txt', 'link')
            fd = os.open(b'\xff\xfe.bin', os.O_CREAT | os.O_WRONLY); os.write(fd, b'raw'); os.close(fd)
            'made'
            """#, in: session)
        #expect(made.status == .ok, "\(made.error?.value ?? "")")
        // A timeout ends the interpreter; the next one starts from the session's directory on disk.
        _ = try await run("import time\ntime.sleep(10)", in: session, timeout: 0.5)
        let seen = try await run("import os\n(sorted(os.listdir(b'.')), os.readlink('link'), open('deep/er/x.txt').read(), open(b'\\xff\\xfe.bin', 'rb').read())", in: session)
        #expect(seen.result?["text/plain"] == "([b'deep', b'link', b'\\xff\\xfe.bin'], 'deep/er/x.txt', 'x', b'raw')",
                "\(seen.result?["text/plain"] ?? "") \(seen.stderr)")
    }

    @Test func unusableFileNamesAreRefused() throws {
        #expect(try FileNames.sanitize("../../etc/passwd") == "passwd")
        #expect(try FileNames.sanitize("C:\\Users\\me\\report.xlsx") == "report.xlsx")
        for bad in ["", "..", "/", "a/..", "bad\u{1}name", String(repeating: "x", count: 300)] {
            #expect(throws: EngineError.self, "accepted \(bad.debugDescription)") { try FileNames.sanitize(bad) }
        }
    }

    @Test func statelessExecutionGetsInputFiles() async throws {
        let input = try engine.store.store(bytes: Array("1\n2\n3\n".utf8), name: "numbers.txt", path: "", source: "user")
        let r = try await engine.execute(ExecutionRequest(
            code: "sum(int(line) for line in open('numbers.txt'))", fileIds: [input.id]))
        #expect(r.result?["text/plain"] == "6")
        #expect(r.files.isEmpty)
        await #expect(throws: EngineError.self) {
            try await engine.execute(ExecutionRequest(code: "1", fileIds: ["00000000-0000-0000-0000-000000000000"]))
        }
    }
}

@Suite("Session interpreters share a bounded set of slots", .serialized)
struct SessionEvictionTests {
    @Test func theLongestIdleInterpreterMakesRoom() async throws {
        let config = EngineFixture.smallConfiguration("eviction", uidBase: 2_100_000, preload: [])
        let engine = try ExecutionEngine(configuration: config)
        defer { engine.shutdown() }
        let a = try engine.createSession(SessionOptions())
        let b = try engine.createSession(SessionOptions())
        _ = try await engine.execute(ExecutionRequest(code: "x = 'a'", sessionId: a.id))
        #expect(engine.liveInterpreters == 1)
        let inB = try await engine.execute(ExecutionRequest(code: "x = 'b'\nx", sessionId: b.id))
        #expect(inB.result?["text/plain"] == "'b'")
        #expect(engine.liveInterpreters == 1)
        let backInA = try await engine.execute(ExecutionRequest(code: "x", sessionId: a.id))
        #expect(backInA.error?.name == "NameError")
        #expect(backInA.stderr.contains("interpreter was restarted"))
    }
}

@Suite("Sessions survive a restart of the service", .serialized)
struct SessionRestartTests {
    @Test func filesAndMetadataAreIntactAfterARestart() async throws {
        var config = EngineFixture.smallConfiguration("restart", uidBase: 2_200_000, preload: ["pandas"])
        config.fileRetentionSeconds = 3600
        let before = try ExecutionEngine(configuration: config)
        let session = try before.createSession(SessionOptions(name: "kept"))
        _ = try before.addSessionFile(sessionId: session.id, name: "input.csv", bytes: Array("a\n1\n2\n".utf8))
        let made = try await before.execute(ExecutionRequest(
            code: "import pandas as pd\npd.read_csv('input.csv').a.sum()\nopen('out.txt', 'w').write('made before')",
            sessionId: session.id))
        #expect(made.status == .ok)
        let filesBefore = try before.sessionFiles(sessionId: session.id)
        // Uploads and outputs keep for the configured retention, then a sweep takes them.
        for file in filesBefore {
            let expires = try #require(file.expiresAt)
            #expect(abs(expires.timeIntervalSince(file.createdAt) - 3600) < 1)
        }
        #expect(filesBefore.count == 2)
        before.shutdown()

        let after = try ExecutionEngine(configuration: config)
        defer { after.shutdown() }
        #expect(try after.session(id: session.id)?.name == "kept")
        #expect(try after.sessionFiles(sessionId: session.id) == filesBefore)
        let r = try await after.execute(ExecutionRequest(code: "open('out.txt').read()", sessionId: session.id))
        #expect(r.result?["text/plain"] == "'made before'")
        #expect(r.stderr.contains("interpreter was restarted"))
        #expect(r.files.isEmpty, "files from before the restart came back as new outputs: \(r.files.map(\.path))")
    }
}
