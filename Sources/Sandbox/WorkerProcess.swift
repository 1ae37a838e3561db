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
    /// What a `notFound` did not find, for callers that name the field it came from.
    public enum Subject: Sendable, Equatable {
        case session(String)
        /// The `index`th of a request's input files.
        case file(index: Int, id: String)
    }
    public var code: Code
    public var message: String
    public var subject: Subject?
    public init(_ code: Code, _ message: String, subject: Subject? = nil) {
        self.code = code
        self.message = message
        self.subject = subject
    }
    public var description: String { message }
}

/// The zygote seen from the engine: a spawned `codeinterp-worker` and the socket to it. The zygote forks and
/// isolates children on request and passes their descriptors here; one reader thread splits the stream into
/// frames and collects those descriptors; writes are serialized by a lock.
final class WorkerProcess: Sendable {
    let pid: pid_t
    private let socket: Int32
    private struct State {
        var spawns: [UInt32: CheckedContinuation<SandboxChild, any Error>] = [:]
        var acks: [UInt32: CheckedContinuation<Void, any Error>] = [:]
        var children: [UInt32: SandboxChild] = [:]
        var hello: CheckedContinuation<WorkerHello, any Error>?
        var helloResult: Result<WorkerHello, EngineError>?
        var alive = true
        var loadedFilters: Set<String> = []
        /// Descriptors received and not yet claimed by a `spawned` frame (they arrive with its first byte).
        var descriptors: [Int32] = []
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

    /// Replaced by a newer worker (`ExecutionEngine.restartWorker`): its children finish, no new work comes.
    private let retiredFlag = Atomic<Bool>(false)
    var isRetired: Bool { retiredFlag.load(ordering: .relaxed) }
    func retire() { retiredFlag.store(true, ordering: .relaxed) }
    /// Children alive or being forked.
    var childCount: Int { state.withLock { $0.children.count + $0.spawns.count } }

    func hasFilter(_ key: String) -> Bool { state.withLock { $0.loadedFilters.contains(key) } }

    func loadFilter(_ filter: FilterLoad) throws {
        try send(Frame(kind: .loadFilter, payload: Array(try JSONEncoder().encode(filter))))
        state.withLock { _ = $0.loadedFilters.insert(filter.key) }
    }

    /// Forks and isolates a child that then waits for its code; returns once the zygote handed its descriptors
    /// over (the child may still be confining itself: its first cell waits for that).
    func spawn(child id: UInt32, _ request: SpawnRequest) async throws -> SandboxChild {
        let payload = Array(try JSONEncoder().encode(request))
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<SandboxChild, any Error>) in
            let alive = state.withLock { s in
                if s.alive { s.spawns[id] = c }
                return s.alive
            }
            guard alive else { return c.resume(throwing: EngineError(.workerDied, "the worker process is not running")) }
            do { try send(Frame(kind: .spawn, job: id, payload: payload)) } catch {
                if let c = state.withLock({ $0.spawns.removeValue(forKey: id) }) { c.resume(throwing: error) }
            }
        }
    }

    /// Sets limits on a live child from the privileged side; returns once they are in force.
    func setLimits(_ limits: ChildLimits, on id: UInt32) async throws {
        let payload = Array(try JSONEncoder().encode(limits))
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let alive = state.withLock { s in
                if s.alive { s.acks[id] = c }
                return s.alive
            }
            guard alive else { return c.resume(throwing: EngineError(.workerDied, "the worker process is not running")) }
            do { try send(Frame(kind: .limits, job: id, payload: payload)) } catch {
                if let c = state.withLock({ $0.acks.removeValue(forKey: id) }) { c.resume(throwing: error) }
            }
        }
    }

    /// Kills a child and everything in its pid namespace; its `exited` follows.
    func kill(child id: UInt32) {
        try? send(Frame(kind: .kill, job: id))
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

    /// Stops the worker and everything it forked (every child's pid namespace lies inside the zygote's). The
    /// zygote gets a moment to kill its children and remove its cgroups before it is killed.
    func terminate() {
        try? send(Frame(kind: .shutdown))
        var status: Int32 = 0
        for _ in 0..<300 {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) { return }
            usleep(10_000)
        }
        Glibc.kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    private func readLoop() {
        var decoder = FrameDecoder()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var fds = [Int32](repeating: -1, count: 32)
        loop: while true {
            var count: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { b in
                fds.withUnsafeMutableBufferPointer { ci_recv_with_fds(socket, b.baseAddress, b.count, $0.baseAddress, 32, &count) }
            }
            if count > 0 { state.withLock { $0.descriptors.append(contentsOf: fds[0..<Int(count)]) } }
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
        let (spawns, acks, children, hello, leftovers) = state.withLock { s in
            s.alive = false
            defer {
                s.spawns = [:]
                s.acks = [:]
                s.children = [:]
                s.hello = nil
                s.descriptors = []
            }
            if s.helloResult == nil { s.helloResult = .failure(EngineError(.workerFailed, "the worker exited during start-up")) }
            return (s.spawns, s.acks, s.children, s.hello, s.descriptors)
        }
        for fd in leftovers { close(fd) }
        hello?.resume(throwing: EngineError(.workerFailed, "the worker exited during start-up"))
        let died = EngineError(.workerDied, "the worker process died")
        for c in spawns.values { c.resume(throwing: died) }
        for c in acks.values { c.resume(throwing: died) }
        for child in children.values { child.didExit(nil) }
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
        case .spawned:
            let info = try? JSONDecoder().decode(SpawnedChild.self, from: Data(frame.payload))
            // The pipes, then (for a child with a /mnt/data of its own) its directory.
            let n = ChildDescriptor.allCases.count + (info?.dataDirectory == true ? 1 : 0)
            let (c, fds) = state.withLock { s -> (CheckedContinuation<SandboxChild, any Error>?, [Int32]) in
                guard s.descriptors.count >= n else { return (s.spawns.removeValue(forKey: frame.job), []) }
                let fds = Array(s.descriptors.prefix(n))
                s.descriptors.removeFirst(n)
                return (s.spawns.removeValue(forKey: frame.job), fds)
            }
            guard let info, fds.count == n else {
                for fd in fds { close(fd) }
                kill(child: frame.job)
                c?.resume(throwing: EngineError(.workerFailed, "the worker sent a child without its descriptors"))
                return
            }
            let pipes = Array(fds.prefix(ChildDescriptor.allCases.count))
            let child = SandboxChild(id: frame.job, pid: info.pid, descriptors: pipes,
                                     dataDirectory: info.dataDirectory ? fds[pipes.count] : -1, worker: self)
            state.withLock { $0.children[frame.job] = child }
            if let c { c.resume(returning: child) } else { kill(child: frame.job) }
        case .ack:
            state.withLock { $0.acks.removeValue(forKey: frame.job) }?.resume()
        case .rejected:
            let message = (try? JSONDecoder().decode([String: String].self, from: Data(frame.payload)))?["message"] ?? "rejected"
            let error = EngineError(.rejected, "the worker refused: \(message)")
            let (spawn, ack) = state.withLock { ($0.spawns.removeValue(forKey: frame.job), $0.acks.removeValue(forKey: frame.job)) }
            spawn?.resume(throwing: error)
            ack?.resume(throwing: error)
        case .exited:
            let exit = (try? JSONDecoder().decode(ChildExit.self, from: Data(frame.payload))) ?? ChildExit()
            state.withLock { $0.children.removeValue(forKey: frame.job) }?.didExit(exit)
        default:
            break
        }
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
