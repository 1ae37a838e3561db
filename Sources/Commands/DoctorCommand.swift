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
        let probe = try await engine.execute(ExecutionRequest(code: """
            import os, socket
            checks = {}
            try:
                socket.create_connection(("127.0.0.1", 9), timeout=1); checks["network"] = "OPEN"
            except PermissionError: checks["network"] = "blocked (seccomp)"
            except OSError as e: checks["network"] = f"unreachable ({e.strerror})"
            checks["uid"] = os.getuid()
            try:
                checks["/etc/shadow"] = "READABLE" if open("/etc/shadow").read() else "masked (empty)"
            except OSError: checks["/etc/shadow"] = "unreadable"
            checks["pid"] = os.getpid()
            checks["processes visible"] = len([p for p in os.listdir("/proc") if p.isdigit()])
            status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
            checks["capabilities"] = "none" if int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0 else "HELD " + status["CapEff"].strip()
            checks["dumpable"] = "no" if __import__("ctypes").CDLL(None).prctl(3, 0, 0, 0, 0) == 0 else "YES"
            checks
            """, timeoutSeconds: 10))
        let report = hello.isolation
        if json {
            struct Doctor: Encodable {
                var worker: WorkerHello
                var profile: String
                var probe: ExecutionResult
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            FileHandle.standardOutput.write(try encoder.encode(Doctor(worker: hello, profile: profileLine, probe: probe)) + Data("\n".utf8))
            return
        }
        func mark(_ ok: Bool) -> String { ok ? "yes" : "NO " }
        print("""
            codeinterp doctor
              python            \(hello.python) embedded, zygote up in \(hello.startupMs) ms, \(hello.threads) thread(s) at fork
              running as root   \(mark(report.root))
              user namespace    \(report.userNamespace ? "yes (unprivileged mode)" : "not needed")
              pid namespace     \(report.pidNamespace ? "yes: one per execution (the interpreter is its pid 1; everything it starts dies with it)" : "NO ")
              CPU per cell      \(report.zygoteProc ? "watched by the zygote (sessions get their allowance every cell)" : "NO: a session's CPU limit holds for its whole life")
              network namespace \(mark(report.networkNamespace))
              ipc/uts namespace \(mark(report.ipcNamespace && report.utsNamespace))
              uid per slot      \(mark(report.uidPerSlot))
              cgroups           \(report.cgroups ?? "NO (why, and what is weaker without them: below)")
              default profile   \(profileLine)
              data directory    \(config.dataDirectory)
              preloaded         \(hello.preloaded.joined(separator: ", "))
            """)
        if !hello.failedPreloads.isEmpty { print("  FAILED to import  \(hello.failedPreloads.joined(separator: ", "))") }
        let added = PythonPackages(dataDirectory: config.dataDirectory).manifest().installed
        print("  added packages    " + (added.isEmpty ? "none (codeinterp packages install NAME)"
            : added.sorted { $0.key.lowercased() < $1.key.lowercased() }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
        print("  probe execution   \(probe.status.rawValue): \(probe.result?["text/plain"] ?? probe.error.map { "\($0.name): \($0.value)" } ?? "")")
        for note in report.notes { print("  weaker: \(note)") }
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
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
