import FileStore
import Foundation
import InterpreterCore
import Logging
import Seccomp
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a caller (CLI, HTTP, tool adapter) asks for.
public struct ExecutionRequest: Sendable {
    public var code: String
    /// A profile name from the profile directories, or a path to a profile file.
    public var profile: String
    /// Optional tighter limits than the profile's.
    public var timeoutSeconds: Double?
    public var memoryBytes: Int64?
    /// Asks for network access; only granted when the profile allows it.
    public var network: Bool
    public var sessionId: String?

    public init(code: String, profile: String = "default", timeoutSeconds: Double? = nil, memoryBytes: Int64? = nil,
                network: Bool = false, sessionId: String? = nil) {
        self.code = code
        self.profile = profile
        self.timeoutSeconds = timeoutSeconds
        self.memoryBytes = memoryBytes
        self.network = network
        self.sessionId = sessionId
    }
}

public enum OutputStreamKind: Sendable { case stdout, stderr }

public struct EngineConfiguration: Sendable {
    public var dataDirectory: String
    public var workerExecutable: String
    public var profileDirectories: [String]
    /// Executions that may run at once (each gets its own uid and cgroup).
    public var slots: Int
    public var uidBase: UInt32
    /// Modules the zygote imports once so that children start with them loaded.
    public var preload: [String]

    public static let defaultPreload = [
        "numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats", "scipy.optimize", "PIL.Image",
        "seaborn", "sklearn", "sklearn.linear_model", "sympy", "openpyxl", "reportlab",
    ]

    public init(dataDirectory: String, workerExecutable: String, profileDirectories: [String], slots: Int = 4,
                uidBase: UInt32 = 2_000_000, preload: [String] = EngineConfiguration.defaultPreload) {
        self.dataDirectory = dataDirectory
        self.workerExecutable = workerExecutable
        self.profileDirectories = profileDirectories
        self.slots = slots
        self.uidBase = uidBase
        self.preload = preload
    }

    /// Defaults for this machine: data directory from the environment, worker next to the running executable.
    public static func defaults(dataDirectory: String? = nil,
                                environment: [String: String] = ProcessInfo.processInfo.environment) -> EngineConfiguration {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let worker = environment["CODEINTERP_WORKER"]
            ?? URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("codeinterp-worker").path
        var preload = defaultPreload
        if let p = environment["CODEINTERP_PRELOAD"] { preload = p.split(separator: ",").map(String.init) }
        return EngineConfiguration(
            dataDirectory: dataDirectory ?? FileStore.defaultDirectory(environment: environment),
            workerExecutable: worker,
            profileDirectories: SandboxProfile.searchDirectories(executablePath: exe, environment: environment),
            slots: max(2, min(8, ProcessInfo.processInfo.activeProcessorCount * 2)),
            preload: preload)
    }
}

/// The execution engine: owns the zygote, the slots and the file store; turns requests into results.
public final class ExecutionEngine: Sendable {
    public let configuration: EngineConfiguration
    public let store: FileStore
    private let logger: Logger
    private let slots: SlotPool
    private struct State {
        var worker: WorkerProcess?
        var hello: WorkerHello?
        var profiles: [String: (SandboxProfile, CompiledFilter)] = [:]
    }
    private let state = Mutex(State())
    private let startLock = AsyncLock()
    private let nextJob = Atomic<UInt32>(0)

