/// One framing for every pipe between the engine and the worker: the zygote's control socket, and a child's
/// command pipe, result descriptor (fd 3) and report descriptor (fd 5).
///
/// A frame is `u32 length (little endian, of what follows) | u8 kind | u32 job | payload`. On the control socket
/// payloads are JSON and `job` is the engine's id of the child (for `spawn`, `limits`, `kill` and every answer);
/// on a child's own pipes `job` is 0. The zygote only forks, confines and reaps: a child's output never passes
/// through it. `spawned` carries the child's descriptors (SCM_RIGHTS, attached to the frame's bytes), and the
/// engine talks to the child directly. A reader acts on the kinds of its own channel and ignores any other.
public enum FrameKind: UInt8, Sendable {
    // engine -> zygote, on the control socket
    case loadFilter = 1      // payload: FilterLoad JSON; job unused
    case spawn = 2           // payload: SpawnRequest JSON: fork and isolate a child that then waits for its code
    case kill = 3            // payload: empty; kill the child and everything it started
    case shutdown = 4
    case limits = 5          // payload: ChildLimits JSON; answered by `ack` once applied (prlimit from outside)
    // zygote -> engine, on the control socket
    case hello = 10          // payload: WorkerHello JSON; sent once after preloading
    case spawned = 11        // payload: SpawnedChild JSON; descriptors: stdout, stderr, result, report (read ends), command (write end)
    case exited = 13         // payload: ChildExit JSON; the child, every process of its pid namespace and of its slot's cgroup are gone
    case rejected = 14       // payload: {"message": ...}; the spawn or limits request failed
    case ack = 16            // payload: empty; the limits are in force
    // engine -> child, on its command pipe
    case cell = 20           // payload: CellCommand (u64 memory allowance | UTF-8 code)
    case prime = 21          // payload: empty; while waiting, render a throwaway chart (answered by `primed`)
    // child -> engine, on its result descriptor: per cell its displays' bytes, an outcome, then its usage
    case outcome = 30        // payload: RuntimeOutcome JSON, written by the Python runtime
    case usage = 31          // payload: {"cpu_ms":..,"max_rss_kb":..,"alone":..} of the interpreter's life so far
    case display = 32        // payload: one display's bytes (a PNG), before the outcome, in its displays' order
    case primed = 33         // payload: empty; the prime is done (left unread until the next cell, whose reader skips it)
    // child -> engine, on its report descriptor (ChildReportRecord)
    case blockedSyscall = 40 // payload: i32, the call's number
    case signalled = 41      // payload: i32, the signal
    case setupFailed = 42    // payload: UTF-8 text
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

/// A cell as it travels to a child's command pipe: a `cell` frame whose payload is `u64 memory allowance (little
/// endian) | UTF-8 code`. A memory allowance above 0 lowers the interpreter's address-space limit (the zygote's
/// size plus that many bytes) before the code runs: a limit may only be lowered from inside, which is all a
/// request may ask for.
public struct CellCommand: Equatable, Sendable {
    public var code: String
    public var memoryBytes: UInt64

    public init(code: String, memoryBytes: Int64 = 0) {
        self.code = code
        self.memoryBytes = UInt64(max(0, memoryBytes))
    }

    public init?(_ frame: Frame) {
        guard frame.kind == .cell, frame.payload.count >= 8 else { return nil }
        memoryBytes = frame.payload.littleEndianInteger(at: 0)
        code = String(decoding: frame.payload[8...], as: UTF8.self)
    }

    public var frame: Frame {
        var payload = [UInt8]()
        payload.reserveCapacity(8 + code.utf8.count)
        withUnsafeBytes(of: memoryBytes.littleEndian) { payload.append(contentsOf: $0) }
        payload.append(contentsOf: code.utf8)
        return Frame(kind: .cell, payload: payload)
    }
}

/// What a child writes on its report descriptor, which only the engine reads: the sandbox's own account of how
/// the interpreter ended, apart from the runtime's output. Each record is one frame.
public enum ChildReportRecord: Equatable, Sendable {
    /// A kill rule of the profile stopped this system call (written by the SIGSYS handler).
    case blockedSyscall(Int32)
    /// The interpreter (pid 1 of its namespace, where the kernel ignores its own fatal signals) was asked to die
    /// by this signal and did (written by the runtime, or by the SIGXCPU handler).
    case signalled(Int32)
    /// Isolation failed before any user code ran.
    case setupFailed(String)

    /// Report frames are small; a longer one is skipped unread.
    public static let maxPayload = 4096

    public init?(_ frame: Frame) {
        switch frame.kind {
        case .blockedSyscall where frame.payload.count == 4:
            self = .blockedSyscall(Int32(bitPattern: frame.payload.littleEndianInteger(at: 0)))
        case .signalled where frame.payload.count == 4:
            self = .signalled(Int32(bitPattern: frame.payload.littleEndianInteger(at: 0)))
        case .setupFailed:
            self = .setupFailed(String(decoding: frame.payload.prefix(2000), as: UTF8.self))
        default:
            return nil
        }
    }

    public var frame: Frame {
        func number(_ kind: FrameKind, _ value: Int32) -> Frame {
            Frame(kind: kind, payload: withUnsafeBytes(of: value.littleEndian) { Array($0) })
        }
        switch self {
        case .blockedSyscall(let nr): return number(.blockedSyscall, nr)
        case .signalled(let signal): return number(.signalled, signal)
        case .setupFailed(let message): return Frame(kind: .setupFailed, payload: Array(message.utf8))
        }
    }

