/// How an execution ended. The raw values are the `status` strings of the result object.
public enum ExecutionStatus: String, Codable, Sendable, CaseIterable {
    case ok
    case error
    case timeout
    case memoryLimit = "memory_limit"
    case outputLimit = "output_limit"
    case killed
    case blockedSyscall = "blocked_syscall"
}

/// An exception raised by the user's code, as Jupyter reports it.
public struct ExecutionError: Codable, Sendable, Equatable {
    public var name: String
    public var value: String
    public var traceback: [String]
    public init(name: String, value: String, traceback: [String]) {
        self.name = name
        self.value = value
        self.traceback = traceback
    }
}

/// A file produced by the execution (or a figure), stored under a UUID.
public struct StoredFileRef: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var path: String
    public var mimeType: String
    public var sizeBytes: Int64
    public var sha256: String
    public var url: String?
    public var source: String
    /// Where the blob lives on disk (CLI output; not part of the HTTP shape).
    public var storePath: String?

    public init(id: String, name: String, path: String, mimeType: String, sizeBytes: Int64, sha256: String,
                url: String? = nil, source: String = "assistant", storePath: String? = nil) {
        self.id = id
        self.name = name
        self.path = path
        self.mimeType = mimeType
        self.sizeBytes = sizeBytes
        self.sha256 = sha256
        self.url = url
        self.source = source
        self.storePath = storePath
    }

    enum CodingKeys: String, CodingKey {
        case id, name, path, url, source, sha256
        case mimeType = "mime_type", sizeBytes = "size_bytes", storePath = "store_path"
    }
}

public struct Display: Codable, Sendable, Equatable {
    public var type: String
    public var mimeType: String
    public var fileId: String
    public var url: String?
    public init(type: String = "image", mimeType: String, fileId: String, url: String? = nil) {
        self.type = type
        self.mimeType = mimeType
        self.fileId = fileId
        self.url = url
    }
    enum CodingKeys: String, CodingKey {
        case type, url
        case mimeType = "mime_type", fileId = "file_id"
    }
}

public struct Truncation: Codable, Sendable, Equatable {
    public var stdout: Bool
    public var stderr: Bool
    public init(stdout: Bool = false, stderr: Bool = false) {
        self.stdout = stdout
        self.stderr = stderr
    }
}

public struct Usage: Codable, Sendable, Equatable {
    public var wallMs: Int
    public var cpuMs: Int
    public var maxRssKb: Int
    /// Where the time went, in milliseconds: waiting for a place to run, getting an isolated interpreter (a warm
    /// one from the pool, a session's live one, or a fork on demand), running the code until every process of
    /// the execution was gone, collecting /mnt/data, storing figures.
    public var queueMs: Int?
    public var startMs: Int?
    public var runMs: Int?
    public var collectMs: Int?
    public var storeMs: Int?
    /// The interpreter was ready before the request came (a pooled child, or the session's live interpreter).
    public var warmStart: Bool?
    public init(wallMs: Int = 0, cpuMs: Int = 0, maxRssKb: Int = 0) {
        self.wallMs = wallMs
        self.cpuMs = cpuMs
        self.maxRssKb = maxRssKb
    }
    enum CodingKeys: String, CodingKey {
        case wallMs = "wall_ms", cpuMs = "cpu_ms", maxRssKb = "max_rss_kb"
        case queueMs = "queue_ms", startMs = "start_ms", runMs = "run_ms", collectMs = "collect_ms", storeMs = "store_ms"
        case warmStart = "warm_start"
    }
}

/// The result object of one execution (`../shared/DESIGN.md`, "Execution result").
public struct ExecutionResult: Codable, Sendable, Equatable {
    public var id: String
    public var sessionId: String?
    public var status: ExecutionStatus
    public var stdout: String
    public var stderr: String
    public var truncated: Truncation
    /// The last expression's value by MIME type (`text/plain`, `text/html`), or nil when there was none.
    public var result: [String: String]?
    public var displays: [Display]
    public var error: ExecutionError?
    public var files: [StoredFileRef]
    public var usage: Usage
    /// The system call that ended the run, when status is `blocked_syscall`.
    public var blockedSyscall: String?

    public init(id: String, sessionId: String? = nil, status: ExecutionStatus, stdout: String = "", stderr: String = "",
                truncated: Truncation = Truncation(), result: [String: String]? = nil, displays: [Display] = [],
                error: ExecutionError? = nil, files: [StoredFileRef] = [], usage: Usage = Usage(),
                blockedSyscall: String? = nil) {
        self.id = id
        self.sessionId = sessionId
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        self.truncated = truncated
        self.result = result
        self.displays = displays
        self.error = error
        self.files = files
        self.usage = usage
        self.blockedSyscall = blockedSyscall
    }

    enum CodingKeys: String, CodingKey {
        case id, status, stdout, stderr, truncated, result, displays, error, files, usage
        case sessionId = "session_id", blockedSyscall = "blocked_syscall"
    }

    public func encode(to encoder: any Encoder) throws {
        // `session_id`, `result` and `error` are always present (null when empty), as in DESIGN.md.
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(sessionId, forKey: .sessionId)
        try c.encode(status, forKey: .status)
        try c.encode(stdout, forKey: .stdout)
        try c.encode(stderr, forKey: .stderr)
        try c.encode(truncated, forKey: .truncated)
        try c.encode(result, forKey: .result)
        try c.encode(displays, forKey: .displays)
        try c.encode(error, forKey: .error)
        try c.encode(files, forKey: .files)
        try c.encode(usage, forKey: .usage)
        try c.encodeIfPresent(blockedSyscall, forKey: .blockedSyscall)
    }
}
