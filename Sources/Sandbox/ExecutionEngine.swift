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
    /// Runs in this session's interpreter (its variables, its /mnt/data); the session's profile applies.
    public var sessionId: String?
    /// Stored files copied into /mnt/data before the code runs (not reported back as outputs unless changed).
    public var fileIds: [String]
    /// The execution's id (the result's `id` is `exec_<id>`); a caller that logs before the run sets it, else
    /// the engine makes one.
    public var id: String = UUID().uuidString.lowercased()

    public init(code: String, profile: String = "default", timeoutSeconds: Double? = nil, memoryBytes: Int64? = nil,
                network: Bool = false, sessionId: String? = nil, fileIds: [String] = []) {
        self.code = code
        self.profile = profile
        self.timeoutSeconds = timeoutSeconds
        self.memoryBytes = memoryBytes
        self.network = network
        self.sessionId = sessionId
        self.fileIds = fileIds
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
    /// Executions that may wait for a slot; one more is refused (`EngineError.busy`) instead of queued.
    public var maxQueued: Int
    /// Interpreters of sessions that may live at once (each holds its own uid and cgroup); when all are taken,
    /// the one idle the longest is stopped (its session keeps its files).
    public var sessionSlots: Int
    /// Default idle time after which a session expires: 20 minutes, as OpenAI's containers.
    public var sessionIdleSeconds: Int
    /// How long stored files (outputs, figures, uploads) are kept: 24 h by default, as OpenAI's.
    public var fileRetentionSeconds: Int = 86_400

    var fileRetention: Duration { .seconds(fileRetentionSeconds) }

    public static let defaultPreload = [
        "numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats", "scipy.optimize", "PIL.Image",
        "seaborn", "sklearn", "sklearn.linear_model", "sympy", "openpyxl", "reportlab",
    ]

    public init(dataDirectory: String, workerExecutable: String, profileDirectories: [String], slots: Int = 4,
                uidBase: UInt32 = 2_000_000, preload: [String] = EngineConfiguration.defaultPreload,
                maxQueued: Int = 64, sessionSlots: Int = 8, sessionIdleSeconds: Int = 1200) {
        self.dataDirectory = dataDirectory
        self.workerExecutable = workerExecutable
        self.profileDirectories = profileDirectories
        self.slots = slots
        self.uidBase = uidBase
        self.preload = preload
        self.maxQueued = maxQueued
        self.sessionSlots = sessionSlots
        self.sessionIdleSeconds = sessionIdleSeconds
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
    let sessionSlots: SessionSlots
    let sessionBook = SessionBook()
    struct State {
        var worker: WorkerProcess?
        var hello: WorkerHello?
        var profiles: [String: (SandboxProfile, CompiledFilter)] = [:]
    }
    let state = Mutex(State())
    private let startLock = AsyncLock()
    private let nextJob = Atomic<UInt32>(0)

    public init(configuration: EngineConfiguration, logger: Logger = Logger(label: "codeinterp.engine")) throws {
        self.configuration = configuration
        self.logger = logger
        for dir in ["", "/work", "/logs", "/sessions"] {
            try FileManager.default.createDirectory(atPath: configuration.dataDirectory + dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        }
        store = try FileStore(directory: configuration.dataDirectory)
        slots = SlotPool(count: configuration.slots, maxWaiting: configuration.maxQueued)
        // Session interpreters get the worker slots after the executions' ones.
        sessionSlots = SessionSlots(slots: configuration.slots..<(configuration.slots + configuration.sessionSlots),
                                    maxWaiting: configuration.maxQueued)
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
                arguments: ["--control-fd", "3", "--slots", String(configuration.slots + configuration.sessionSlots),
                            "--uid-base", String(configuration.uidBase),
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
    /// With a `sessionId` the code runs in that session's interpreter, after the session's earlier executions.
    public func execute(_ request: ExecutionRequest,
                        output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)? = nil) async throws -> ExecutionResult {
        if let t = request.timeoutSeconds, !(t > 0) { throw EngineError(.badRequest, "timeout must be positive") }
        if let m = request.memoryBytes, m <= 0 { throw EngineError(.badRequest, "memory limit must be positive") }
        let inputs = try request.fileIds.map { id throws(EngineError) -> StoredFile in
            guard let file = try? store.file(id: id) else { throw EngineError(.notFound, "no file with id \(id)") }
            return file
        }
        if let sessionId = request.sessionId {
            let session = try requireSession(sessionId)
            return try await sessionBook.lock(session.id).withLock {
                try await executeInSession(request, session: session, inputs: inputs, output: output)
            }
        }

        let (profile, filter, limits) = try plan(request, profileName: request.profile)
        let worker = try await readyWorker(filter)
        let slot = try await slots.acquire()
        defer { slots.release(slot) }
        let id = request.id
        let workdir = "\(configuration.dataDirectory)/work/\(id)"
        guard mkdir(workdir, 0o700) == 0 else {
            throw EngineError(.workerFailed, "cannot create \(workdir): \(String(cString: strerror(errno)))")
        }
        defer { removeTree(workdir) }
        var known: [String: FileStamp] = [:]
        for file in inputs {
            let name = try FileNames.sanitize(file.name)
            try copyFile(from: store.blobPath(for: file), intoDirectory: workdir, name: name, owner: nil)
            known[name] = FileStamp(path: workdir + "/" + name)
        }

        let run = try await runJob(ExecuteRequest(
            code: request.code, workdir: workdir, slot: slot, filterKey: filter.key,
            network: request.network && profile.network, limits: limits), worker: worker, output: output)
        var result = assemble(id: id, run: run, limits: limits, sessionId: nil)
        let collected = FileCollector(limits: limits, store: store, sessionId: nil, retention: configuration.fileRetention).collect(workdir: workdir, known: known)
        addCollected(collected, to: &result)
        return result
    }

    /// One cell in a session's interpreter; the caller holds the session's lock.
    private func executeInSession(_ request: ExecutionRequest, session: SessionRecord, inputs: [StoredFile],
                                  output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)?) async throws -> ExecutionResult {
        let (profile, filter, limits) = try plan(request, profileName: session.profile)
        // Active from the start: a sweep must not expire a session in the middle of a long cell.
        _ = try? store.touchSession(id: session.id)
        let worker = try await readyWorker(filter)
        for file in inputs { _ = try addSessionFile(sessionId: session.id, fileId: file.id) }
        let workdir = sessionDirectory(session.id)
        let known = try sessionStamps(session, workdir: workdir)

        let grant = try await sessionSlots.acquire(session: session.id)
        var alive = false
        defer { sessionSlots.release(session: session.id, alive: alive) }
        if let evicted = grant.evicted { worker.closeSession(evicted, slot: grant.slot) }
        // A new interpreter may run as another uid than the one that wrote the session's files.
        if !grant.wasLive, let uid = uidForSlot(grant.slot) { chownTree(workdir, to: uid) }

        let id = request.id
        let run = try await runJob(ExecuteRequest(
            code: request.code, workdir: workdir, slot: grant.slot, filterKey: filter.key,
            network: request.network && profile.network, limits: limits, session: session.id), worker: worker, output: output)
        alive = run.report.interpreterAlive
        var result = assemble(id: id, run: run, limits: limits, sessionId: session.id)
        if run.report.freshInterpreter && session.executionCount > 0 {
            result.stderr = "[codeinterp] this session's interpreter was restarted: variables, imports and functions "
                + "from earlier executions are gone (files in /mnt/data are kept).\n" + result.stderr
        }
        if !alive {
            result.stderr += "\n[codeinterp] the session's interpreter stopped (\(result.status.rawValue)); its files in "
                + "/mnt/data are kept and the next execution starts a fresh interpreter.\n"
        }

        let collected = FileCollector(limits: limits, store: store, sessionId: session.id, retention: configuration.fileRetention).collect(workdir: workdir, known: known)
        for file in collected.files { try? store.makeCurrent(file) }
        for path in Set(known.keys).subtracting(collected.seen.keys) { try? store.retire(sessionId: session.id, path: "/mnt/data/" + path) }
        sessionBook.setStamps(session.id, collected.seen)
        addCollected(collected, to: &result)
        _ = try? store.touchSession(id: session.id, execution: true)
        return result
    }

    /// What /mnt/data of a session held after its last collection. After a restart of the engine: the files the
    /// store lists as current, where they are still unchanged on disk.
    private func sessionStamps(_ session: SessionRecord, workdir: String) throws -> [String: FileStamp] {
        if let stamps = sessionBook.stamps(session.id) { return stamps }
        var stamps: [String: FileStamp] = [:]
        for file in try store.currentFiles(sessionId: session.id) where file.path.hasPrefix("/mnt/data/") {
            let relative = String(file.path.dropFirst("/mnt/data/".count))
            if let stamp = FileStamp(path: workdir + "/" + relative), stamp.size == file.sizeBytes { stamps[relative] = stamp }
        }
        sessionBook.setStamps(session.id, stamps)
        return stamps
    }

    private func plan(_ request: ExecutionRequest, profileName: String) throws -> (SandboxProfile, CompiledFilter, Limits) {
        let (profile, filter) = try profile(profileName)
        if request.network && !profile.network {
            throw EngineError(.badRequest, "profile \"\(profile.name)\" does not allow network access")
        }
        return (profile, filter, profile.limits.tightened(wallSeconds: request.timeoutSeconds, memoryBytes: request.memoryBytes))
    }

    private func readyWorker(_ filter: CompiledFilter) async throws -> WorkerProcess {
        try await start()
        guard let worker = state.withLock({ $0.worker }) else { throw EngineError(.workerDied, "no worker") }
        if !worker.hasFilter(filter.key) { try worker.loadFilter(FilterLoad(key: filter.key, bpf: filter.bpf)) }
        return worker
    }

    struct JobRun {
        var report: ChildReport
        var stdout: [UInt8]
        var stderr: [UInt8]
    }

    /// Sends one job to the worker and gathers its frames until it is over.
    private func runJob(_ request: ExecuteRequest, worker: WorkerProcess,
                        output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)?) async throws -> JobRun {
        let job = nextJob.add(1, ordering: .relaxed).newValue
        let stream = try worker.start(job: job, request)
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
        return JobRun(report: report, stdout: stdout, stderr: stderr)
    }

    /// The result of a finished job, with its figures stored as display files.
    private func assemble(id: String, run: JobRun, limits: Limits, sessionId: String?) -> ExecutionResult {
        let report = run.report
        var result = ExecutionResult(
            id: "exec_\(id)", sessionId: sessionId, status: report.status,
            stdout: String(decoding: run.stdout, as: UTF8.self), stderr: String(decoding: run.stderr, as: UTF8.self),
            truncated: Truncation(stdout: report.stdoutTruncated, stderr: report.stderrTruncated),
            result: report.outcome?.result, error: report.outcome?.error,
            usage: Usage(wallMs: report.wallMs, cpuMs: report.cpuMs, maxRssKb: report.maxRssKb),
            blockedSyscall: report.blockedSyscall)
        result.error = result.error ?? Self.errorFor(report: report, limits: limits)

        for (i, image) in (report.outcome?.displays ?? []).enumerated() {
            guard let bytes = Data(base64Encoded: image.data) else { continue }
            let ext = image.mimeType == "image/png" ? "png" : (image.mimeType.split(separator: "/").last.map(String.init) ?? "bin")
            if let file = try? store.store(bytes: Array(bytes), name: "figure-\(i + 1).\(ext)", path: "", source: "assistant",
                                           kind: "display", sessionId: sessionId, retention: configuration.fileRetention) {
                result.displays.append(Display(mimeType: file.mimeType, fileId: file.id))
                result.files.append(file.ref(storePath: store.blobPath(for: file)))
            }
        }
        logger.debug("execution finished", metadata: ["execution_id": "\(result.id)", "status": "\(result.status.rawValue)",
                                                      "wall_ms": "\(report.wallMs)"])
        return result
    }

    private func addCollected(_ collected: FileCollector.Outcome, to result: inout ExecutionResult) {
        result.files.insert(contentsOf: collected.files.map { $0.ref(storePath: store.blobPath(for: $0)) }, at: 0)
        if !collected.skipped.isEmpty {
            result.stderr += "\n[codeinterp] not collected: " + collected.skipped.joined(separator: "; ") + "\n"
        }
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
