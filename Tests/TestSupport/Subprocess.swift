import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Running the built binaries from tests: posix_spawn + waitpid with files for stdio (Foundation.Process on Linux
/// can miss a child's exit), shared by every test target that runs `codeinterp` as a user would.
public enum Subprocess {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public struct Spawned: Sendable {
        public var pid: pid_t
        public var stdoutPath: String
        public var stderrPath: String
        public func stdout() -> String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
        public func stderr() -> String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    }

    /// The package's root directory.
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The `codeinterp` binary built next to the running test bundle (.build/<config>/), else .build/debug.
    public static func codeinterpBinary() -> String {
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [bundleDir.appendingPathComponent("codeinterp").path,
                          bundleDir.deletingLastPathComponent().appendingPathComponent("codeinterp").path]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return packageRoot.appendingPathComponent(".build/debug/codeinterp").path
    }

    /// Starts `argv` with stdin from `stdinPath` (default /dev/null) and stdout/stderr into temporary files.
    public static func spawn(_ argv: [String], environment: [String: String],
                             stdinPath: String = "/dev/null") throws -> Spawned {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("spawn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        let (outPath, errPath) = (tmp.appendingPathComponent("out").path, tmp.appendingPathComponent("err").path)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdinPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var cArgv = argv.map { strdup($0) } + [nil]
        var cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgv, &cEnv)
        guard rc == 0 else { throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: argv[0]]) }
        return Spawned(pid: pid, stdoutPath: outPath, stderrPath: errPath)
    }

    /// Runs `argv` to completion; `stdin` is written to a file the child reads.
    public static func run(_ argv: [String], environment: [String: String] = ProcessInfo.processInfo.environment,
                           stdin: String? = nil) throws -> Output {
        var stdinPath = "/dev/null"
        if let stdin {
            stdinPath = FileManager.default.temporaryDirectory.appendingPathComponent("stdin-\(UUID().uuidString)").path
            try stdin.write(toFile: stdinPath, atomically: true, encoding: .utf8)
        }
        defer { if stdin != nil { unlink(stdinPath) } }
        let spawned = try spawn(argv, environment: environment, stdinPath: stdinPath)
        var status: Int32 = 0
        while waitpid(spawned.pid, &status, 0) < 0 && errno == EINTR {}
        return Output(status: exitCode(status), stdout: spawned.stdout(), stderr: spawned.stderr())
    }

    /// A shell-style exit code: the status, or 128 + the signal.
    public static func exitCode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
