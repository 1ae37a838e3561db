/// The protocol between the engine (server or CLI) and the zygote, over one stream socket.
///
/// A frame is `u32 length (little endian, of what follows) | u8 kind | u32 job | payload`. Output chunks carry raw
/// bytes so that stdout is never re-encoded on the hot path; everything else is JSON.
public enum FrameKind: UInt8, Sendable {
    // engine -> worker
    case loadFilter = 1      // payload: FilterLoad JSON; job unused
    case execute = 2         // payload: ExecuteRequest JSON
    case cancel = 3          // payload: empty; kill the job's processes
    case shutdown = 4
    case closeSession = 5    // payload: "KEY" or "KEY\nSLOT" (UTF-8): stops that session's interpreter (only if it runs in SLOT)
    // worker -> engine
    case hello = 10          // payload: WorkerHello JSON; sent once after preloading
    case stdout = 11         // payload: raw bytes
    case stderr = 12
    case exited = 13         // payload: ChildReport JSON; the last frame of a job
    case rejected = 14       // payload: {"message": ...}; the job never started
    case outcome = 15        // payload: the Python runtime's JSON (RuntimeOutcome), raw; before `exited`
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

/// What the worker needs to fork and isolate one child.
public struct ExecuteRequest: Codable, Sendable {
    public var code: String
    /// Host directory bind-mounted on /mnt/data (the child's working directory).
    public var workdir: String
    /// Concurrency slot: selects the unprivileged uid (uidBase + slot) and the slot's cgroup.
    public var slot: Int
    public var filterKey: String
    public var network: Bool
    public var limits: Limits
    /// Set for a session: the cell runs in that session's long-lived interpreter, which is forked (and
    /// isolated) on the first cell and kept until `closeSession`, a timeout or a crash.
    public var session: String?

    public init(code: String, workdir: String, slot: Int, filterKey: String, network: Bool, limits: Limits,
                session: String? = nil) {
        self.code = code
        self.workdir = workdir
        self.slot = slot
        self.filterKey = filterKey
        self.network = network
        self.limits = limits
        self.session = session
    }

    enum CodingKeys: String, CodingKey {
        case code, workdir, slot, network, limits, session
        case filterKey = "filter_key"
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

    public init(pid: Int32, threads: Int, python: String, preloaded: [String], failedPreloads: [String],
                isolation: IsolationReport, startupMs: Int) {
        self.pid = pid
        self.threads = threads
        self.python = python
        self.preloaded = preloaded
        self.failedPreloads = failedPreloads
        self.isolation = isolation
        self.startupMs = startupMs
    }

    enum CodingKeys: String, CodingKey {
        case pid, threads, python, preloaded, isolation
        case failedPreloads = "failed_preloads", startupMs = "startup_ms"
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
        case uidPerSlot = "uid_per_slot"
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
    }

    /// The status a user sees, from how the child ended. Order matters: the cause, not the symptom
    /// (a timed-out child also died of SIGKILL).
    public var status: ExecutionStatus {
        if blockedSyscall != nil || blockedSyscallNumber != nil { return .blockedSyscall }
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