    public init(configuration: EngineConfiguration, logger: Logger = Logger(label: "codeinterp.engine")) throws {
        self.configuration = configuration
        self.logger = logger
        for dir in ["", "/work", "/logs"] {
            try FileManager.default.createDirectory(atPath: configuration.dataDirectory + dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        }
        store = try FileStore(directory: configuration.dataDirectory)
        slots = SlotPool(count: configuration.slots)
    }

    /// Starts the zygote (if it is not running) and returns what it reported once ready.
    @discardableResult
    public func start() async throws -> WorkerHello {
        try await startLock.withLock {
            if let (worker, hello) = state.withLock({ s in s.worker.map { ($0, s.hello!) } }), worker.isAlive {
                return hello
            }
            let worker = try WorkerProcess.spawn(
                executable: configuration.workerExecutable,
                arguments: ["--control-fd", "3", "--slots", String(configuration.slots), "--uid-base", String(configuration.uidBase),
                            "--preload", configuration.preload.joined(separator: ","),
                            "--mpl-config-dir", configuration.dataDirectory + "/mplconfig"],
                logPath: configuration.dataDirectory + "/logs/worker.log")
            let hello: WorkerHello
            do { hello = try await worker.hello() } catch {
                worker.terminate()
                throw EngineError(.workerFailed, "\(error); see \(configuration.dataDirectory)/logs/worker.log")
            }
            logger.info("worker ready", metadata: ["pid": "\(worker.pid)", "startup_ms": "\(hello.startupMs)",
                                                   "threads": "\(hello.threads)", "failed_preloads": "\(hello.failedPreloads)"])
            state.withLock { s in
                s.worker = worker
                s.hello = hello
            }
            return hello
        }
    }

    /// Loads (once) and compiles (once) a profile by name or path.
    public func profile(_ nameOrPath: String) throws -> (SandboxProfile, CompiledFilter) {
        if let cached = state.withLock({ $0.profiles[nameOrPath] }) { return cached }
        do {
            let profile = try SandboxProfile.load(nameOrPath, searching: configuration.profileDirectories)
            let filter = try SeccompCompiler.compile(profile)
            state.withLock { $0.profiles[nameOrPath] = (profile, filter) }
            return (profile, filter)
        } catch {
            throw EngineError(.profile, error.description)
        }
    }

    /// Runs one execution to completion. `output` receives stdout/stderr chunks as the code prints them.
    public func execute(_ request: ExecutionRequest,
                        output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)? = nil) async throws -> ExecutionResult {
        let (profile, filter) = try profile(request.profile)
        if request.network && !profile.network {
            throw EngineError(.badRequest, "profile \"\(profile.name)\" does not allow network access")
        }
        if let t = request.timeoutSeconds, !(t > 0) { throw EngineError(.badRequest, "timeout must be positive") }
        if let m = request.memoryBytes, m <= 0 { throw EngineError(.badRequest, "memory limit must be positive") }
        let limits = profile.limits.tightened(wallSeconds: request.timeoutSeconds, memoryBytes: request.memoryBytes)
        try await start()
        guard let worker = state.withLock({ $0.worker }) else { throw EngineError(.workerDied, "no worker") }
        if !worker.hasFilter(filter.key) { try worker.loadFilter(FilterLoad(key: filter.key, bpf: filter.bpf)) }

        let slot = try await slots.acquire()
        defer { slots.release(slot) }
        let id = UUID().uuidString.lowercased()
        let workdir = "\(configuration.dataDirectory)/work/\(id)"
        guard mkdir(workdir, 0o700) == 0 else {
            throw EngineError(.workerFailed, "cannot create \(workdir): \(String(cString: strerror(errno)))")
        }
        defer { removeTree(workdir) }

        let job = nextJob.add(1, ordering: .relaxed).newValue
        let started = Date()
        let stream = try worker.start(job: job, ExecuteRequest(
            code: request.code, workdir: workdir, slot: slot, filterKey: filter.key,
            network: request.network && profile.network, limits: limits))
        var stdout: [UInt8] = [], stderr: [UInt8] = [], outcomeBytes: [UInt8] = []
        var report: ChildReport?
        var rejection: String?
        await withTaskCancellationHandler {
            for await frame in stream {
                switch frame.kind {
                case .stdout:
                    stdout += frame.payload
                    output?(.stdout, frame.payload)
                case .stderr:
                    stderr += frame.payload
                    output?(.stderr, frame.payload)
                case .outcome: outcomeBytes = frame.payload
                case .exited: report = try? JSONDecoder().decode(ChildReport.self, from: Data(frame.payload))
                case .rejected:
                    rejection = (try? JSONDecoder().decode([String: String].self, from: Data(frame.payload)))?["message"] ?? "rejected"
                default: break
                }
            }
        } onCancel: {
            worker.cancel(job: job)
        }
        if let rejection { throw EngineError(.rejected, "the worker refused the execution: \(rejection)") }
        guard var report else { throw EngineError(.workerDied, "the worker process died during the execution") }
        if let message = report.sandboxError { throw EngineError(.sandboxSetup, message) }
        if let nr = report.blockedSyscallNumber { report.blockedSyscall = syscallName(number: nr) ?? "syscall \(nr)" }
        report.outcome = outcomeBytes.isEmpty ? nil : try? JSONDecoder().decode(RuntimeOutcome.self, from: Data(outcomeBytes))

        var result = ExecutionResult(
            id: "exec_\(id)", sessionId: request.sessionId, status: report.status,
            stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self),
            truncated: Truncation(stdout: report.stdoutTruncated, stderr: report.stderrTruncated),
            result: report.outcome?.result, error: report.outcome?.error,
            usage: Usage(wallMs: report.wallMs, cpuMs: report.cpuMs, maxRssKb: report.maxRssKb),
            blockedSyscall: report.blockedSyscall)
        result.error = result.error ?? Self.errorFor(report: report, limits: limits)

