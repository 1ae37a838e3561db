/// Resource limits of one execution. Profiles set them; a request may lower (never raise) them.
public struct Limits: Codable, Sendable, Hashable {
    /// Wall-clock seconds before the execution is killed with status `timeout`.
    public var wallSeconds: Double
    /// CPU seconds each process of the execution may use (RLIMIT_CPU counts per process: a child it forks
    /// starts from zero under the same limit; the wall-clock limit bounds the whole execution).
    public var cpuSeconds: Int
    /// Memory the code may add on top of the preloaded interpreter, in bytes.
    public var memoryBytes: Int64
    /// Processes and threads the execution may have at once (per slot uid / pids cgroup).
    public var processes: Int
    /// Largest file the code may write (RLIMIT_FSIZE).
    public var fileSizeBytes: Int64
    /// Open file descriptors (RLIMIT_NOFILE).
    public var openFiles: Int
    /// Captured stdout / stderr kept per execution; the rest is dropped and flagged as truncated.
    public var stdoutBytes: Int
    public var stderrBytes: Int
    /// Caps on the files collected from /mnt/data after the run.
    public var outputFiles: Int
    public var outputBytes: Int64
    public var outputDepth: Int
    /// Size of the private /tmp and /dev/shm of the execution.
    public var tmpBytes: Int64
    /// Bytes /mnt/data holds, input files and uploads included: per stateless execution, and per session (a tmpfs
    /// of this size: a write past it fails with ENOSPC inside the sandbox).
    public var dataBytes: Int64
    /// The most memory a session may be given when it asks for more than `memoryBytes` (a container's
    /// `memory_limit`).
    public var maxMemoryBytes: Int64

    public init(
        wallSeconds: Double = 30, cpuSeconds: Int = 30, memoryBytes: Int64 = 1 << 30, processes: Int = 64,
        fileSizeBytes: Int64 = 100 << 20, openFiles: Int = 256, stdoutBytes: Int = 1 << 20, stderrBytes: Int = 1 << 20,
        outputFiles: Int = 100, outputBytes: Int64 = 200 << 20, outputDepth: Int = 8, tmpBytes: Int64 = 256 << 20,
        maxMemoryBytes: Int64 = 16 << 30, dataBytes: Int64 = 256 << 20
    ) {
        self.wallSeconds = wallSeconds
        self.cpuSeconds = cpuSeconds
        self.memoryBytes = memoryBytes
        self.processes = processes
        self.fileSizeBytes = fileSizeBytes
        self.openFiles = openFiles
        self.stdoutBytes = stdoutBytes
        self.stderrBytes = stderrBytes
        self.outputFiles = outputFiles
        self.outputBytes = outputBytes
        self.outputDepth = outputDepth
        self.tmpBytes = tmpBytes
        self.dataBytes = dataBytes
        self.maxMemoryBytes = maxMemoryBytes
    }

    /// `4 GiB`, `512 MiB`, `1000 bytes`: for messages.
    public static func describeBytes(_ bytes: Int64) -> String {
        if bytes >= 1 << 30 && bytes % (1 << 30) == 0 { return "\(bytes >> 30) GiB" }
        if bytes >= 1 << 20 && bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        return "\(bytes) bytes"
    }

    /// The most memory a session may ask for.
    public var sessionMemoryCeiling: Int64 { max(memoryBytes, maxMemoryBytes) }

    enum CodingKeys: String, CodingKey {
        case wallSeconds = "wall_seconds", cpuSeconds = "cpu_seconds", memoryBytes = "memory_bytes"
        case processes, fileSizeBytes = "file_size_bytes", openFiles = "open_files"
        case stdoutBytes = "stdout_bytes", stderrBytes = "stderr_bytes"
        case outputFiles = "output_files", outputBytes = "output_bytes", outputDepth = "output_depth"
        case tmpBytes = "tmp_bytes", maxMemoryBytes = "max_memory_bytes", dataBytes = "data_bytes"
    }

    /// The stricter of two limits, field by field: a request can tighten a profile, never loosen it.
    public func tightened(wallSeconds: Double? = nil, memoryBytes: Int64? = nil) -> Limits {
        var l = self
        if let w = wallSeconds { l.wallSeconds = min(l.wallSeconds, w) }
        if let m = memoryBytes { l.memoryBytes = min(l.memoryBytes, m) }
        return l
    }
}

/// OpenAI's container memory sizes (`memory_limit`), as the containers and Responses APIs accept them.
public enum ContainerMemory {
    public static let sizes: [(name: String, bytes: Int64)] = [("1g", 1 << 30), ("4g", 4 << 30), ("16g", 16 << 30), ("64g", 64 << 30)]

    public static func bytes(_ name: String) -> Int64? { sizes.first { $0.name == name }?.bytes }
}
