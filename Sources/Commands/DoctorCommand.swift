import ArgumentParser
import Foundation
import InterpreterCore
import Sandbox

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Show which isolation layers this host offers and which packages import.")

    @Flag(help: "Print the report as JSON.")
    var json = false

    @OptionGroup var engineOptions: EngineOptions

    func run() async throws {
        let config = EngineConfiguration.defaults(dataDirectory: engineOptions.dataDirectory)
        let engine = try ExecutionEngine(configuration: config, logger: quietLogger())
        defer { engine.shutdown() }
        let hello = try await engine.start()
        var profileLine = "ok"
        do {
            let (profile, filter) = try engine.profile("default")
            profileLine = "\(profile.source): \(profile.seccomp.syscalls.count) rules, \(filter.instructionCount) BPF instructions"
        } catch {
            profileLine = "ERROR \(error)"
        }
        // Prove the layers with a real execution: no network, unprivileged, cannot read /etc/shadow.
        let probe = try await engine.execute(ExecutionRequest(code: Self.probeCode, timeoutSeconds: 10))
        let checks = (try? JSONDecoder().decode([String: String].self, from: Data(probe.stdout.utf8))) ?? [:]
        let report = hello.isolation
        if json {
            struct Doctor: Encodable {
                var worker: WorkerHello
                var profile: String
                var probe: ExecutionResult
                var checks: [String: String]
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            FileHandle.standardOutput.write(try encoder.encode(Doctor(worker: hello, profile: profileLine, probe: probe,
                                                                      checks: checks)) + Data("\n".utf8))
            return
        }
        let out = Terminal.out
        func mark(_ ok: Bool) -> String { ok ? out.paint("yes", .good) : out.paint("NO ", .error) }
        var text = """
            codeinterp doctor
              python            \(hello.python) embedded, zygote up in \(hello.startupMs) ms, \(hello.threads) thread(s) at fork
              running as root   \(mark(report.root))
              user namespace    \(report.userNamespace ? "yes (unprivileged mode)" : "not needed")
              pid namespace     \(report.pidNamespace ? "yes: one per execution (the interpreter is its pid 1; everything it starts dies with it)" : mark(false))
              CPU per cell      \(report.zygoteProc ? "watched by the zygote (sessions get their allowance every cell)" : out.paint("NO: a session's CPU limit holds for its whole life", .warning))
              network namespace \(mark(report.networkNamespace))
              ipc/uts namespace \(mark(report.ipcNamespace && report.utsNamespace))
              uid per slot      \(mark(report.uidPerSlot))
              cgroups           \(report.cgroups ?? out.paint("NO (why, and what is weaker without them: below)", .warning))
              default profile   \(profileLine)
              data directory    \(config.dataDirectory)
              preloaded         \(hello.preloaded.joined(separator: ", "))

            """
        if !hello.failedPreloads.isEmpty { text += out.paint("  FAILED to import  \(hello.failedPreloads.joined(separator: ", "))", .error) + "\n" }
        let added = PythonPackages(dataDirectory: config.dataDirectory).manifest().installed
        text += "  added packages    " + (added.isEmpty ? "none (codeinterp packages install NAME)"
            : added.sorted { $0.key.lowercased() < $1.key.lowercased() }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) + "\n"
        if probe.status == .ok && !checks.isEmpty {
            text += "  probe execution   \(out.paint("ok", .good)): what code in the sandbox finds\n"
            for key in ["network", "uid", "/etc/shadow", "pid", "processes visible", "capabilities", "dumpable"] {
                guard var value = checks[key] else { continue }
                if key == "/etc/shadow" { value = Self.shadowVerdict(value, hostBytes: Self.fileSize("/etc/shadow")) }
                let alarming = value.hasPrefix("OPEN") || value.hasPrefix("READABLE") || value.hasPrefix("HELD") || value == "YES"
                text += "    " + key.padding(toLength: 18, withPad: " ", startingAt: 0) + (alarming ? out.paint(value, .error) : value) + "\n"
            }
        } else {
            let why = probe.error.map { "\($0.name): \($0.value)" } ?? probe.stderr
            text += "  probe execution   " + out.paint("\(probe.status.rawValue): \(why)", .error) + "\n"
        }
        for note in report.notes { text += out.paint("  weaker: \(note)", .warning) + "\n" }
        out.write(text)
    }

    /// Runs in the sandbox; prints what it finds as one JSON object of strings.
    static let probeCode = """
        import json, os, socket
        checks = {}
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=1); checks["network"] = "OPEN"
        except PermissionError: checks["network"] = "blocked (seccomp)"
        except OSError as e: checks["network"] = f"unreachable ({e.strerror})"
        checks["uid"] = str(os.getuid())
        try:
            with open("/etc/shadow", "rb") as f: checks["/etc/shadow"] = f"read {len(f.read())} bytes"
        except FileNotFoundError: checks["/etc/shadow"] = "absent"
        except OSError as e: checks["/etc/shadow"] = f"unreadable ({e.strerror})"
        checks["pid"] = str(os.getpid())
        checks["processes visible"] = str(len([p for p in os.listdir("/proc") if p.isdigit()]))
        status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
        checks["capabilities"] = "none" if int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0 else "HELD " + status["CapEff"].strip()
        checks["dumpable"] = "no" if __import__("ctypes").CDLL(None).prctl(3, 0, 0, 0, 0) == 0 else "YES"
        print(json.dumps(checks))
        """

    /// What the sandbox's view of /etc/shadow (`read N bytes`, `unreadable (...)`, `absent`) means, next to the
    /// host's file: the isolation puts an empty file in its place.
    static func shadowVerdict(_ sandbox: String, hostBytes: Int?) -> String {
        guard let read = sandbox.firstMatch(of: /^read (\d+) bytes$/).flatMap({ Int($0.1) }) else { return sandbox }
        switch (read, hostBytes ?? 0) {
        case (0, 0): return "empty (the host's is empty too)"
        case (0, let host): return "masked: the sandbox sees an empty file in place of the host's (\(host) bytes)"
        default: return "READABLE: the sandbox reads \(read) bytes of it"
        }
    }

    static func fileSize(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }
}

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile", abstract: "Work with sandbox profiles.", subcommands: [Validate.self])

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Load and compile a profile; report its problems with line numbers.")

        @Argument(help: "A profile name or a path to a profile file.")
        var profile: String

        @OptionGroup var engineOptions: EngineOptions

        func run() async throws {
            let engine = try ExecutionEngine(configuration: .defaults(dataDirectory: engineOptions.dataDirectory), logger: quietLogger())
            do {
                let (p, filter) = try engine.profile(profile)
                print("\(p.source): ok — \(p.seccomp.syscalls.count) rules, \(filter.instructionCount) BPF instructions, network \(p.network ? "allowed" : "denied")")
            } catch {
                Terminal.err.write("\(error)\n", .error)
                throw ExitCode(1)
            }
        }
    }
}