        for (i, image) in (report.outcome?.displays ?? []).enumerated() {
            guard let bytes = Data(base64Encoded: image.data) else { continue }
            let ext = image.mimeType == "image/png" ? "png" : (image.mimeType.split(separator: "/").last.map(String.init) ?? "bin")
            if let file = try? store.store(bytes: Array(bytes), name: "figure-\(i + 1).\(ext)", path: "", source: "assistant",
                                           kind: "display", sessionId: request.sessionId) {
                result.displays.append(Display(mimeType: file.mimeType, fileId: file.id))
                result.files.append(file.ref(storePath: store.blobPath(for: file)))
            }
        }
        let collected = FileCollector(limits: limits, store: store, sessionId: request.sessionId).collect(workdir: workdir)
        result.files.insert(contentsOf: collected.files.map { $0.ref(storePath: store.blobPath(for: $0)) }, at: 0)
        if !collected.skipped.isEmpty {
            result.stderr += "\n[codeinterp] not collected: " + collected.skipped.joined(separator: "; ") + "\n"
        }
        logger.debug("execution finished", metadata: ["execution_id": "\(result.id)", "status": "\(result.status.rawValue)",
                                                      "wall_ms": "\(Int(Date().timeIntervalSince(started) * 1000))"])
        return result
    }

    /// Limits and kills leave no Python exception behind; say what happened in the same shape.
    static func errorFor(report: ChildReport, limits: Limits) -> ExecutionError? {
        switch report.status {
        case .timeout:
            return report.timedOut
                ? ExecutionError(name: "TimeoutError", value: "execution exceeded the wall-clock limit of \(limits.wallSeconds) s", traceback: [])
                : ExecutionError(name: "TimeoutError", value: "execution exceeded the CPU limit of \(limits.cpuSeconds) s", traceback: [])
        case .memoryLimit:
            return ExecutionError(name: "MemoryError", value: "execution exceeded the memory limit of \(limits.memoryBytes >> 20) MiB", traceback: [])
        case .outputLimit:
            return ExecutionError(name: "OutputLimitExceeded", value: "output exceeded its limit many times over; the execution was stopped", traceback: [])
        case .blockedSyscall:
            return ExecutionError(name: "BlockedSystemCall", value: "the sandbox stopped a forbidden system call: \(report.blockedSyscall ?? "?")", traceback: [])
        case .killed:
            let how = report.signal.map { "signal \($0) (\(String(cString: strsignal($0))))" } ?? "exit code \(report.exitCode ?? -1)"
            return ExecutionError(name: "ProcessKilled", value: "the interpreter process ended abruptly: \(how)", traceback: [])
        case .ok, .error:
            return nil
        }
    }

    /// The running zygote's pid as the engine sees it (tests check an attack did not replace it).
    var workerProcessID: pid_t? { state.withLock { $0.worker?.pid } }

    /// Stops the zygote; every child dies with its pid namespace.
    public func shutdown() {
        let worker = state.withLock { s in
            defer { s.worker = nil }
            return s.worker
        }
        worker?.terminate()
    }
}

/// A lock that can be held across `await`: only one start of the worker at a time.
final class AsyncLock: Sendable {
    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { s in
                if !s.locked { s.locked = true; return true }
                s.waiters.append(c)
                return false
            }
            if acquired { c.resume() }
        }
        defer {
            let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
                if s.waiters.isEmpty { s.locked = false; return nil }
                return s.waiters.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}
