import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `codeinterp` binary as a user would.
@Suite("codeinterp CLI", .serialized)
struct CLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let dataDir = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-cli-\(getpid())").path

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The binary sits next to this test bundle in .build/<config>/.
    static func binary() -> String {
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundleDir.appendingPathComponent("codeinterp").path,
                          bundleDir.deletingLastPathComponent().appendingPathComponent("codeinterp").path,
                          root.appendingPathComponent(".build/debug/codeinterp").path]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return root.appendingPathComponent(".build/debug/codeinterp").path
    }

    /// posix_spawn + waitpid with files for stdio: Foundation.Process on Linux can miss a child's exit.
    func codeinterp(_ args: [String], stdin: String? = nil) throws -> Output {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let (inPath, outPath, errPath) = (tmp.appendingPathComponent("in").path, tmp.appendingPathComponent("out").path,
                                          tmp.appendingPathComponent("err").path)
        try (stdin ?? "").write(toFile: inPath, atomically: true, encoding: .utf8)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var env = ProcessInfo.processInfo.environment
        env["CODEINTERP_DATA_DIR"] = Self.dataDir
        env["CODEINTERP_PROFILES_DIR"] = Self.root.appendingPathComponent("sandbox-profiles").path
        env["CODEINTERP_PRELOAD"] = "numpy,pandas,matplotlib.pyplot"
        let argv = [Self.binary()] + args
        let envp = env.map { "\($0.key)=\($0.value)" }
        var cArgv = argv.map { strdup($0) } + [nil]
        var cEnv = envp.map { strdup($0) } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgv, &cEnv)
        guard rc == 0 else { throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: argv[0]]) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Output(status: exit,
                      stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    @Test func stdinValueIsPrinted() throws {
        let r = try codeinterp(["run", "-"], stdin: "import numpy as np; np.arange(5).sum()")
        #expect(r.status == 0)
        #expect(r.stdout == "10\n")
    }

    @Test func jsonResultOfABlockedConnection() throws {
        let r = try codeinterp(["run", "-c", "import socket; socket.create_connection((\"127.0.0.1\", 22))", "--json"])
        #expect(r.status == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(object["status"] as? String == "error")
        #expect((object["error"] as? [String: Any])?["name"] as? String == "PermissionError")
        #expect(object.keys.contains("session_id") && object.keys.contains("usage") && object.keys.contains("truncated"))
    }

    @Test func chartExampleIsCopiedToOut() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("codeinterp-out-\(getpid())").path
        let r = try codeinterp(["run", Self.root.appendingPathComponent("examples/chart.py").path, "--out", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("best month:"))
        #expect(r.stdout.contains("/mnt/data/chart.png"))
        let png = try Data(contentsOf: URL(fileURLWithPath: out + "/chart.png"))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
    }

    @Test func tracebackAndNonZeroExit() throws {
        let r = try codeinterp(["run", "-c", "x = {}\nx['missing']"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("KeyError"))
        #expect(r.stderr.contains("x['missing']"))
    }

    @Test func timeoutOption() throws {
        let r = try codeinterp(["run", "-c", "while True: pass", "--timeout", "1"])
        #expect(r.status == 3)
        #expect(r.stderr.contains("timeout"))
    }

    @Test func networkFlagIsRefusedByTheDefaultProfile() throws {
        let r = try codeinterp(["run", "-c", "1", "--network"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("does not allow network"))
    }

    @Test func profileWithATypoIsReportedWithItsLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("typo-\(getpid()).json").path
        try "{\n  \"extends\": \"default\",\n  \"netwrok\": true\n}\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try codeinterp(["profile", "validate", path])
        #expect(r.status == 1)
        #expect(r.stderr.contains(":3:"))
        #expect(r.stderr.contains("network"))
        let ok = try codeinterp(["profile", "validate", "default"])
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    @Test func badArgumentsAreExplained() throws {
        let r = try codeinterp(["run"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("-c CODE"))
        let m = try codeinterp(["run", "-c", "1", "--memory", "lots"])
        #expect(m.status != 0)
        #expect(m.stderr.contains("--memory"))
    }

    @Test func doctorReportsIsolation() throws {
        let r = try codeinterp(["doctor"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("pid namespace"))
        #expect(r.stdout.contains("probe execution   ok"))
    }
}
