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

/// A request whose session and input files were found (`ExecutionEngine.prepare`).
public struct PreparedExecution: Sendable {
    public let request: ExecutionRequest
    let session: SessionRecord?
    let inputs: [StoredFile]
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
    /// Stateless children kept forked and isolated ahead of demand, per profile in use; nil: as many as
    /// `slots` (every execution that may run at once finds one). 0 forks every execution on demand.
    public var warmChildren: Int?
    /// Spare session interpreters kept forked and isolated (in a slot of their own, with an empty /mnt/data) for
    /// the next session that needs a new interpreter, per profile in use; nil: 1.
    public var warmSessions: Int?

    var poolTarget: Int { max(0, warmChildren ?? slots) }
    /// Slots (uids and cgroups) of stateless children: the running ones and the warm ones.
    var statelessSlots: Int { slots + poolTarget }
    var spareInterpreters: Int { max(0, warmSessions ?? 1) }
    /// Slots of sessions' interpreters, live and spare, after the stateless children's.
    var sessionSlotRange: Range<Int> { statelessSlots..<(statelessSlots + sessionSlots + spareInterpreters) }

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
    /// Admission: executions that run at once (`slots`), and a bounded queue behind them.
    private let runs: SlotPool
    /// Identities (uid + cgroup) of stateless children, held from fork until every process of the child is gone.
    private let childSlots: SlotPool
    let sessionSlots: SessionSlots
    let sessionBook = SessionBook()
    let pool: WarmPool
    /// Spare interpreters for new sessions.
    let sessionPool: WarmPool
    struct State {
        var worker: WorkerProcess?
        var hello: WorkerHello?
        var profiles: [String: (SandboxProfile, CompiledFilter, FileStamp?)] = [:]
        /// Each session's live interpreter.
        var interpreters: [String: SessionInterpreter] = [:]
        /// /mnt/data directories of stateless children, from fork to removal (a sweep leaves them alone).
        var workdirs: Set<String> = []
        /// Replaced zygotes whose children are still running (`restartWorker`).
        var retiredWorkers: [WorkerProcess] = []
    }
    let state = Mutex(State())
    /// DATA/work.lock, held shared for the engine's life: an engine that starts while none holds it removes what
    /// a killed one left in work/.
    private let workLock: Int32
    let startLock = AsyncLock()
    private let nextChild = Atomic<UInt32>(0)

    public init(configuration: EngineConfiguration, logger: Logger = Logger(label: "codeinterp.engine")) throws {
        self.configuration = configuration
        self.logger = logger
        // The engine writes code into children's pipes: a child that died must fail the write, not kill us.
        signal(SIGPIPE, SIG_IGN)
        for dir in ["", "/work", "/logs", "/sessions"] {
            try FileManager.default.createDirectory(atPath: configuration.dataDirectory + dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        }
        workLock = open(configuration.dataDirectory + "/work.lock", O_RDONLY | O_CREAT | O_CLOEXEC, 0o600)
        if workLock >= 0 && flock(workLock, LOCK_EX | LOCK_NB) == 0 {
            Self.removeLeftoverWork(configuration.dataDirectory + "/work", logger: logger)
        }
        if workLock >= 0 { flock(workLock, LOCK_SH) }
        store = try FileStore(directory: configuration.dataDirectory)
        runs = SlotPool(count: configuration.slots, maxWaiting: configuration.maxQueued)
        let childSlots = SlotPool(count: configuration.statelessSlots)
        self.childSlots = childSlots
        sessionSlots = SessionSlots(slots: configuration.sessionSlotRange, maxLive: configuration.sessionSlots,
                                    maxWaiting: configuration.maxQueued)
        let box = EngineBox()
        // A stateless pool's primed child: asked once the pool has had no execution for a moment (see WarmPool).
        pool = WarmPool(target: configuration.poolTarget, primeWhenQuietFor: .milliseconds(50), logger: logger, make: { key, wait in
            try await box.engine?.spawnStateless(key, waitForSlot: wait)
        }, retire: { box.engine?.retireWorkdir($0) })
        sessionPool = WarmPool(target: configuration.spareInterpreters, logger: logger, make: { key, _ in
            try await box.engine?.spawnSpareInterpreter(key)
        }, retire: { box.engine?.retireWorkdir($0) })
        box.engine = self
    }

    /// Starts the zygote (if it is not running) and returns what it reported once ready.
    @discardableResult
    public func start() async throws -> WorkerHello {
        try await startLock.withLock {
            if let (worker, hello) = state.withLock({ s in s.worker.map { ($0, s.hello!) } }), worker.isAlive {
                return hello
            }
            let (worker, hello) = try await launchWorker(logger: logger)
            state.withLock { s in
                s.worker = worker
                s.hello = hello
            }
            pool.reopen()
            sessionPool.reopen()
            return hello
        }
    }

    /// Starts the worker and fills the pools of `profile` (stateless children and a spare session interpreter)
    /// in the background, so that even the first executions start warm. Failures are logged; executions then fork
    /// on demand and say why.
    public func prewarm(profile name: String = "default") async {
        do {
            let (profile, filter) = try profile(name)
            _ = try await readyWorker(filter)
            let key = PoolKey(profileName: name, filterKey: filter.key, network: false, limits: profile.limits)
            pool.prewarm(key)
            sessionPool.prewarm(key)
        } catch {
            logger.warning("cannot fill the warm pools ahead of the first execution", metadata: ["profile": "\(name)", "error": "\(error)"])
        }
    }

    /// Loads and compiles a profile by name or path, once per version of its file.
    public func profile(_ nameOrPath: String) throws -> (SandboxProfile, CompiledFilter) {
        if let (profile, filter, stamp) = state.withLock({ $0.profiles[nameOrPath] }),
           stamp == nil || FileStamp(path: profile.source) == stamp {
            return (profile, filter)
        }
        do {
            let profile = try SandboxProfile.load(nameOrPath, searching: configuration.profileDirectories)
            let filter = try SeccompCompiler.compile(profile)
            state.withLock { $0.profiles[nameOrPath] = (profile, filter, FileStamp(path: profile.source)) }
            return (profile, filter)
        } catch {
            throw EngineError(.profile, error.description)
        }
    }

    /// Runs one execution to completion. `output` receives stdout/stderr chunks as the code prints them.
    /// With a `sessionId` the code runs in that session's interpreter, after the session's earlier executions.
    public func execute(_ request: ExecutionRequest,
                        output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)? = nil) async throws -> ExecutionResult {
        try await execute(try prepare(request), output: output)
    }

