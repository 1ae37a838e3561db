import Foundation
#if canImport(Glibc)
import Glibc
#endif
import InterpreterCore
import Seccomp
import Testing

let profilesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("sandbox-profiles").path

func inline(_ rules: String, network: Bool = false, defaultAction: String = "SCMP_ACT_ERRNO") throws -> SandboxProfile {
    try SandboxProfile.parse("""
        {
          "network": \(network),
          "seccomp": {
            "defaultAction": "\(defaultAction)",
            "syscalls": [
              \(rules)
            ]
          }
        }
        """, source: "t.json", directory: nil)
}

func compileError(_ profile: SandboxProfile) -> ProfileError? {
    do {
        _ = try SeccompCompiler.compile(profile)
        return nil
    } catch {
        return error
    }
}

/// The rules every test profile needs for python3 to start and run the probe script.
let pythonBasics = #"{"names": ["read", "write", "close", "fstat", "newfstatat", "lseek", "mmap", "munmap", "brk", "openat", "ioctl", "getrandom", "futex", "exit_group", "getdents64", "rt_sigprocmask", "readlink", "getcwd", "sysinfo", "dup", "fcntl", "gettid", "getpid", "mprotect", "uname", "prlimit64", "sigaltstack"], "action": "SCMP_ACT_ALLOW"}"#

/// Runs python3, which loads `filter` (through ctypes: PR_SET_NO_NEW_PRIVS + seccomp(2)) and then runs each probe.
/// Returns the lines printed and the signal that ended the process, if any.
func runUnderFilter(_ filter: CompiledFilter, probes: [String]) throws -> (lines: [String], signal: Int32?) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("seccomp-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let bpfPath = dir.appendingPathComponent("filter.bpf").path
    try Data(filter.bpf).write(to: URL(fileURLWithPath: bpfPath))
    let script = """
        import ctypes, errno, os, resource, signal, socket, sys
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        libc = ctypes.CDLL(None, use_errno=True)
        class Prog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        data = open(sys.argv[1], "rb").read()
        buf = ctypes.create_string_buffer(data, len(data))
        prog = Prog(len(data) // 8, ctypes.cast(buf, ctypes.c_void_p))
        assert libc.prctl(38, 1, 0, 0, 0) == 0, "no_new_privs"
        assert libc.syscall(317, 1, 0, ctypes.byref(prog)) == 0, "seccomp: %d" % ctypes.get_errno()
        def probe(name, fn):
            try:
                fn()
                print(name, "ok", flush=True)
            except OSError as e:
                print(name, errno.errorcode.get(e.errno, e.errno), flush=True)
        def call(nr, *args):
            if libc.syscall(nr, *args) == -1:
                raise OSError(ctypes.get_errno(), "")
        \(probes.joined(separator: "\n"))
        print("end", flush=True)
        """
    let scriptPath = dir.appendingPathComponent("probe.py").path
    try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
    let outPath = dir.appendingPathComponent("out.txt").path
    // posix_spawn + waitpid rather than Foundation.Process, whose exit monitoring can miss a child that exits
    // quickly (seen hanging inside `unshare --pid`). Output goes to a file: no pipe to drain.
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ["/usr/bin/python3", "-S", scriptPath, bpfPath]
    var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
    guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
    let output = try String(contentsOfFile: outPath, encoding: .utf8)
    let lines = output.split(separator: "\n").map(String.init)
    // WIFSIGNALED / WTERMSIG are macros: decode the wait status by hand.
    let signal = status & 0x7f
    return (lines, signal != 0 && signal != 0x7f ? signal : nil)
}

let havePython = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")

@Suite struct SeccompCompilerTests {
    @Test func defaultProfileCompilesToAPlausibleProgram() throws {
        let profile = try SandboxProfile.load("default", directory: profilesDirectory)
        let filter = try SeccompCompiler.compile(profile)
        // ~300 calls in a binary tree: hundreds of instructions, far below the kernel's 4096.
        #expect(filter.instructionCount > 300 && filter.instructionCount < 1500, "\(filter.instructionCount)")
        #expect(filter.bpf.count == filter.instructionCount * 8)
        #expect(filter.key.count == 64 && filter.key.allSatisfy(\.isHexDigit))
        // Same profile, same program, same key; a different profile, a different key.
        #expect(try SeccompCompiler.compile(profile) == filter)
        let network = try SandboxProfile.load("network", directory: profilesDirectory)
        #expect(try SeccompCompiler.compile(network).key != filter.key)
        #expect(filter.filterLoad.key == filter.key)
    }