    /// What the SIGSYS handler writes, prepared before any signal can come: a `blockedSyscall` frame whose call
    /// number the handler stores (i32, little endian) at `numberOffset` of its own copy, then writes in a single
    /// `write` (nothing in a signal handler may allocate or format).
    public static var blockedSyscallTemplate: (bytes: [UInt8], numberOffset: Int) {
        (ChildReportRecord.blockedSyscall(0).frame.encoded(), Frame.headerSize)
    }

    /// The records in what a child wrote on its report descriptor, in order, as far as `decoder` has them. A frame
    /// that is no record (another kind, too long, malformed) is skipped and a partial one waits for more bytes, or
    /// is ignored at the end: user code can write here too, and can only mislabel its own result.
    public static func records(from decoder: inout FrameDecoder) -> [ChildReportRecord] {
        var records: [ChildReportRecord] = []
        while true {
            do throws(FrameError) {
                guard let frame = try decoder.next() else { return records }
                if let record = ChildReportRecord(frame) { records.append(record) }
            } catch {
                continue  // the decoder dropped that frame; the next one may already be buffered
            }
        }
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
    /// The control socket's limit: frames bigger than this are a protocol error, never an allocation.
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
    /// The length (of kind, job and payload) exceeds the decoder's limit.
    case tooLarge(Int)
    /// The length cannot even hold the kind and the job.
    case tooShort(Int)

    public var description: String {
        switch self {
        case .unknownKind(let k): "unknown frame kind \(k)"
        case .tooLarge(let n): "frame of \(n) bytes exceeds the limit"
        case .tooShort(let n): "frame of \(n) bytes is shorter than its header"
        }
    }
}

/// Splits a byte stream into frames; feed it what `read` returned, then call `next()` until it returns nil.
///
/// User code can write to a child's result and report descriptors, so this is also what reads bytes from an
/// adversary. Whatever arrives, the decoder neither crashes nor allocates by what a frame claims: a frame that
/// is too large, malformed or of an unknown kind is rejected (`next()` throws) as soon as its header is in, and
/// its bytes are then dropped as they arrive, never buffered; the frames after it decode as usual. The buffer
/// holds at most one frame of `maxPayload` plus the bytes of one `feed`. A partial frame at the end of a stream
/// yields nothing. So garbage costs the code that wrote it its own result (a missing or mislabelled outcome),
/// nothing else. The zygote and the engine treat any error on the control socket as the end of the connection.
public struct FrameDecoder: Sendable {
    public let maxPayload: Int
    private var buffer: [UInt8] = []
    private var start = 0
    /// Bytes of a rejected frame not yet arrived: `feed` drops them.
    private var skipping = 0

    public init(maxPayload: Int = Frame.maxPayload) {
        self.maxPayload = maxPayload
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        let dropped = min(skipping, bytes.count)
        skipping -= dropped
        buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[dropped...]))
    }

    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    public mutating func feed(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Bytes held for frames not yet returned (a partial frame's, say).
    public var bufferedByteCount: Int { buffer.count - start }

    /// The next complete frame, or nil until more bytes arrive. After an error the rejected frame is dropped and
    /// decoding goes on with the one after it.
    public mutating func next() throws(FrameError) -> Frame? {
        let available = buffer.count - start
        guard available >= 4 else { return nil }
        let length = Int(buffer.littleEndianInteger(at: start) as UInt32)
        guard length >= 5 else {
            discard(4 + length)
            throw .tooShort(length)
        }
        guard length - 5 <= maxPayload else {
            discard(4 + length)
            throw .tooLarge(length)
        }
        guard available >= 5 else { return nil }
        guard let kind = FrameKind(rawValue: buffer[start + 4]) else {
            let raw = buffer[start + 4]
            discard(4 + length)
            throw .unknownKind(raw)
        }
        guard available >= 4 + length else { return nil }
        let job: UInt32 = buffer.littleEndianInteger(at: start + 5)
        let payload = Array(buffer[(start + 9)..<(start + 4 + length)])
        start += 4 + length
        compact()
        return Frame(kind: kind, job: job, payload: payload)
    }

    /// Drops a rejected frame of `count` bytes: what is buffered of it now, the rest as it arrives.
    private mutating func discard(_ count: Int) {
        let now = min(count, buffer.count - start)
        start += now
        skipping = count - now
        compact()
    }

    private mutating func compact() {
        if start == buffer.count {
            // A session's interpreter keeps its decoder for its life: one large cell should not pin its memory.
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 16)
            start = 0
        } else if start > 1 << 16 && start > buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
    }
}

extension Array where Element == UInt8 {
    /// The little-endian integer at `offset` (which must leave room for it).
    func littleEndianInteger<T: FixedWidthInteger & UnsignedInteger>(at offset: Int) -> T {
        var value: T = 0
        for i in (0..<(T.bitWidth / 8)).reversed() { value = value << 8 | T(self[offset + i]) }
        return value
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
    /// Memory for the code: the slot's cgroup limit (the cell frame lowers the address-space limit too).
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

/// What the Python runtime inside the child reports on its result descriptor (an `outcome` frame's payload).
public struct RuntimeOutcome: Codable, Sendable, Equatable {
    /// A figure or image the cell showed; its bytes are the payload of a display frame written just before the
    /// outcome, in the same order (raw, where base64 inside this JSON cost the runtime ~2 ms per figure).
    public struct Image: Codable, Sendable, Equatable {
        public var mimeType: String
        public init(mimeType: String) {
            self.mimeType = mimeType
        }
        enum CodingKeys: String, CodingKey {
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
