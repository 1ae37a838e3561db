import CSandbox
import Foundation
import InterpreterCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A forked, isolated child seen from the engine: the zygote made it and handed over its descriptors, so the
/// engine writes its code and reads its output directly. A one-shot child runs one cell and exits; a session's
/// runs cells until it is killed.
final class SandboxChild: Sendable {
    let id: UInt32
    /// Its pid in the zygote's namespace (for logs).
    let pid: Int32
    /// stdout, stderr, result, report (read ends), command (write end): ChildDescriptor order.
    private let descriptors: [Int32]
    /// Becomes readable when the child is gone: the cell reader polls it with the child's pipes.
    private let exitPipe: [Int32]
    private let worker: WorkerProcess
    private struct State {
        var exited = false
        var exit: ChildExit?
        var waiters: [CheckedContinuation<ChildExit?, Never>] = []
        var observers: [@Sendable () -> Void] = []
        var closed = false
    }
    private let state = Mutex(State())
    /// The child's own /mnt/data (a tmpfs of its byte budget), -1 once released or when it binds a host directory.
    private let dataDirectoryFd: Mutex<Int32>
    /// The largest outcome frame kept, and what a cell's display frames may add up to; more is skipped unread.
    static let maxOutcomeBytes = 64 << 20
    /// The displays a cell may show (the runtime's own cap, _MAX_DISPLAYS).
    static let maxDisplays = 20

