/// The protocol between the engine (server or CLI) and the zygote, over one stream socket.
///
/// A frame is `u32 length (little endian, of what follows) | u8 kind | u32 job | payload`; payloads are JSON. The
/// zygote only forks, confines and reaps: a child's output never passes through it. `spawned` carries the child's
/// descriptors (SCM_RIGHTS, attached to the frame's bytes), and the engine talks to the child directly.
///
/// For `spawn`, `limits`, `kill` and every answer, `job` is the engine's id of the child.
public enum FrameKind: UInt8, Sendable {
    // engine -> worker
    case loadFilter = 1      // payload: FilterLoad JSON; job unused
    case spawn = 2           // payload: SpawnRequest JSON: fork and isolate a child that then waits for its code
    case kill = 3            // payload: empty; kill the child and everything it started
    case shutdown = 4
    case limits = 5          // payload: ChildLimits JSON; answered by `ack` once applied (prlimit from outside)
    // worker -> engine
    case hello = 10          // payload: WorkerHello JSON; sent once after preloading
    case spawned = 11        // payload: SpawnedChild JSON; descriptors: stdout, stderr, result, report (read ends), command (write end)
    case exited = 13         // payload: ChildExit JSON; the child, every process of its pid namespace and of its slot's cgroup are gone
    case rejected = 14       // payload: {"message": ...}; the spawn or limits request failed
    case ack = 16            // payload: empty; the limits are in force
}

/// The descriptors of a child, in the order `spawned` passes them, and the numbers they have inside the child.
public enum ChildDescriptor: Int, CaseIterable, Sendable {
    case stdout = 0, stderr, result, report, command
    /// The descriptor number inside the child (the runtime's side).
    public var childFd: Int32 {
        switch self {
        case .stdout: 1
        case .stderr: 2
        case .result: 3
        case .command: 4
        case .report: 5
        }
    }
}

/// Cells travel to a child's command pipe as `u32 code length | u64 memory allowance | UTF-8 code` (little
/// endian). A memory allowance above 0 lowers the interpreter's address-space limit (code + that many bytes)
/// before the code runs: a limit may only be lowered from inside, which is all a request may ask for.
public enum CellMessage {
    public static let headerSize = 12

    public static func encode(_ code: String, memoryBytes: Int64 = 0) -> [UInt8] {
        let bytes = Array(code.utf8)
        var out = [UInt8]()
        out.reserveCapacity(headerSize + bytes.count)
        withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(max(0, memoryBytes)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: bytes)
        return out
    }

    /// (code length, memory allowance) from a header of `headerSize` bytes.
    public static func decodeHeader(_ h: [UInt8]) -> (length: Int, memoryBytes: UInt64) {
        var length: UInt32 = 0, memory: UInt64 = 0
        for i in (0..<4).reversed() { length = length << 8 | UInt32(h[i]) }
        for i in (4..<12).reversed() { memory = memory << 8 | UInt64(h[i]) }
        return (Int(length), memory)
    }
}

/// What a child writes on its report descriptor, which only the engine reads: the sandbox's own account of how
/// the interpreter ended, apart from the runtime's output.
public enum ChildReportRecord: Equatable, Sendable {
    /// `S` + i32 (little endian): a kill rule of the profile stopped this system call.
    case blockedSyscall(Int32)
    /// `K` + u8: the interpreter (pid 1 of its namespace, where the kernel ignores its own fatal signals) was
    /// asked to die by this signal and did.
    case signalled(Int32)
    /// `E` + UTF-8 to the end: isolation failed before any user code ran.
    case setupFailed(String)

    /// Parses everything the child wrote (unknown or partial records are ignored: user code can write here too,
    /// and can only mislabel its own result).
    public static func parse(_ bytes: [UInt8]) -> [ChildReportRecord] {
        var records: [ChildReportRecord] = []
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "S") where i + 5 <= bytes.count:
                let v = UInt32(bytes[i + 1]) | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3]) << 16 | UInt32(bytes[i + 4]) << 24
                records.append(.blockedSyscall(Int32(bitPattern: v)))
                i += 5
            case UInt8(ascii: "K") where i + 2 <= bytes.count:
                records.append(.signalled(Int32(bytes[i + 1])))
                i += 2
            case UInt8(ascii: "E"):
                records.append(.setupFailed(String(decoding: bytes[(i + 1)...].prefix(2000), as: UTF8.self)))
                return records
            default:
                return records
            }
        }
        return records
    }
}

public struct Frame: Sendable, Equatable {
    public var kind: FrameKind
    public var job: UInt32
    public var payload: [UInt8]

    public init(kind: FrameKind, job: UInt32 = 0, payload: [UInt8] = []) {
        self.kind = kind
        self.job = job
        self.payload = payload
    }

