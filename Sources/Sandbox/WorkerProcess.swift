import CSandbox
import Foundation
import InterpreterCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct EngineError: Error, CustomStringConvertible, Sendable {
    public enum Code: Sendable {
        case workerFailed, workerDied, rejected, sandboxSetup, badRequest, profile
        /// An unknown (or expired) session or file.
        case notFound
        /// Too many executions waiting: try again later.
        case busy
        /// An upload or file over its size limit.
        case tooLarge
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

/// The zygote seen from the engine: a spawned `codeinterp-worker` and the socket to it. One reader thread splits
/// the stream into frames and hands each job its own stream; writes are serialized by a lock.
final class WorkerProcess: Sendable {
    let pid: pid_t
    private let socket: Int32
    private struct State {
        var jobs: [UInt32: AsyncStream<Frame>.Continuation] = [:]
        var hello: CheckedContinuation<WorkerHello, any Error>?
        var helloResult: Result<WorkerHello, EngineError>?
        var alive = true
        var loadedFilters: Set<String> = []
    }
    private let state = Mutex(State())
    private let writeLock = Mutex(())

    private init(pid: pid_t, socket: Int32) {
        self.pid = pid
        self.socket = socket
    }

    /// Spawns the worker with a clean environment (nothing of ours reaches user code) and its socket on fd 3.
    static func spawn(executable: String, arguments: [String], logPath: String) throws -> WorkerProcess {
        guard access(executable, X_OK) == 0 else {
            throw EngineError(.workerFailed, "worker executable not found at \(executable) (build it, or set CODEINTERP_WORKER)")
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw EngineError(.workerFailed, "socketpair: \(String(cString: strerror(errno)))")
        }
        // dup2(3, 3) would keep close-on-exec set: make sure the child's end is not already fd 3.
        if pair[1] == 3 {
            let moved = fcntl(pair[1], F_DUPFD_CLOEXEC, 10)
            close(pair[1])
            pair[1] = moved
        }
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { if log >= 0 { close(log) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if log >= 0 {
            posix_spawn_file_actions_adddup2(&actions, log, 1)
            posix_spawn_file_actions_adddup2(&actions, log, 2)
        }
        posix_spawn_file_actions_adddup2(&actions, pair[1], 3)
        let argv = [executable] + arguments
        let env = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(env) { cEnv in posix_spawn(&pid, executable, &actions, nil, cArgv, cEnv) }
        }
        close(pair[1])
        guard rc == 0 else {
            close(pair[0])
            throw EngineError(.workerFailed, "spawning \(executable): \(String(cString: strerror(rc)))")
        }
        let worker = WorkerProcess(pid: pid, socket: pair[0])
        let thread = Thread { worker.readLoop() }
        thread.name = "codeinterp-worker-reader"
        thread.start()
        return worker
    }

    /// Waits for the worker's hello: preloading done, ready to fork.
    func hello() async throws -> WorkerHello {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<WorkerHello, any Error>) in
            let ready: Result<WorkerHello, EngineError>? = state.withLock { s in
                if let r = s.helloResult { return r }
                s.hello = c
                return nil
            }
            if let ready { c.resume(with: ready.mapError { $0 as any Error }) }
        }
    }

    var isAlive: Bool { state.withLock { $0.alive } }

    func hasFilter(_ key: String) -> Bool { state.withLock { $0.loadedFilters.contains(key) } }

    func loadFilter(_ filter: FilterLoad) throws {
        try send(Frame(kind: .loadFilter, payload: Array(try JSONEncoder().encode(filter))))
        state.withLock { _ = $0.loadedFilters.insert(filter.key) }
    }

    /// Starts a job; its frames arrive on the returned stream, which ends after `exited` or `rejected`.
    func start(job: UInt32, _ request: ExecuteRequest) throws -> AsyncStream<Frame> {
        let (stream, continuation) = AsyncStream.makeStream(of: Frame.self)
        let alive = state.withLock { s in
            if s.alive { s.jobs[job] = continuation }
            return s.alive
        }
        guard alive else { throw EngineError(.workerDied, "the worker process is not running") }
        do {
            try send(Frame(kind: .execute, job: job, payload: Array(try JSONEncoder().encode(request))))
        } catch {
            _ = state.withLock { $0.jobs.removeValue(forKey: job) }
            throw error
        }
        return stream
    }

    func cancel(job: UInt32) {
        try? send(Frame(kind: .cancel, job: job))
    }

    /// Stops a session's interpreter (the worker forks a fresh one on the session's next cell). With `slot`, only
    /// an interpreter in that slot: an evicted session may already have a new one elsewhere by the time this arrives.
    func closeSession(_ key: String, slot: Int? = nil) {
        try? send(Frame(kind: .closeSession, payload: Array((key + (slot.map { "\n\($0)" } ?? "")).utf8)))
    }

    func send(_ frame: Frame) throws {
        let bytes = frame.encoded()
        let ok = writeLock.withLock { _ in
            bytes.withUnsafeBytes { buf -> Bool in
                var off = 0
                while off < buf.count {
                    let n = Glibc.send(socket, buf.baseAddress! + off, buf.count - off, Int32(MSG_NOSIGNAL))
                    if n < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    off += n
                }
                return true
            }
        }
        if !ok { throw EngineError(.workerDied, "the worker process is not running") }
    }

    /// Stops the worker and everything it forked (its pid namespace dies with it). A worker that got the
    /// shutdown frame has up to 2 s to kill its children and remove its cgroups before it is killed.
    func terminate() {
        var status: Int32 = 0
        if (try? send(Frame(kind: .shutdown))) != nil {
            let deadline = Date().addingTimeInterval(2)
            while Date() < deadline {
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid || (r < 0 && errno != EINTR) { return }
                usleep(5_000)
            }
        }
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    private func readLoop() {
        var decoder = FrameDecoder()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        loop: while true {
            let n = read(socket, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            buffer.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            while true {
                let frame: Frame?
                do { frame = try decoder.next() } catch { break loop }
                guard let frame else { break }
                dispatch(frame)
            }
        }
        close(socket)
        let (jobs, hello) = state.withLock { s in
            s.alive = false
            let jobs = s.jobs
            s.jobs = [:]
            let hello = s.hello
            s.hello = nil
            if s.helloResult == nil { s.helloResult = .failure(EngineError(.workerFailed, "the worker exited during start-up")) }
            return (jobs, hello)
        }
        hello?.resume(throwing: EngineError(.workerFailed, "the worker exited during start-up"))
        for c in jobs.values { c.finish() }
    }

    private func dispatch(_ frame: Frame) {
        switch frame.kind {
        case .hello:
            let result: Result<WorkerHello, EngineError>
            if let h = try? JSONDecoder().decode(WorkerHello.self, from: Data(frame.payload)) {
                result = .success(h)
            } else {
                result = .failure(EngineError(.workerFailed, "malformed hello from the worker"))
            }
            let c = state.withLock { s in
                s.helloResult = result
                defer { s.hello = nil }
                return s.hello
            }
            c?.resume(with: result.mapError { $0 as any Error })
        default:
            let c = state.withLock { s in
                (frame.kind == .exited || frame.kind == .rejected) ? s.jobs.removeValue(forKey: frame.job) : s.jobs[frame.job]
            }
            c?.yield(frame)
            if frame.kind == .exited || frame.kind == .rejected { c?.finish() }
        }
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