    init(id: UInt32, pid: Int32, descriptors: [Int32], dataDirectory: Int32 = -1, worker: WorkerProcess) {
        self.id = id
        self.pid = pid
        self.descriptors = descriptors
        self.dataDirectoryFd = Mutex(dataDirectory)
        self.worker = worker
        var p: [Int32] = [-1, -1]
        if ci_pipe_cloexec(&p) == 0 {
            for fd in p { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        } else {
            p = [-1, -1]
        }
        exitPipe = p
        for fd in descriptors where fd != descriptors[ChildDescriptor.command.rawValue] {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
    }

    deinit {
        closeDescriptors()
        releaseDataDirectory()
    }

    /// A descriptor of the child's /mnt/data when it is a tmpfs of its own (inputs are copied in and files
    /// collected through it); valid until `releaseDataDirectory`, whatever the child does meanwhile.
    var dataDirectory: Int32? {
        let fd = dataDirectoryFd.withLock { $0 }
        return fd >= 0 ? fd : nil
    }

    /// Closes the descriptor of the child's /mnt/data: once the child is gone too, the tmpfs and its files go.
    func releaseDataDirectory() {
        let fd = dataDirectoryFd.withLock { fd in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 { close(fd) }
    }

    func fd(_ d: ChildDescriptor) -> Int32 { descriptors[d.rawValue] }

    var hasExited: Bool { state.withLock { $0.exited } }
    /// The zygote's account once the child is gone (nil before, or when the worker died).
    var exitReport: ChildExit? { state.withLock { $0.exit } }
    /// Whether its worker runs and is the engine's current one (a warm child of a replaced worker is not used).
    var workerIsAlive: Bool { worker.isAlive && !worker.isRetired }

    func kill() { worker.kill(child: id) }

    func setLimits(_ limits: ChildLimits) async throws { try await worker.setLimits(limits, on: id) }

    /// Asks the waiting child to render a throwaway chart (FrameKind.prime): its first chart then copies no page of
    /// the zygote on the request path. The frame is small and the pipe of a waiting child empty: this never blocks.
    func prime() {
        if !writeAll(fd(.command), Frame(kind: .prime, payload: []).encoded()) { kill() }
    }

    /// Whether the child has answered `prime`: its `primed` frame waits, unread, on the result pipe (the only thing
    /// a waiting child writes there; the next cell's reader skips it).
    var isPrimed: Bool {
        var p = pollfd(fd: fd(.result), events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 1 && p.revents & Int16(POLLIN) != 0
    }

    /// The zygote's account once the child and its whole pid namespace are gone; nil when the worker died.
    func waitForExit() async -> ChildExit? {
        await withCheckedContinuation { (c: CheckedContinuation<ChildExit?, Never>) in
            let done: ChildExit?? = state.withLock { s in
                if s.exited { return .some(s.exit) }
                s.waiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    /// Calls `body` once the child is gone (at once if it already is).
    func onExit(_ body: @escaping @Sendable () -> Void) {
        let now = state.withLock { s in
            if s.exited { return true }
            s.observers.append(body)
            return false
        }
        if now { body() }
    }

    func didExit(_ exit: ChildExit?) {
        let (waiters, observers) = state.withLock { s in
            guard !s.exited else { return ([CheckedContinuation<ChildExit?, Never>](), [@Sendable () -> Void]()) }
            s.exited = true
            s.exit = exit
            defer { s.waiters = []; s.observers = [] }
            return (s.waiters, s.observers)
        }
        var byte: UInt8 = 1
        _ = write(exitPipe[1], &byte, 1)
        for o in observers { o() }
        for w in waiters { w.resume(returning: exit) }
    }

    /// Why the child's isolation failed, if it did: what it wrote on its report descriptor before exiting.
    /// Call once the child is gone.
    func setupFailure() -> String? {
        var report = FrameDecoder(maxPayload: ChildReportRecord.maxPayload)
        var buffer = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while total < 8192 {
            let n = read(fd(.report), &buffer, buffer.count)
            if n <= 0 { break }
            report.feed(buffer[0..<n])
            total += n
        }
        for case .setupFailed(let message) in ChildReportRecord.records(from: &report) { return message }
        return nil
    }

    /// Closes the engine's ends (the child, if alive, then sees EOF on its command pipe and ends).
    func closeDescriptors() {
        let first = state.withLock { s in
            defer { s.closed = true }
            return !s.closed
        }
        if first { for fd in descriptors + exitPipe where fd >= 0 { close(fd) } }
    }
}

/// What one cell produced, read straight from the child's pipes.
struct CellRun: Sendable {
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    /// The runtime's outcome JSON and the interpreter's usage so far (the payloads of the cell's `outcome` and
    /// `usage` frames): both present when the cell ran to its end.
    var outcome: [UInt8]?
    var usage: CellUsage?
    /// The payloads of the last display frames before the outcome (the bytes of its displays, in order).
    var displays: [[UInt8]] = []
    var timedOut = false
    var outputLimited = false
    var stdoutTruncated = false
    var stderrTruncated = false
    /// What the child wrote on its report descriptor.
    var report: [ChildReportRecord] = []
    var wallMs = 0
    var complete: Bool { outcome != nil && usage != nil }
}

struct CellUsage: Decodable, Sendable {
    var cpu_ms: Int
    var max_rss_kb: Int
    /// A one-shot child said it was the last thread of the last process of its execution, with every signal
    /// blocked, about to exit: nothing of the user's can run any more.
    var alone: Bool?
}

extension SandboxChild {
    /// Hands `code` to the child and gathers its output until the cell's outcome is in, or the child is gone.
    /// Enforces the wall-clock limit and the output caps (by killing the child); cancellation kills it too.
    /// `memoryBytes`: a lower address-space allowance for this cell than the child was made with.
    func run(code: String, limits: Limits, memoryBytes: Int64? = nil,
             output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)?) async -> CellRun {
        let message = CellCommand(code: code, memoryBytes: memoryBytes ?? 0).frame.encoded()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<CellRun, Never>) in
                let thread = Thread { [self] in
                    c.resume(returning: self.gather(message: message, limits: limits, wake: exitPipe[0], output: output))
                }
                thread.name = "codeinterp-cell-\(id)"
                thread.start()
            }
        } onCancel: {
            kill()
        }
    }

    /// The blocking part of `run`, on a thread of its own.
    private func gather(message: [UInt8], limits: Limits, wake: Int32,
                        output: (@Sendable (OutputStreamKind, [UInt8]) -> Void)?) -> CellRun {
        var run = CellRun()
        let started = monotonicSeconds()
        let deadline = started + limits.wallSeconds
        if !writeAll(fd(.command), message) { kill() }

        var open: [ChildDescriptor: Bool] = [.stdout: true, .stderr: true, .result: true, .report: true]
        var results = FrameDecoder(maxPayload: Self.maxOutcomeBytes)
        var report = FrameDecoder(maxPayload: ChildReportRecord.maxPayload)
        var reportBytes = 0
        var displayBytes = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var discarded = 0
        let floodLimit = 8 * max(limits.stdoutBytes, limits.stderrBytes)

        /// Reads what `d` has now; false at EOF.
        func drain(_ d: ChildDescriptor) -> Bool {
            while true {
                let n = read(fd(d), &buffer, buffer.count)
                if n < 0 { return errno == EAGAIN || errno == EINTR }
                if n == 0 { return false }
                let chunk = buffer[0..<n]
                switch d {
                case .stdout, .stderr:
                    let isStdout = d == .stdout
                    let kept = isStdout ? run.stdout.count : run.stderr.count
                    let keep = max(0, min(n, (isStdout ? limits.stdoutBytes : limits.stderrBytes) - kept))
                    if keep > 0 {
                        let part = Array(chunk.prefix(keep))
                        if isStdout { run.stdout += part } else { run.stderr += part }
                        output?(isStdout ? .stdout : .stderr, part)
                    }
                    if keep < n {
                        if isStdout { run.stdoutTruncated = true } else { run.stderrTruncated = true }
                        discarded += n - keep
                        // A flood long past the cap only burns the run's time: stop it.
                        if discarded > floodLimit && !run.outputLimited {
                            run.outputLimited = true
                            kill()
                        }
                    }
                case .result:
                    results.feed(chunk)
                    while true {
                        do throws(FrameError) {
                            guard let frame = try results.next() else { break }
                            // The first of each kind is the cell's; any other was written by its code.
                            switch frame.kind {
                            case .outcome where run.outcome == nil: run.outcome = frame.payload
                            case .display where run.outcome == nil:
                                // The runtime writes a cell's displays right before its outcome: the last ones are
                                // the cell's (any before them, its code wrote), as many as a cell shows at most.
                                run.displays.append(frame.payload)
                                displayBytes += frame.payload.count
                                while run.displays.count > Self.maxDisplays || displayBytes > Self.maxOutcomeBytes {
                                    displayBytes -= run.displays.removeFirst().count
                                }
                            case .usage where run.usage == nil:
                                run.usage = (try? JSONDecoder().decode(CellUsage.self, from: Data(frame.payload)))
                                    ?? CellUsage(cpu_ms: 0, max_rss_kb: 0)
                            default: break  // `primed` (the answer to a prime before this cell), or a frame of the code's own
                            }
                        } catch .tooLarge(_) {
                            // Only an outcome or a display gets this big: one too big to keep counts as an outcome that cannot be read.
                            if run.outcome == nil { run.outcome = [] }
                        } catch {
                            continue
                        }
                    }
                case .report:
                    // As much as a sandbox's own records could ever take: more is the code's, and ignored.
                    let kept = min(n, max(0, 4096 - reportBytes))
                    if kept > 0 {
                        report.feed(chunk.prefix(kept))
                        reportBytes += kept
                        run.report += ChildReportRecord.records(from: &report)
                    }
                case .command:
                    break
                }
            }
        }

        var exited = false
        while true {
            var polled = [pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            let watched = ChildDescriptor.allCases.filter { open[$0] == true }
            for d in watched { polled.append(pollfd(fd: fd(d), events: Int16(POLLIN), revents: 0)) }
            var timeout: Int32 = -1
            if !run.timedOut { timeout = Int32(max(0, min(60_000, (deadline - monotonicSeconds()) * 1000 + 1))) }
            let n = poll(&polled, nfds_t(polled.count), timeout)
            if n < 0 && errno != EINTR { break }
            if !run.timedOut && monotonicSeconds() >= deadline {
                run.timedOut = true
                kill()
            }
            for (i, d) in watched.enumerated() where polled[i + 1].revents != 0 {
                if !drain(d) { open[d] = false }
            }
            if run.complete {
                // The runtime flushed the cell's prints before writing its outcome: they are in the pipes now.
                for d in [ChildDescriptor.stdout, .stderr, .report] where open[d] == true { _ = drain(d) }
                break
            }
            if polled[0].revents != 0 { exited = true }
            if exited {
                // Every process of the child's namespace is gone: what is in the pipes is all there will be.
                for d in ChildDescriptor.allCases where open[d] == true && d != .command { _ = drain(d) }
                break
            }
        }
        run.wallMs = Int((monotonicSeconds() - started) * 1000)
        return run
    }
}