    public static let headerSize = 9
    /// Frames bigger than this are a protocol error, never an allocation.
    public static let maxPayload = 256 << 20

    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Frame.headerSize + payload.count)
        let length = UInt32(5 + payload.count)
        withUnsafeBytes(of: length.littleEndian) { out.append(contentsOf: $0) }
        out.append(kind.rawValue)
        withUnsafeBytes(of: job.littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: payload)
        return out
    }
}

public enum FrameError: Error, Equatable, CustomStringConvertible {
    case unknownKind(UInt8)
    case tooLarge(Int)
    case truncated

    public var description: String {
        switch self {
        case .unknownKind(let k): "unknown frame kind \(k)"
        case .tooLarge(let n): "frame of \(n) bytes exceeds the limit"
        case .truncated: "connection closed in the middle of a frame"
        }
    }
}

/// Splits a byte stream into frames; feed it what `read` returned.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    public mutating func feed(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or nil until more bytes arrive.
    public mutating func next() throws(FrameError) -> Frame? {
        let available = buffer.count - start
        guard available >= 4 else { return nil }
        let length = Int(UInt32(buffer[start]) | UInt32(buffer[start + 1]) << 8
            | UInt32(buffer[start + 2]) << 16 | UInt32(buffer[start + 3]) << 24)
        guard length >= 5 else { throw .truncated }
        guard length - 5 <= Frame.maxPayload else { throw .tooLarge(length) }
        guard available >= 4 + length else { return nil }
        guard let kind = FrameKind(rawValue: buffer[start + 4]) else { throw .unknownKind(buffer[start + 4]) }
        let j = start + 5
        let job = UInt32(buffer[j]) | UInt32(buffer[j + 1]) << 8 | UInt32(buffer[j + 2]) << 16 | UInt32(buffer[j + 3]) << 24
        let payload = Array(buffer[(start + 9)..<(start + 4 + length)])
        start += 4 + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 1 << 16 && start > buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        return Frame(kind: kind, job: job, payload: payload)
    }
}

/// A compiled seccomp program, registered with a worker once and referred to by key.
public struct FilterLoad: Codable, Sendable {
    public var key: String
    /// `struct sock_filter` array as bytes (8 bytes per instruction), as libseccomp exports it.
    public var bpf: [UInt8]
    public init(key: String, bpf: [UInt8]) {
        self.key = key
        self.bpf = bpf
    }
}

/// What the worker needs to fork and isolate one child ahead of its code.
public struct SpawnRequest: Codable, Sendable {
    /// Host directory bind-mounted on /mnt/data (the child's working directory).
    public var workdir: String
    /// Concurrency slot: selects the unprivileged uid (uidBase + slot) and the slot's cgroup.
    public var slot: Int
    public var filterKey: String
    public var network: Bool
    public var limits: Limits
    /// A session's interpreter runs cells until its command pipe closes; any other child runs one and exits.
    public var session: Bool
    /// Instead of `workdir`: /mnt/data is a tmpfs of this many bytes, made by the child, whose directory goes to the
    /// engine with the child's other descriptors (the engine copies inputs in and collects from it).
    public var dataBytes: Int64?

    public init(workdir: String, slot: Int, filterKey: String, network: Bool, limits: Limits, session: Bool = false,
                dataBytes: Int64? = nil) {
        self.workdir = workdir
        self.slot = slot
        self.filterKey = filterKey
        self.network = network
        self.limits = limits
        self.session = session
        self.dataBytes = dataBytes
    }

    enum CodingKeys: String, CodingKey {
        case workdir, slot, network, limits, session
        case filterKey = "filter_key", dataBytes = "data_bytes"
    }
}

/// The zygote's answer to `spawn`: the child exists (its isolation may still be under way).
public struct SpawnedChild: Codable, Sendable {
    /// The child's pid in the zygote's namespace (for logs; the engine never signals it itself).
    public var pid: Int32
    /// Threads of the zygote right before this fork (must be 1).
    public var zygoteThreads: Int
    /// A descriptor of the child's /mnt/data (its own tmpfs) follows the ChildDescriptor ones.
    public var dataDirectory: Bool
    public init(pid: Int32, zygoteThreads: Int, dataDirectory: Bool = false) {
        self.pid = pid
        self.zygoteThreads = zygoteThreads
        self.dataDirectory = dataDirectory
    }
    enum CodingKeys: String, CodingKey {
        case pid
        case zygoteThreads = "zygote_threads", dataDirectory = "data_directory"
    }
}