    @Test func syscallNames() {
        #if arch(x86_64)
        #expect(syscallName(number: 0) == "read")
        #expect(syscallName(number: 101) == "ptrace")
        #expect(syscallNumber(name: "socket") == 41)
        #endif
        #expect(syscallName(number: -1) == nil)
        #expect(syscallName(number: 100_000) == nil)
        #expect(syscallNumber(name: "no_such_call") == nil)
        #expect(SeccompCompiler.knownSyscallNames().contains("openat"))
    }

    @Test func unknownSyscallNameIsReportedAtItsLine() throws {
        let profile = try inline("""
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["write",
                             "opennat"], "action": "SCMP_ACT_ALLOW"}
            """)
        let e = compileError(profile)
        #expect(e?.source == "t.json")
        #expect(e?.line == 8 && e?.column == 18, "\(String(describing: e))")
        #expect(e?.message.contains("unknown system call \"opennat\"") == true)
        #expect(e?.message.contains("did you mean \"openat\"?") == true, "\(String(describing: e))")
    }

    @Test func callOfAnotherArchitectureIsReported() throws {
        #if arch(x86_64)
        let e = compileError(try inline(#"{"names": ["fstat64"], "action": "SCMP_ACT_ALLOW"}"#))
        #expect(e?.message.contains("does not exist on x86_64") == true, "\(String(describing: e))")
        // Listing the architecture makes it valid.
        var p = try inline(#"{"names": ["fstat64"], "action": "SCMP_ACT_ALLOW"}"#)
        p.seccomp.architectures = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
        #expect(compileError(p) == nil)
        #endif
    }

    @Test func unconditionalAndConditionalRulesWithDifferentActionsConflict() throws {
        let p = try inline("""
            {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS"},
                  {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}
            """)
        let e = compileError(p)
        #expect(e?.line == 7, "\(String(describing: e))")
        #expect(e?.message.contains("conflicting rules for \"personality\"") == true)
        // The same action with and without args is fine (the unconditional rule covers it).
        let same = try inline("""
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}
            """)
        #expect(compileError(same) == nil)
    }

    @Test func networkFalseRejectsRulesThatAllowInetSockets() throws {
        let e1 = compileError(try inline(#"{"names": ["socket"], "action": "SCMP_ACT_ALLOW"}"#))
        #expect(e1?.line == 6)
        #expect(e1?.message.contains("\"network\" is false") == true)
        let e2 = compileError(try inline(#"{"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_LE"}]}"#))
        #expect(e2?.message.contains("AF_INET") == true)
        // With network: true an unconditional ALLOW is consistent; an unconditional denial is not.
        #expect(compileError(try inline(#"{"names": ["socket"], "action": "SCMP_ACT_ALLOW"}"#, network: true)) == nil)
        let e3 = compileError(try inline(#"{"names": ["socket"], "action": "SCMP_ACT_KILL"}"#, network: true))
        #expect(e3?.message.contains("\"network\" is true") == true)
    }

    @Test func profileMayNotTakeOverRtSigaction() throws {
        // A profile that kills rt_sigaction would make every Python start fatal; the compiler owns that call.
        let killing = try inline(#"{"names": ["rt_sigaction"], "action": "SCMP_ACT_KILL_PROCESS"}"#)
        let plain = try inline(#"{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}"#)
        let a = try SeccompCompiler.pseudoFilterCode(killing)
        let b = try SeccompCompiler.pseudoFilterCode(plain)
        #expect(a.contains("rt_sigaction") && b.contains("rt_sigaction"))
        #expect(!a.contains("TRAP"))
    }

    @Test(.enabled(if: havePython)) func defaultProfileBehaviour() throws {
        let filter = try SeccompCompiler.compile(try SandboxProfile.load("default", directory: profilesDirectory))
        let result = try runUnderFilter(filter, probes: [
            #"probe("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())"#,
            #"probe("inet", lambda: socket.create_connection(("127.0.0.1", 9), timeout=1))"#,
            #"probe("inet6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))"#,
            #"probe("netlink_route", lambda: socket.socket(16, socket.SOCK_RAW, 0))"#,
            #"probe("clone3", lambda: call(435, 0, 0))"#,
            #"probe("clone_newnet", lambda: call(56, 0x40000000 | 17, 0, 0, 0, 0))"#,
            #"probe("setuid", lambda: os.setuid(0))"#,
            #"probe("sigsys_handler", lambda: signal.signal(signal.SIGSYS, lambda *a: None))"#,
            #"probe("sigusr1_handler", lambda: signal.signal(signal.SIGUSR1, lambda *a: None))"#,
            #"probe("pipe", lambda: os.pipe())"#,
            #"probe("memfd", lambda: os.memfd_create("x"))"#,
            #"call(101, 0, 0, 0, 0)  # ptrace: the process must die here"#,
            #"print("survived ptrace", flush=True)"#,
        ])
        #expect(result.lines == [
            "unix ok", "inet EPERM", "inet6 EPERM", "netlink_route EPERM", "clone3 ENOSYS", "clone_newnet EPERM",
            "setuid EPERM", "sigsys_handler EPERM", "sigusr1_handler ok", "pipe ok", "memfd ok",
        ])
        #expect(result.signal == SIGSYS, "the kill rule must end the process with SIGSYS (trap)")
    }

    @Test(.enabled(if: havePython)) func killedSocketFamilyAndAllowedFamilyCoexist() throws {
        // Rules for one system call with different args and actions: AF_UNIX allowed, AF_INET EPERM, AF_ALG killed.
        let filter = try SeccompCompiler.compile(try SandboxProfile.load("default", directory: profilesDirectory))
        let result = try runUnderFilter(filter, probes: [
            #"probe("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close())"#,
            #"probe("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))"#,
            #"socket.socket(38, socket.SOCK_SEQPACKET, 0)"#,
            #"print("survived AF_ALG", flush=True)"#,
        ])
        #expect(result.lines == ["unix ok", "inet EPERM"])
        #expect(result.signal == SIGSYS)
    }

    @Test(.enabled(if: havePython)) func networkProfileAllowsInetSockets() throws {
        let profile = try SandboxProfile.load("network", directory: profilesDirectory)
        #expect(profile.network)
        let filter = try SeccompCompiler.compile(profile)
        let result = try runUnderFilter(filter, probes: [
            #"probe("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())"#,
            #"probe("inet6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close())"#,
            #"probe("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())"#,
            #"probe("ptrace_still_killed", lambda: None)"#,
            #"call(101, 0, 0, 0, 0)"#,
        ])
        #expect(result.lines == ["inet ok", "inet6 ok", "unix ok", "ptrace_still_killed ok"])
        #expect(result.signal == SIGSYS)
    }

    @Test(.enabled(if: havePython)) func extendingRuleReplacesTheBaseRule() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ext-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try """
            {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
              \(pythonBasics),
              {"names": ["mkdir", "rmdir"], "action": "SCMP_ACT_ALLOW"}]}}
            """.write(to: dir.appendingPathComponent("base.json"), atomically: true, encoding: .utf8)
        try """
            {"extends": "base", "seccomp": {"syscalls": [
              {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "comment": "EACCES"}]}}
            """.write(to: dir.appendingPathComponent("strict.json"), atomically: true, encoding: .utf8)
        let base = try SeccompCompiler.compile(try SandboxProfile.load("base", directory: dir.path))
        let strict = try SeccompCompiler.compile(try SandboxProfile.load("strict", directory: dir.path))
        let probe = [#"probe("mkdir", lambda: (os.mkdir("/tmp/ci-probe-" + str(os.getpid())), os.rmdir("/tmp/ci-probe-" + str(os.getpid()))))"#]
        #expect(try runUnderFilter(base, probes: probe).lines == ["mkdir ok", "end"])
        #expect(try runUnderFilter(strict, probes: probe).lines == ["mkdir EACCES", "end"])
    }
}