    /// Checks a request against the store (its limits, its session, its input files) without running anything:
    /// what a caller that must answer before the run starts (a stream's status line) checks, once.
    /// An unknown session or file is `EngineError.notFound` with its `subject`.
    public func prepare(_ request: ExecutionRequest) throws(EngineError) -> PreparedExecution {
        if let t = request.timeoutSeconds, !(t > 0) { throw EngineError(.badRequest, "timeout must be positive") }
        if let m = request.memoryBytes, m <= 0 { throw EngineError(.badRequest, "memory limit must be positive") }
        let session = try request.sessionId.map { id throws(EngineError) in try requireSession(id) }
        var inputs: [StoredFile] = []
        for (i, id) in request.fileIds.enumerated() {
            guard let file = try? store.file(id: id) else {
                throw EngineError(.notFound, "no file with id \(id)", subject: .file(index: i, id: id))
            }
            inputs.append(file)
        }
        return PreparedExecution(request: request, session: session, inputs: inputs)
    }

    /// Runs a request `prepare` checked.
    public func execute(_ prepared: PreparedExecution,
                        output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)? = nil) async throws -> ExecutionResult {
        let (request, inputs) = (prepared.request, prepared.inputs)
        if let session = prepared.session {
            return try await sessionBook.lock(session.id).withLock {
                try await executeInSession(request, session: session, inputs: inputs, output: output)
            }
        }

        let queued = monotonicSeconds()
        let (profile, filter, limits) = try plan(request, profileName: request.profile)
        let ticket = try await runs.acquire()
        defer { runs.release(ticket) }
        var stages = StageTimes(queueMs: elapsedMs(since: queued))
        let id = request.id

        var started = monotonicSeconds()
        _ = try await readyWorker(filter)
        let key = PoolKey(profileName: request.profile, filterKey: filter.key, network: request.network && profile.network,
                          limits: profile.limits)
        let (warm, fromPool, refillDeferred) = try await pool.take(key, forChart: WarmPool.mayDrawCharts(request.code))
        defer {
            retireWorkdir(warm.workdir)
            warm.child.releaseDataDirectory()
            pool.finished(key, refill: refillDeferred)
        }
        var known: [String: FileStamp] = [:]
        // The child's /mnt/data: its own tmpfs (the byte budget), or a host directory where there are no namespaces.
        let data: Int32
        do {
            data = try openDataDirectory(warm)
        } catch {
            warm.child.kill()
            _ = await warm.child.waitForExit()
            if let message = warm.child.setupFailure() { throw EngineError(.sandboxSetup, message) }
            throw error
        }
        defer { close(data) }
        do {
            if limits.memoryBytes < profile.limits.memoryBytes {
                try await warm.child.setLimits(ChildLimits(memoryBytes: limits.memoryBytes))
            }
            if !inputs.isEmpty {
                known = try await blockingIO { [self] in
                    var stamps: [String: FileStamp] = [:]
                    for file in inputs {
                        let name = try FileNames.sanitize(file.name)
                        do {
                            try copyFile(from: store.blobPath(for: file), intoDirectoryFd: data, name: name, owner: uidForSlot(warm.slot))
                        } catch {
                            guard warm.workdir.isEmpty && Self.isFull(data) else { throw error }
                            throw EngineError(.tooLarge, "the input files do not fit in /mnt/data, whose budget is "
                                + "\(Limits.describeBytes(limits.dataBytes)) (data_bytes of profile \"\(profile.name)\")")
                        }
                        stamps[name] = FileStamp(at: data, name: name)
                    }
                    return stamps
                }
            }
        } catch {
            warm.child.kill()
            _ = await warm.child.waitForExit()
            if let message = warm.child.setupFailure() { throw EngineError(.sandboxSetup, message) }
            throw error
        }
        stages.startMs = elapsedMs(since: started)
        stages.warm = fromPool

        started = monotonicSeconds()
        let lowerMemory = limits.memoryBytes < profile.limits.memoryBytes ? limits.memoryBytes : nil
        let run = await warm.child.run(code: request.code, limits: limits, memoryBytes: lowerMemory, output: output)
        // Files are collected once nothing of the execution can touch them: when the child said it was alone and
        // exiting (its teardown then happens off the request path), else once the kernel has ended all of it.
        var exit: ChildExit?
        if run.complete && run.usage?.alone == true {
            let child = warm.child
            child.onExit { child.closeDescriptors() }
        } else {
            exit = await warm.child.waitForExit()
            warm.child.closeDescriptors()
        }
        // The caller went away and the child was killed for it: there is no result to give anyone.
        try Task.checkCancellation()
        stages.runMs = elapsedMs(since: started)
        let report = try childReport(run, exit: exit, fresh: true, cpuMsBefore: 0, session: false, limits: limits)
        let inputStamps = known
        var (result, storeMs, collectMs) = try await blockingIO { [self] in
            var started = monotonicSeconds()
            var result = assemble(id: id, report: report, run: run, limits: limits, sessionId: nil)
            let storeMs = elapsedMs(since: started)
            started = monotonicSeconds()
            let collected = FileCollector(limits: limits, store: store, sessionId: nil, retention: configuration.fileRetention)
                .collect(directory: data, known: inputStamps)
            addCollected(collected, to: &result)
            if warm.workdir.isEmpty && Self.isFull(data) {
                result.stderr += "\n[codeinterp] /mnt/data reached its budget of \(Limits.describeBytes(limits.dataBytes)) (data_bytes of "
                    + "profile \"\(profile.name)\"): writes past it failed with ENOSPC (No space left on device).\n"
            }
            return (result, storeMs, elapsedMs(since: started))
        }
        (stages.storeMs, stages.collectMs) = (storeMs, collectMs)
        result.usage.record(stages)
        return result
    }

    /// A directory descriptor of a stateless child's /mnt/data (the caller closes it).
    private func openDataDirectory(_ warm: WarmChild) throws(EngineError) -> Int32 {
        let fd: Int32
        if warm.workdir.isEmpty {
            guard let own = warm.child.dataDirectory else {
                throw EngineError(.sandboxSetup, "the sandbox did not hand over its /mnt/data")
            }
            fd = fcntl(own, F_DUPFD_CLOEXEC, 0)
        } else {
            fd = open(warm.workdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        }
        guard fd >= 0 else { throw EngineError(.workerFailed, "cannot open /mnt/data: \(String(cString: strerror(errno)))") }
        return fd
    }

    /// Whether the file system of `directory` (a child's tmpfs) has no room left.
    static func isFull(_ directory: Int32) -> Bool {
        var st = statvfs()
        return fstatvfs(directory, &st) == 0 && st.f_bavail == 0
    }

    deinit { if workLock >= 0 { close(workLock) } }

    /// What an engine that was killed (kill -9, a crash) left in work/, removed when no other engine of the data
    /// directory runs: stateless children's directories, spare interpreters' (empty) ones, upload spool files.
    /// A spare's directory with files in it is a session's /mnt/data caught in the middle of its adoption: it
    /// stays (for an operator, and the hourly sweep). Sessions' own directories are under sessions/, untouched.
    static func removeLeftoverWork(_ work: String, logger: Logger) {
        var removed = 0
        for name in directoryEntryNames(atPath: work) ?? [] {
            let path = work + "/" + name
            if name.hasPrefix(".upload-") {
                if unlink(path) == 0 { removed += 1 }
            } else if name.hasPrefix("spare-") {
                if rmdir(path) == 0 {
                    removed += 1
                } else {
                    logger.warning("a spare interpreter's directory holds files (an adoption the stop interrupted); left in place",
                                   metadata: ["path": "\(path)"])
                }
            } else if FileStore.canonicalID(name) != nil {
                removeTree(path)
                removed += 1
            }
        }
        if removed > 0 { logger.info("removed what a stopped engine left in work/", metadata: ["entries": "\(removed)"]) }
    }

    /// Removes a stateless child's /mnt/data (nothing to do for a tmpfs of its own, which goes with the child).
    func retireWorkdir(_ path: String) {
        guard !path.isEmpty else { return }
        removeTree(path)
        state.withLock { _ = $0.workdirs.remove(path) }
    }

    /// /mnt/data directories of stateless children that exist now (waiting, running, being made).
    var liveWorkdirs: Set<String> { state.withLock { $0.workdirs } }

    /// Forks one stateless child for the pool (or on demand): a slot, a fresh /mnt/data, the spawn. The slot and
    /// the directory come back once the child and its namespace are gone.
    func spawnStateless(_ key: PoolKey, waitForSlot: Bool) async throws -> WarmChild? {
        let slot: Int
        if waitForSlot { slot = try await childSlots.acquire() } else {
            guard let free = childSlots.tryAcquire() else { return nil }
            slot = free
        }
        let (child, workdir): (SandboxChild, String)
        do { (child, workdir) = try await spawnAhead(key, slot: slot, session: false) } catch {
            childSlots.release(slot)
            throw error
        }
        let slots = childSlots
        // A refill that found no free slot gave up: the slot coming back is its cue to try again. The zygote says
        // the child exited once its slot's group is empty too; a slot that keeps processes is never used again.
        child.onExit { [weak self, logger = self.logger] in
            if child.exitReport?.slotLeaked == true {
                logger.error("a stateless slot keeps processes after its execution; it is out of use", metadata: ["slot": "\(slot)"])
                return
            }
            slots.release(slot)
            self?.pool.refill(key)
        }
        return WarmChild(child: child, slot: slot, workdir: workdir)
    }

    /// Forks a spare interpreter for the next new session of `key`'s profile, in a spare slot with an empty
    /// /mnt/data of its own; nil when no spare slot is free.
    func spawnSpareInterpreter(_ key: PoolKey) async throws -> WarmChild? {
        guard let slot = sessionSlots.takeSpare() else { return nil }
        let (child, workdir): (SandboxChild, String)
        do { (child, workdir) = try await spawnAhead(key, slot: slot, session: true) } catch {
            sessionSlots.releaseSpare(slot, child: nil)
            throw error
        }
        // Adopted by a session, the slot is that session's; else it is free again once the spare is gone.
        let slots = sessionSlots
        slots.spareForked(slot, child: child.id)
        child.onExit { slots.releaseSpare(slot, child: child.id) }
        return WarmChild(child: child, slot: slot, workdir: workdir)
    }

    /// Whether children make their /mnt/data a tmpfs of their byte budget (they have mount namespaces).
    var childrenHaveOwnData: Bool {
        state.withLock { s in s.hello.map { $0.isolation.root || $0.isolation.userNamespace } ?? false }
    }

    /// A fresh /mnt/data, and a child forked into `slot` for it: a tmpfs of its byte budget that the child makes
    /// (its workdir is ""), where the host gives children mount namespaces; else an empty directory under work/
    /// (a spare interpreter's becomes the session's when one adopts it).
    private func spawnAhead(_ key: PoolKey, slot: Int, session: Bool) async throws -> (SandboxChild, String) {
        if childrenHaveOwnData, let worker = state.withLock({ $0.worker }), worker.isAlive {
            let (_, filter) = try profile(key.profileName)
            guard filter.key == key.filterKey else { throw EngineError(.profile, "profile \(key.profileName) changed") }
            let child = try await worker.spawn(child: nextChild.add(1, ordering: .relaxed).newValue, SpawnRequest(
                workdir: "", slot: slot, filterKey: filter.key, network: key.network, limits: key.limits, session: session,
                dataBytes: key.limits.dataBytes))
            return (child, "")
        }
        let workdir = "\(configuration.dataDirectory)/work/\(session ? "spare-" : "")\(UUID().uuidString.lowercased())"
        state.withLock { _ = $0.workdirs.insert(workdir) }
        guard mkdir(workdir, 0o700) == 0 else {
            state.withLock { _ = $0.workdirs.remove(workdir) }
            throw EngineError(.workerFailed, "cannot create \(workdir): \(String(cString: strerror(errno)))")
        }
        do {
            guard let worker = state.withLock({ $0.worker }), worker.isAlive else { throw EngineError(.workerDied, "no worker") }
            let (_, filter) = try profile(key.profileName)
            guard filter.key == key.filterKey else { throw EngineError(.profile, "profile \(key.profileName) changed") }
            let child = try await worker.spawn(child: nextChild.add(1, ordering: .relaxed).newValue, SpawnRequest(
                workdir: workdir, slot: slot, filterKey: filter.key, network: key.network, limits: key.limits, session: session))
            return (child, workdir)
        } catch {
            retireWorkdir(workdir)
            throw error
        }
    }

    /// Gives a session the spare interpreter `spare`: the session's files move into the spare's /mnt/data, which
    /// then takes the place of the session's directory, and the spare's slot becomes the session's. False (the
    /// spare killed, the files where they were) when that cannot be done.
    private func adopt(_ spare: WarmChild, session: String, workdir: String) -> Bool {
        if spare.workdir.isEmpty {
            // Its /mnt/data is a tmpfs of its own: the session's files are copied in once the slot is the session's.
            guard sessionSlots.adopt(session: session, spare: spare.slot) else {
                spare.child.kill()
                return false
            }
            return true
        }
        enum Step { case adopted, filesStayed, slotRefused }
        let step = sessionBook.withDirectory(session) { () -> Step in
            guard moveEntries(from: workdir, to: spare.workdir) else { return .filesStayed }
            guard rename(spare.workdir, workdir) == 0 else {
                _ = moveEntries(from: spare.workdir, to: workdir)
                return .filesStayed
            }
            guard sessionSlots.adopt(session: session, spare: spare.slot) else { return .slotRefused }
            // The files were written by the session's earlier interpreter, which may have run as another uid.
            if let uid = uidForSlot(spare.slot) { chownTree(workdir, to: uid) }
            return .adopted
        }
        switch step {
        case .adopted, .slotRefused:
            // The spare's directory is the session's now, under the session's name.
            state.withLock { _ = $0.workdirs.remove(spare.workdir) }
        case .filesStayed:
            logger.warning("cannot move a session's files to a spare interpreter; forking one", metadata: ["session": "\(session)"])
            spare.child.kill()
            retireWorkdir(spare.workdir)
        }
        if step == .slotRefused { spare.child.kill() }
        return step == .adopted
    }

    /// One cell in a session's interpreter; the caller holds the session's lock.
    private func executeInSession(_ request: ExecutionRequest, session: SessionRecord, inputs: [StoredFile],
                                  output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)?) async throws -> ExecutionResult {
        let queued = monotonicSeconds()
        let (profile, filter, _) = try plan(request, profileName: session.profile)
        // The session's own memory (a container's memory_limit) in place of the profile's; a request lowers either.
        let sessionLimits = {
            var l = profile.limits
            if let memory = session.memoryBytes { l.memoryBytes = memory }
            return l
        }()
        let limits = sessionLimits.tightened(wallSeconds: request.timeoutSeconds, memoryBytes: request.memoryBytes)
        // Active from the start: a sweep must not expire a session in the middle of a long cell.
        _ = try? store.touchSession(id: session.id)
        let worker = try await readyWorker(filter)
        let workdir = sessionDirectory(session.id)
        let known = try await blockingIO { [self] in
            for file in inputs { _ = try addSessionFile(sessionId: session.id, fileId: file.id) }
            return try sessionStamps(session, workdir: workdir)
        }

        let grant = try await sessionSlots.acquire(session: session.id)
        var alive = false
        defer {
            sessionSlots.release(session: session.id, alive: alive)
            if !alive { sessionPool.refillAll() }
        }
        var stages = StageTimes(queueMs: elapsedMs(since: queued))
        var started = monotonicSeconds()
        if let evicted = grant.evicted, let old = state.withLock({ $0.interpreters.removeValue(forKey: evicted) }) {
            // Its slot is ours once the zygote has reaped it.
            old.child.kill()
            _ = await old.child.waitForExit()
            old.child.closeDescriptors()
            // What it wrote since its last cell (a thread of its own) is kept too.
            _ = saveSessionData(evicted, from: old.child, release: true)
        }
        var interpreter = state.withLock { $0.interpreters[session.id] }
        if let i = interpreter, i.child.hasExited || !grant.wasLive {
            i.child.kill()
            _ = await i.child.waitForExit()
            i.child.closeDescriptors()
            _ = saveSessionData(session.id, from: i.child, release: true)
            interpreter = nil
        }
        let fresh = interpreter == nil
        var spare = false
        do {
            if interpreter == nil {
                let key = PoolKey(profileName: session.profile, filterKey: filter.key, network: request.network && profile.network,
                                  limits: sessionLimits)
                // Spares are made with the profile's limits: a session with memory of its own forks its interpreter.
                if session.memoryBytes == nil, let warm = sessionPool.takeWarm(key, refill: false),
                   adopt(warm, session: session.id, workdir: workdir) {
                    interpreter = SessionInterpreter(child: warm.child, slot: warm.slot)
                    spare = true
                } else {
                    let ownData = childrenHaveOwnData
                    // A new interpreter may run as another uid than the one that wrote the session's files.
                    if !ownData, let uid = uidForSlot(grant.slot) { chownTree(workdir, to: uid) }
                    let child = try await worker.spawn(child: nextChild.add(1, ordering: .relaxed).newValue, SpawnRequest(
                        workdir: workdir, slot: grant.slot, filterKey: filter.key, network: key.network,
                        limits: sessionLimits, session: true, dataBytes: ownData ? sessionLimits.dataBytes : nil))
                    interpreter = SessionInterpreter(child: child, slot: grant.slot)
                }
                if let data = interpreter!.child.dataDirectory {
                    let (owner, made) = (uidForSlot(interpreter!.slot), interpreter!)
                    try await blockingIO { [self] in
                        // Made the session's interpreter under the directory's lock, as the copy ends: an upload
                        // from then on goes into its /mnt/data too, and one before it is in what was copied. (Made
                        // after the lock, an upload in between would reach only the directory, and the cell's save
                        // of a /mnt/data without it would remove it there.)
                        try fillSessionData(session.id, into: data, owner: owner, budget: sessionLimits.dataBytes, profile: profile.name) {
                            state.withLock { $0.interpreters[session.id] = made }
                        }
                    }
                } else if childrenHaveOwnData {
                    throw EngineError(.sandboxSetup, "the sandbox did not hand over its /mnt/data")
                }
                // The slot given back by an adoption (or this profile's first session) makes the next spare.
                if session.memoryBytes == nil { sessionPool.refill(key) }
                state.withLock { $0.interpreters[session.id] = interpreter }
            }
            // Every cell gets the whole CPU allowance, whatever the interpreter used before; the zygote enforces it.
            try await interpreter!.child.setLimits(ChildLimits(cpuSeconds: limits.cpuSeconds, memoryBytes: limits.memoryBytes))
        } catch {
            state.withLock { _ = $0.interpreters.removeValue(forKey: session.id) }
            if let child = interpreter?.child {
                child.kill()
                _ = await child.waitForExit()
                // A child that could not confine itself is gone before its limits could be set: say why.
                if let message = child.setupFailure() { throw EngineError(.sandboxSetup, message) }
            }
            throw error
        }
        let child = interpreter!.child
        stages.startMs = elapsedMs(since: started)
        stages.warm = !fresh || spare

        started = monotonicSeconds()
        let run = await child.run(code: request.code, limits: limits,
                                  memoryBytes: limits.memoryBytes < sessionLimits.memoryBytes ? limits.memoryBytes : nil, output: output)
        var exit: ChildExit?
        if run.complete {
            alive = true
            state.withLock { s in s.interpreters[session.id]?.cpuMs = run.usage?.cpu_ms ?? 0 }
        } else {
            exit = await child.waitForExit()
            child.closeDescriptors()
            state.withLock { s in
                if s.interpreters[session.id]?.child === child { s.interpreters[session.id] = nil }
            }
        }
        stages.runMs = elapsedMs(since: started)
        // What the cell left in /mnt/data goes to the session's directory, which the collector then reads: its
        // files outlive this interpreter and the engine. (Counted with the collection.) Saved even when the caller
        // went away (`blockingIO` is not cancelled with it): the cell ran, and its files are the session's.
        let release = !alive
        let (full, unsaved, savedMs) = try await blockingIO { [self] in
            let saving = monotonicSeconds()
            let full = child.dataDirectory.map(Self.isFull) ?? false
            let unsaved = saveSessionData(session.id, from: child, release: release)
            return (full, unsaved, elapsedMs(since: saving))
        }
        try Task.checkCancellation()
        let report = try childReport(run, exit: exit, fresh: fresh, cpuMsBefore: interpreter!.cpuMs, session: true, limits: limits)
        var (result, storeMs, collectMs) = try await blockingIO { [self] in
            var started = monotonicSeconds()
            var result = assemble(id: request.id, report: report, run: run, limits: limits, sessionId: session.id)
            let storeMs = elapsedMs(since: started)
            if let unsaved { Self.reportUnstored([unsaved], in: &result) }
            if full {
                result.stderr += "\n[codeinterp] /mnt/data reached its budget of \(Limits.describeBytes(sessionLimits.dataBytes)) (data_bytes of "
                    + "profile \"\(profile.name)\"): writes past it failed with ENOSPC (No space left on device).\n"
            }
            if fresh && session.executionCount > 0 {
                result.stderr = "[codeinterp] this session's interpreter was restarted: variables, imports and functions "
                    + "from earlier executions are gone (files in /mnt/data are kept).\n" + result.stderr
            }
            if release {
                result.stderr += "\n[codeinterp] the session's interpreter stopped (\(result.status.rawValue)); its files in "
                    + "/mnt/data are kept and the next execution starts a fresh interpreter.\n"
            }

            started = monotonicSeconds()
            let collected = FileCollector(limits: limits, store: store, sessionId: session.id, retention: configuration.fileRetention)
                .collect(workdir: workdir, known: known)
            for file in collected.files { try? store.makeCurrent(file) }
            for path in Set(known.keys).subtracting(collected.seen.keys) { try? store.retire(sessionId: session.id, path: "/mnt/data/" + path) }
            sessionBook.setStamps(session.id, collected.seen)
            addCollected(collected, to: &result)
            _ = try? store.touchSession(id: session.id, execution: true)
            return (result, storeMs, elapsedMs(since: started) + savedMs)
        }
        (stages.storeMs, stages.collectMs) = (storeMs, collectMs)
        result.usage.record(stages)
        return result
    }

    /// Copies a session's files from its directory on disk into a new interpreter's /mnt/data (its tmpfs).
    /// `filled` runs under the directory's lock once the copy is complete.
    private func fillSessionData(_ session: String, into data: Int32, owner: uid_t?, budget: Int64, profile: String,
                                 filled: () -> Void) throws {
        try sessionBook.withDirectory(session) {
            let disk = open(sessionDirectory(session), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard disk >= 0 else { throw EngineError(.workerFailed, "cannot open the session's directory: \(String(cString: strerror(errno)))") }
            defer { close(disk) }
            do {
                try DirectoryMirror(owner: owner).mirror(from: disk, to: data)
            } catch {
                guard (error as? DirectoryMirror.Failure)?.errno == ENOSPC else { throw EngineError(.workerFailed, "cannot copy the session's files into /mnt/data: \(error)") }
                throw EngineError(.tooLarge, "the session's files do not fit in /mnt/data, whose budget is \(Limits.describeBytes(budget)) "
                    + "(data_bytes of profile \"\(profile)\"): delete some of them")
            }
            filled()
        }
    }

    /// Saves what a session's interpreter holds in its /mnt/data (a tmpfs) to the session's directory on disk,
    /// then (`release`: the interpreter is gone) lets the tmpfs go; nil when done (or nothing to do), else what
    /// could not be saved. The release is under the directory's lock, which uploads hold while they use it.
    func saveSessionData(_ session: String, from child: SandboxChild, release: Bool) -> String? {
        guard child.dataDirectory != nil else { return nil }
        return sessionBook.withDirectory(session) { () -> String? in
            defer { if release { child.releaseDataDirectory() } }
            guard let data = child.dataDirectory else { return nil }
            let disk = open(sessionDirectory(session), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            // A session deleted meanwhile has nowhere to keep its files.
            guard disk >= 0 else { return nil }
            defer { close(disk) }
            do {
                try DirectoryMirror(owner: nil).mirror(from: data, to: disk)
                return nil
            } catch {
                return "/mnt/data (not saved to the session's directory: \(error))"
            }
        }
    }

    /// Stops a session's interpreter (deleted or expired session).
    func stopInterpreter(session id: String) {
        if let old = state.withLock({ $0.interpreters.removeValue(forKey: id) }) { old.child.kill() }
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

    /// How the execution ended, from what the child said (its result frames, its report descriptor) and what the
    /// zygote saw (exit status, rusage of the whole namespace, OOM kills).
    private func childReport(_ run: CellRun, exit: ChildExit?, fresh: Bool, cpuMsBefore: Int, session: Bool,
                             limits: Limits) throws(EngineError) -> ChildReport {
        var report = ChildReport(wallMs: run.wallMs, timedOut: run.timedOut, outputLimited: run.outputLimited,
                                 stdoutTruncated: run.stdoutTruncated, stderrTruncated: run.stderrTruncated)
        report.freshInterpreter = fresh
        for record in run.report {
            switch record {
            case .setupFailed(let message): throw EngineError(.sandboxSetup, message)
            case .blockedSyscall(let nr):
                report.blockedSyscallNumber = nr
                report.blockedSyscall = syscallName(number: nr) ?? "syscall \(nr)"
            case .signalled(let signal): report.signal = signal
            }
        }
        if run.complete, let usage = run.usage {
            report.cpuMs = max(0, usage.cpu_ms - (session ? cpuMsBefore : 0))
            report.maxRssKb = usage.max_rss_kb
            report.exitCode = 0
            report.interpreterAlive = session
        } else {
            guard let exit else { throw EngineError(.workerDied, "the worker process died during the execution") }
            if report.signal == nil {
                report.exitCode = exit.exitCode
                report.signal = exit.signal
                // Only a trap of the filter ends a sandboxed process with SIGSYS (its handler turns the trap into
                // a named record, or exits otherwise; a SIGSYS sent by a process is ignored): with no record, the
                // code had blocked the signal, and the kernel killed it at the forbidden call.
                if exit.signal == SIGSYS && report.blockedSyscallNumber == nil { report.blockedSyscallUnnamed = true }
            }
            report.cpuMs = max(0, exit.cpuMs - (session ? cpuMsBefore : 0))
            report.maxRssKb = exit.maxRssKb
            report.memoryLimited = exit.oomKilled
            report.cpuLimited = exit.cpuLimited || report.signal == SIGXCPU
                || (report.signal == SIGKILL && report.cpuMs >= limits.cpuSeconds * 1000)
            if session && report.exitCode == 0 {
                // The interpreter exited by itself in the middle of a cell (os._exit(0)): not a clean finish.
                report.exitCode = nil
            }
        }
        report.outcome = run.outcome.flatMap { try? JSONDecoder().decode(RuntimeOutcome.self, from: Data($0)) }
        return report
    }

    /// The result of a finished job, with its figures stored as display files.
    private func assemble(id: String, report: ChildReport, run: CellRun, limits: Limits, sessionId: String?) -> ExecutionResult {
        var result = ExecutionResult(
            id: "exec_\(id)", sessionId: sessionId, status: report.status,
            stdout: String(decoding: run.stdout, as: UTF8.self), stderr: String(decoding: run.stderr, as: UTF8.self),
            truncated: Truncation(stdout: report.stdoutTruncated, stderr: report.stderrTruncated),
            result: report.outcome?.result, error: report.outcome?.error,
            usage: Usage(wallMs: report.wallMs, cpuMs: report.cpuMs, maxRssKb: report.maxRssKb),
            blockedSyscall: report.blockedSyscall)
        result.error = result.error ?? Self.errorFor(report: report, limits: limits)

        var unstored: [String] = []
        let images = report.outcome?.displays ?? []
        // The outcome's displays are the last display frames before it.
        let first = run.displays.count - images.count
        for (i, image) in images.enumerated() where first + i >= 0 {
            let bytes = run.displays[first + i]
            let ext = image.mimeType == "image/png" ? "png" : (image.mimeType.split(separator: "/").last.map(String.init) ?? "bin")
            let name = "figure-\(i + 1).\(ext)"
            do {
                // The store writes a temporary name and renames it only when complete: a failure leaves nothing.
                let file = try store.store(bytes: bytes, name: name, path: "", source: "assistant",
                                           kind: "display", sessionId: sessionId, retention: configuration.fileRetention)
                result.displays.append(Display(mimeType: file.mimeType, fileId: file.id))
                result.files.append(file.ref(storePath: store.blobPath(for: file)))
            } catch {
                unstored.append("\(name) (\(error))")
            }
        }
        Self.reportUnstored(unstored, in: &result)
        logger.debug("execution finished", metadata: ["execution_id": "\(result.id)", "status": "\(result.status.rawValue)",
                                                      "wall_ms": "\(report.wallMs)"])
        return result
    }

    private func addCollected(_ collected: FileCollector.Outcome, to result: inout ExecutionResult) {
        result.files.insert(contentsOf: collected.files.map { $0.ref(storePath: store.blobPath(for: $0)) }, at: 0)
        if !collected.skipped.isEmpty {
            result.stderr += "\n[codeinterp] not collected: " + collected.skipped.joined(separator: "; ") + "\n"
        }
        Self.reportUnstored(collected.unstored, in: &result)
    }

    /// Figures or files the code made that the store could not keep (a full disk): an execution that would
    /// otherwise say `ok` fails and says which and why, rather than come back without them.
    static func reportUnstored(_ unstored: [String], in result: inout ExecutionResult) {
        guard !unstored.isEmpty else { return }
        let what = "not stored: " + unstored.joined(separator: "; ")
        result.stderr += "\n[codeinterp] \(what)\n"
        if result.status == .ok {
            result.status = .error
            result.error = ExecutionError(name: "StorageError", value: "the output could not be kept, the execution's result is "
                + "incomplete: \(what)", traceback: [])
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
            guard let name = report.blockedSyscall else {
                return ExecutionError(name: "BlockedSystemCall", value: "the sandbox stopped a forbidden system call (SIGSYS, signal 31); "
                    + "the code had blocked SIGSYS, so the kernel ended the process at the call before it could be named", traceback: [])
            }
            return ExecutionError(name: "BlockedSystemCall", value: "the sandbox stopped a forbidden system call: \(name)", traceback: [])
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
        pool.drain()
        sessionPool.drain()
        let (worker, interpreters, retired) = state.withLock { s in
            defer { s.worker = nil; s.interpreters = [:]; s.retiredWorkers = [] }
            return (s.worker, s.interpreters, s.retiredWorkers)
        }
        for (session, i) in interpreters {
            // Files written since the session's last cell are kept, as its earlier ones are.
            _ = saveSessionData(session, from: i.child, release: false)
            i.child.kill()
        }
        worker?.terminate()
        for old in retired { old.terminate() }
    }

    /// Counters of the warm pool of stateless children (for /metrics and the log).
    public var poolStatistics: WarmPoolStatistics { pool.stats }
    /// Counters of the spare session interpreters.
    public var sessionPoolStatistics: WarmPoolStatistics { sessionPool.stats }
}

/// A session's live interpreter and the CPU it has used so far (its next cell's allowance comes on top).
struct SessionInterpreter: Sendable {
    let child: SandboxChild
    let slot: Int
    var cpuMs = 0
}

/// Lets the warm pool, made in the engine's init, call back into the engine.
private final class EngineBox: @unchecked Sendable {
    weak var engine: ExecutionEngine?
}

/// Per-stage timings of one execution, reported in its usage.
struct StageTimes {
    var queueMs = 0
    var startMs = 0
    var runMs = 0
    var collectMs = 0
    var storeMs = 0
    var warm = false
    init(queueMs: Int) { self.queueMs = queueMs }
}

extension Usage {
    mutating func record(_ t: StageTimes) {
        (queueMs, startMs, runMs, collectMs, storeMs, warmStart) = (t.queueMs, t.startMs, t.runMs, t.collectMs, t.storeMs, t.warm)
    }
}

private func elapsedMs(since start: Double) -> Int { Int(((monotonicSeconds() - start) * 1000).rounded()) }

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