/// Limits set on a live child from outside, before a cell is handed over: nothing here needs a capability on
/// the host (containers rarely grant CAP_SYS_RESOURCE), and nothing relies on the child to keep them.
public struct ChildLimits: Codable, Sendable, Equatable {
    /// CPU seconds the child may use from now on (a session's next cell): the zygote watches its CPU time and
    /// kills it past that.
    public var cpuSeconds: Int?
    /// Memory for the code: the slot's cgroup limit (the cell message lowers the address-space limit too).
    public var memoryBytes: Int64?
    public init(cpuSeconds: Int? = nil, memoryBytes: Int64? = nil) {
        self.cpuSeconds = cpuSeconds
        self.memoryBytes = memoryBytes
    }
    enum CodingKeys: String, CodingKey {
        case cpuSeconds = "cpu_seconds", memoryBytes = "memory_bytes"
    }
}

/// The zygote's account of a child once it and every process of its pid namespace are gone.
public struct ChildExit: Codable, Sendable, Equatable {
    public var exitCode: Int32?
    public var signal: Int32?
    /// CPU of the whole execution (the interpreter and every descendant it reaped).
    public var cpuMs: Int
    public var maxRssKb: Int
    /// The slot's cgroup counted an OOM kill during the child's life.
    public var oomKilled: Bool
    /// The zygote killed it for using up its CPU allowance.
    public var cpuLimited = false
    /// Processes stayed in the child's slot group however often the zygote killed them: the slot (its uid and
    /// group) must not be given to another execution. Otherwise `exited` comes only once the group is empty.
    public var slotLeaked = false
    public init(exitCode: Int32? = nil, signal: Int32? = nil, cpuMs: Int = 0, maxRssKb: Int = 0, oomKilled: Bool = false) {
        self.exitCode = exitCode
        self.signal = signal
        self.cpuMs = cpuMs
        self.maxRssKb = maxRssKb
        self.oomKilled = oomKilled
    }
    enum CodingKeys: String, CodingKey {
        case signal
        case exitCode = "exit_code", cpuMs = "cpu_ms", maxRssKb = "max_rss_kb", oomKilled = "oom_killed", cpuLimited = "cpu_limited"
        case slotLeaked = "slot_leaked"
    }
}

/// Sent once by the worker when it is ready to fork.
public struct WorkerHello: Codable, Sendable {
    public var pid: Int32
    /// Threads of the zygote process at this point; forking is only safe with exactly one.
    public var threads: Int
    public var python: String
    public var preloaded: [String]
    public var failedPreloads: [String]
    public var isolation: IsolationReport
    public var startupMs: Int
    /// The zygote's memory mapped with 2 MiB pages (cheaper forks); 0 where the kernel could not.
    public var hugePageBytes: Int?

    public init(pid: Int32, threads: Int, python: String, preloaded: [String], failedPreloads: [String],
                isolation: IsolationReport, startupMs: Int, hugePageBytes: Int? = nil) {
        self.pid = pid
        self.threads = threads
        self.python = python
        self.preloaded = preloaded
        self.failedPreloads = failedPreloads
        self.isolation = isolation
        self.startupMs = startupMs
        self.hugePageBytes = hugePageBytes
    }

    enum CodingKeys: String, CodingKey {
        case pid, threads, python, preloaded, isolation
        case failedPreloads = "failed_preloads", startupMs = "startup_ms", hugePageBytes = "huge_page_bytes"
    }
}

/// Which isolation layers the worker could set up on this host; `doctor` prints it.
public struct IsolationReport: Codable, Sendable, Equatable {
    public var root: Bool
    public var userNamespace: Bool
    public var pidNamespace: Bool
    public var networkNamespace: Bool
    public var ipcNamespace: Bool
    public var utsNamespace: Bool
    public var cgroups: String?
    public var uidPerSlot: Bool
    /// The zygote reads its children's CPU time (a session's per-cell CPU allowance is enforced from outside).
    public var zygoteProc = false
    public var notes: [String]

    public init(root: Bool = false, userNamespace: Bool = false, pidNamespace: Bool = false,
                networkNamespace: Bool = false, ipcNamespace: Bool = false, utsNamespace: Bool = false,
                cgroups: String? = nil, uidPerSlot: Bool = false, notes: [String] = []) {
        self.root = root
        self.userNamespace = userNamespace
        self.pidNamespace = pidNamespace
        self.networkNamespace = networkNamespace
        self.ipcNamespace = ipcNamespace
        self.utsNamespace = utsNamespace
        self.cgroups = cgroups
        self.uidPerSlot = uidPerSlot
        self.notes = notes
    }

    enum CodingKeys: String, CodingKey {
        case root, cgroups, notes
        case userNamespace = "user_namespace", pidNamespace = "pid_namespace"
        case networkNamespace = "network_namespace", ipcNamespace = "ipc_namespace", utsNamespace = "uts_namespace"
        case uidPerSlot = "uid_per_slot", zygoteProc = "zygote_proc"
    }
}

/// What the Python runtime inside the child reports on its result descriptor.
public struct RuntimeOutcome: Codable, Sendable, Equatable {
    public struct Image: Codable, Sendable, Equatable {
        public var mimeType: String
        /// base64
        public var data: String
        public init(mimeType: String, data: String) {
            self.mimeType = mimeType
            self.data = data
        }
        enum CodingKeys: String, CodingKey {
            case data
            case mimeType = "mime_type"
        }
    }
    public var result: [String: String]?
    public var error: ExecutionError?
    public var displays: [Image]

    public init(result: [String: String]? = nil, error: ExecutionError? = nil, displays: [Image] = []) {
        self.result = result
        self.error = error
        self.displays = displays
    }
}

/// The worker's account of one child, sent when every process of the job is gone.
public struct ChildReport: Codable, Sendable, Equatable {
    public var exitCode: Int32?
    public var signal: Int32?
    public var wallMs: Int
    public var cpuMs: Int
    public var maxRssKb: Int
    public var timedOut: Bool
    public var cpuLimited: Bool
    public var memoryLimited: Bool
    public var outputLimited: Bool
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool
    /// The system call that a kill rule of the profile stopped: its number (from the worker) and name (the
    /// engine resolves it with libseccomp).
    public var blockedSyscallNumber: Int32?
    public var blockedSyscall: String?
    /// The filter stopped a call while the code had SIGSYS blocked: the kernel then ends the process with SIGSYS
    /// before the reporting handler can run, so which call it was is not known.
    public var blockedSyscallUnnamed = false
    /// Why the sandbox could not be set up (the user's code never ran).
    public var sandboxError: String?
    public var outcome: RuntimeOutcome?
    /// Threads of the zygote right before this fork (must be 1).
    public var zygoteThreads: Int
    /// Sessions: the interpreter is still running after the cell (it ended neither by a limit nor a crash).
    public var interpreterAlive = false
    /// Sessions: this cell started a new interpreter (the first cell, or the one after a timeout or crash).
    public var freshInterpreter = true

    public init(exitCode: Int32? = nil, signal: Int32? = nil, wallMs: Int = 0, cpuMs: Int = 0, maxRssKb: Int = 0,
                timedOut: Bool = false, cpuLimited: Bool = false, memoryLimited: Bool = false,
                outputLimited: Bool = false, stdoutTruncated: Bool = false, stderrTruncated: Bool = false,
                blockedSyscall: String? = nil, sandboxError: String? = nil, outcome: RuntimeOutcome? = nil,
                zygoteThreads: Int = 1) {
        self.exitCode = exitCode
        self.signal = signal
        self.wallMs = wallMs
        self.cpuMs = cpuMs
        self.maxRssKb = maxRssKb
        self.timedOut = timedOut
        self.cpuLimited = cpuLimited
        self.memoryLimited = memoryLimited
        self.outputLimited = outputLimited
        self.stdoutTruncated = stdoutTruncated
        self.stderrTruncated = stderrTruncated
        self.blockedSyscall = blockedSyscall
        self.sandboxError = sandboxError
        self.outcome = outcome
        self.zygoteThreads = zygoteThreads
    }

    enum CodingKeys: String, CodingKey {
        case signal, outcome
        case exitCode = "exit_code", wallMs = "wall_ms", cpuMs = "cpu_ms", maxRssKb = "max_rss_kb"
        case timedOut = "timed_out", cpuLimited = "cpu_limited", memoryLimited = "memory_limited"
        case outputLimited = "output_limited", stdoutTruncated = "stdout_truncated", stderrTruncated = "stderr_truncated"
        case blockedSyscall = "blocked_syscall", blockedSyscallNumber = "blocked_syscall_number", sandboxError = "sandbox_error", zygoteThreads = "zygote_threads"
        case interpreterAlive = "interpreter_alive", freshInterpreter = "fresh_interpreter"
        case blockedSyscallUnnamed = "blocked_syscall_unnamed"
    }

    /// The status a user sees, from how the child ended. Order matters: the cause, not the symptom
    /// (a timed-out child also died of SIGKILL).
    public var status: ExecutionStatus {
        if blockedSyscall != nil || blockedSyscallNumber != nil || blockedSyscallUnnamed { return .blockedSyscall }
        if timedOut || cpuLimited { return .timeout }
        if memoryLimited { return .memoryLimit }
        if outputLimited { return .outputLimit }
        if let outcome {
            if let e = outcome.error { return e.name == "MemoryError" ? .memoryLimit : .error }
            return exitCode == 0 || interpreterAlive ? .ok : .killed
        }
        return .killed
    }
}
