import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// A forked child: the process of one execution, or the long-lived interpreter of a session.
private final class Child {
    let pid: pid_t
    let slot: Int
    /// The session key; nil for a one-shot child.
    let session: String?
    let report: UnsafeMutablePointer<ci_child_report>
    let zygoteThreads: Int
    var stdoutFd: Int32
    var stderrFd: Int32
    var resultFd: Int32
    /// Sessions: the write end of the pipe the interpreter reads its cells from.
    var commandFd: Int32
    /// Sessions: result-pipe bytes not yet split into NUL-terminated records (outcome, then usage).
    var pending: [UInt8] = []
    var records: [[UInt8]] = []
    /// Sessions: cumulative CPU time the interpreter reported after its last cell.
    var cpuMsSoFar = 0
    var hasRunCell = false
    var waitStatus: Int32?
    var usage = rusage()
    /// Stopped by closeSession (or replaced): no longer the session's interpreter, waiting to be reaped.
    var closing = false
    /// The cell (or the one-shot execution) running now.
    var job: Job?
    /// When the child had exited (or was killed), pipes still open after this grace are force-closed.
    var drainDeadline: Double?

    init(pid: pid_t, slot: Int, session: String?, report: UnsafeMutablePointer<ci_child_report>, zygoteThreads: Int,
         pipes: (Int32, Int32, Int32), commandFd: Int32) {
        self.pid = pid
        self.slot = slot
        self.session = session
        self.report = report
        self.zygoteThreads = zygoteThreads
        (stdoutFd, stderrFd, resultFd) = pipes
        self.commandFd = commandFd
    }

    var pipesOpen: Bool { stdoutFd >= 0 || stderrFd >= 0 || resultFd >= 0 }
    var fds: [Int32] { [stdoutFd, stderrFd, resultFd].filter { $0 >= 0 } }
}

/// One execution in flight: a one-shot child's whole life, or one cell of a session's interpreter.
private final class Job {
    let id: UInt32
    let limits: Limits
    let started = monotonicSeconds()
    let oomKillsBefore: Int
    /// The cell started a new interpreter.
    let fresh: Bool
    let cpuMsBefore: Int
    var stdoutKept = 0
    var stderrKept = 0
    var discarded = 0
    var stdoutTruncated = false
    var stderrTruncated = false
    var outcome: [UInt8] = []
    var timedOut = false
    var outputLimited = false

    init(id: UInt32, limits: Limits, oomKillsBefore: Int, fresh: Bool, cpuMsBefore: Int) {
        self.id = id
        self.limits = limits
        self.oomKillsBefore = oomKillsBefore
        self.fresh = fresh
        self.cpuMsBefore = cpuMsBefore
    }

    var deadline: Double { started + limits.wallSeconds }
}

/// The zygote: a single-threaded poll loop that forks isolated children (one per execution, or one per session
/// that runs many cells) and relays their output.
final class Zygote {
    private let config: WorkerConfig
    private let python: EmbeddedPython
    private let namespaces: ZygoteNamespaces.Entered
    private let cgroups: SlotCgroups?
    private let control: Int32
    private let sigchld: Int32
    private var decoder = FrameDecoder()
    private var filters: [String: [UInt8]] = [:]
    private var children: [Child] = []
    /// Each session's live interpreter.
    private var sessions: [String: Child] = [:]
    /// (memory bytes, processes) last written to each slot's cgroups: most executions use the same profile.
    private var slotSettings: [Int: [Int64]] = [:]
    private let baseAddressSpace: UInt64
    private static let maxOutcomeBytes = 64 << 20
    /// The descriptor a session's interpreter reads its cells from.
    static let commandFd: Int32 = 4

    init(config: WorkerConfig, python: EmbeddedPython, namespaces: ZygoteNamespaces.Entered, cgroups: SlotCgroups?) throws(WorkerError) {
        self.config = config
        self.python = python
        self.namespaces = namespaces
        self.cgroups = cgroups
        self.control = config.controlFd
        sigchld = ci_signalfd_sigchld()
        guard sigchld >= 0 else { throw WorkerError("signalfd: \(String(cString: strerror(errno)))") }
        baseAddressSpace = ci_vm_size()
    }

    func send(_ frame: Frame) {
        if !writeAll(control, frame.encoded()) {
            // The engine is gone: nothing left to serve.
            shutdown(code: 0)
        }
    }

    func sendJSON<T: Encodable>(_ kind: FrameKind, job: UInt32, _ value: T) {
        let data = (try? JSONEncoder().encode(value)) ?? Data()
        send(Frame(kind: kind, job: job, payload: Array(data)))
    }

    func run() -> Never {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds = [pollfd(fd: control, events: Int16(POLLIN), revents: 0), pollfd(fd: sigchld, events: Int16(POLLIN), revents: 0)]
            for child in children {
                for fd in child.fds { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            }
            let now = monotonicSeconds()
            var wake = Double.infinity
            for child in children {
                if child.waitStatus == nil, let job = child.job { wake = min(wake, job.deadline) }
                if let d = child.drainDeadline { wake = min(wake, d) }
            }
            let timeout: Int32 = wake.isInfinite ? -1 : Int32(max(0, min(60_000, (wake - now) * 1000 + 1)))
            let n = poll(&fds, nfds_t(fds.count), timeout)
            if n < 0 && errno != EINTR { shutdown(code: 1) }

            for p in fds where p.revents != 0 {
                if p.fd == control {
                    let r = read(control, &buffer, buffer.count)
                    if r <= 0 { shutdown(code: 0) }
                    buffer.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<r])) }
                    drainFrames()
                } else if p.fd == sigchld {
                    ci_drain_signalfd(sigchld)
                    reap()
                } else {
                    relay(fd: p.fd, buffer: &buffer)
                }
            }
            enforceDeadlines()
            finishExitedChildren()
        }
    }

    private func drainFrames() {
        while true {
            let frame: Frame?
            do { frame = try decoder.next() } catch {
                FileHandle.standardError.write(Data("codeinterp-worker: protocol error: \(error)\n".utf8))
                shutdown(code: 2)
            }
            guard let frame else { return }
            switch frame.kind {
            case .loadFilter:
                if let f = try? JSONDecoder().decode(FilterLoad.self, from: Data(frame.payload)) { filters[f.key] = f.bpf }
            case .execute:
                do {
                    let request = try JSONDecoder().decode(ExecuteRequest.self, from: Data(frame.payload))
                    try start(job: frame.job, request)
                } catch {
                    sendJSON(.rejected, job: frame.job, ["message": "\(error)"])
                }
            case .cancel:
                if let child = children.first(where: { $0.job?.id == frame.job }) { kill(child) }
            case .closeSession:
                let parts = String(decoding: frame.payload, as: UTF8.self).split(separator: "\n").map(String.init)
                if let key = parts.first, parts.count == 1 || sessions[key]?.slot == Int(parts[1]) { close(session: key) }
            case .shutdown:
                shutdown(code: 0)
            default:
                break
            }
        }
    }

    private func start(job id: UInt32, _ request: ExecuteRequest) throws {
        guard !children.contains(where: { $0.job?.id == id }) else { throw WorkerError("job \(id) is already running") }
        guard let filter = filters[request.filterKey] else { throw WorkerError("unknown seccomp filter \(request.filterKey)") }
        guard request.slot >= 0 && request.slot < config.slots else { throw WorkerError("slot \(request.slot) out of range") }
        if let key = request.session, let child = sessions[key] {
            if child.slot == request.slot && child.waitStatus == nil {
                try runCell(job: id, request, in: child)
                return
            }
            close(session: key)  // moved to another slot by the engine, or dead: start afresh
        }
        guard !children.contains(where: { $0.slot == request.slot && !$0.closing }) else {
            throw WorkerError("slot \(request.slot) is busy")
        }
        let child = try fork(request, filter: filter)
        children.append(child)
        if let key = request.session {
            sessions[key] = child
            try runCell(job: id, request, in: child)
        } else {
            child.job = Job(id: id, limits: request.limits, oomKillsBefore: cgroups?.oomKills(slot: request.slot) ?? 0,
                            fresh: true, cpuMsBefore: 0)
        }
    }

    /// Hands a cell to a session's interpreter: `u32 length | UTF-8 code` on its command pipe.
    private func runCell(job id: UInt32, _ request: ExecuteRequest, in child: Child) throws {
        guard child.job == nil else { throw WorkerError("the session is already running a cell") }
        let fresh = !child.hasRunCell
        child.hasRunCell = true
        child.job = Job(id: id, limits: request.limits, oomKillsBefore: cgroups?.oomKills(slot: child.slot) ?? 0,
                        fresh: fresh, cpuMsBefore: child.cpuMsSoFar)
        var message = [UInt8]()
        let code = Array(request.code.utf8)
        withUnsafeBytes(of: UInt32(code.count).littleEndian) { message.append(contentsOf: $0) }
        message += code
        // The interpreter reads the whole cell before running it, so a cell bigger than the pipe cannot block
        // this loop for long; a dead reader fails the write (EPIPE) and the child's exit finishes the job.
        if !writeAll(child.commandFd, message) { kill(child) }
    }

    private func fork(_ request: ExecuteRequest, filter: [UInt8]) throws -> Child {
        // Forking a multi-threaded process copies locks held by threads that do not exist in the child.
        let threads = Int(ci_thread_count())
        guard threads == 1 else { throw WorkerError("refusing to fork: the zygote has \(threads) threads") }

        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1], res: [Int32] = [-1, -1], cmd: [Int32] = [-1, -1]
        try check("pipe") { ci_pipe_cloexec(&out) }
        try check("pipe") { ci_pipe_cloexec(&err) }
        try check("pipe") { ci_pipe_cloexec(&res) }
        let session = request.session != nil
        if session { try check("pipe") { ci_pipe_cloexec(&cmd) } }
        guard let report = ci_child_report_create() else { throw WorkerError("mmap failed") }
        let settings = [request.limits.memoryBytes + (64 << 20), Int64(request.limits.processes)]
        if let cgroups, slotSettings[request.slot] != settings {
            cgroups.configure(slot: request.slot, memoryBytes: settings[0], processes: request.limits.processes)
            slotSettings[request.slot] = settings
        }

        let plan = IsolationPlan(
            workdir: request.workdir,
            uid: namespaces.report.root ? config.uidBase + UInt32(request.slot) : nil,
            limits: request.limits, network: request.network, hostNetworkFd: namespaces.hostNetworkFd,
            cgroupProcs: cgroups?.procsFiles(slot: request.slot) ?? [], filter: filter, report: report,
            baseAddressSpace: baseAddressSpace, namespaces: namespaces.report.root || namespaces.report.userNamespace,
            session: session)

        EmbeddedPython.beforeFork()
        let pid = ci_fork()
        if pid == 0 {
            EmbeddedPython.afterForkInChild()
            childMain(plan: plan, code: request.code, out: out[1], err: err[1], res: res[1], cmd: cmd[0])
        }
        EmbeddedPython.afterForkInParent()
        for fd in [out[1], err[1], res[1], cmd[0]] where fd >= 0 { Glibc.close(fd) }
        guard pid > 0 else {
            for fd in [out[0], err[0], res[0], cmd[1]] where fd >= 0 { Glibc.close(fd) }
            ci_child_report_destroy(report)
            throw WorkerError("fork: \(String(cString: strerror(errno)))")
        }
        for fd in [out[0], err[0], res[0]] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        return Child(pid: pid, slot: request.slot, session: request.session, report: report, zygoteThreads: threads,
                     pipes: (out[0], err[0], res[0]), commandFd: cmd[1])
    }

    /// The child: wire stdio, confine, then run the cell and exit, or (a session) run cells until the command
    /// pipe closes. Never returns.
    private func childMain(plan: IsolationPlan, code: String, out: Int32, err: Int32, res: Int32, cmd: Int32) -> Never {
        ci_unblock_all_signals_and_reset()
        let devnull = open("/dev/null", O_RDONLY)
        dup2(devnull, 0)
        dup2(out, 1)
        dup2(err, 2)
        dup2(res, 3)
        if plan.session { dup2(cmd, Zygote.commandFd) }
        do {
            try isolate(plan)
        } catch {
            let message = Array("sandbox setup failed at \(error)".utf8.prefix(1000)) + [0]
            message.withUnsafeBufferPointer { src in
                withUnsafeMutableBytes(of: &plan.report.pointee.error) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(src))
                }
            }
            _exit(121)
        }
        python.afterFork()
        guard plan.session else {
            python.runCell(code, resultFd: 3, keepOpen: false)
            _exit(0)
        }
        sessionLoop(cpuSeconds: plan.limits.cpuSeconds)
    }

    /// A session's interpreter: read a cell, run it, answer with two NUL-terminated records on fd 3 (the
    /// runtime's outcome JSON, then `{"cpu_ms":..,"max_rss_kb":..}` so far), repeat until the pipe closes.
    private func sessionLoop(cpuSeconds: Int) -> Never {
        while true {
            var header = [UInt8](repeating: 0, count: 4)
            guard readExactly(Zygote.commandFd, &header) else { _exit(0) }
            let length = Int(UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24)
            var code = [UInt8](repeating: 0, count: length)
            guard readExactly(Zygote.commandFd, &code) else { _exit(0) }
            var before = rusage()
            getrusage(RUSAGE_SELF.rawValue, &before)
            // RLIMIT_CPU counts the whole life of the process: give each cell its own allowance on top.
            let used = Int(before.ru_utime.tv_sec + before.ru_stime.tv_sec) + 1
            _ = ci_setrlimit(CI_RLIMIT_CPU, UInt64(used + cpuSeconds), UInt64(used + cpuSeconds + 1))
            python.runCell(String(decoding: code, as: UTF8.self), resultFd: 3, keepOpen: true)
            var after = rusage()
            getrusage(RUSAGE_SELF.rawValue, &after)
            var children = rusage()
            getrusage(RUSAGE_CHILDREN.rawValue, &children)
            let cpuMs = milliseconds(after.ru_utime) + milliseconds(after.ru_stime)
                + milliseconds(children.ru_utime) + milliseconds(children.ru_stime)
            let usage = "{\"cpu_ms\":\(cpuMs),\"max_rss_kb\":\(max(after.ru_maxrss, children.ru_maxrss))}"
            guard writeAll(3, [0] + Array(usage.utf8) + [0]) else { _exit(0) }
        }
    }

    private func relay(fd: Int32, buffer: inout [UInt8]) {
        guard let child = children.first(where: { $0.stdoutFd == fd || $0.stderrFd == fd || $0.resultFd == fd }) else { return }
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        if n <= 0 {
            Glibc.close(fd)
            if child.stdoutFd == fd { child.stdoutFd = -1 }
            if child.stderrFd == fd { child.stderrFd = -1 }
            if child.resultFd == fd { child.resultFd = -1 }
            return
        }
        let chunk = Array(buffer[0..<n])
        if fd == child.resultFd {
            if child.session == nil {
                if let job = child.job, job.outcome.count + n <= Zygote.maxOutcomeBytes { job.outcome += chunk }
            } else {
                receiveRecords(chunk, from: child, buffer: &buffer)
            }
            return
        }
        // Output of a session's interpreter between cells (a background thread) has no execution to go to.
        guard let job = child.job else { return }
        let isStdout = fd == child.stdoutFd
        let cap = isStdout ? job.limits.stdoutBytes : job.limits.stderrBytes
        let kept = isStdout ? job.stdoutKept : job.stderrKept
        let keep = max(0, min(n, cap - kept))
        if keep > 0 {
            send(Frame(kind: isStdout ? .stdout : .stderr, job: job.id, payload: Array(chunk[0..<keep])))
        }
        if keep < n {
            if isStdout { job.stdoutTruncated = true } else { job.stderrTruncated = true }
            job.discarded += n - keep
            // A flood long past the cap only burns the run's time: stop it.
            if job.discarded > 8 * max(job.limits.stdoutBytes, job.limits.stderrBytes) && !job.outputLimited {
                job.outputLimited = true
                kill(child)
            }
        }
        if isStdout { job.stdoutKept += keep } else { job.stderrKept += keep }
    }

    /// Sessions: splits the result pipe into NUL-terminated records; a cell is done after its two.
    private func receiveRecords(_ chunk: [UInt8], from child: Child, buffer: inout [UInt8]) {
        var rest = chunk[...]
        while let nul = rest.firstIndex(of: 0) {
            child.records.append(child.pending + rest[rest.startIndex..<nul])
            child.pending = []
            rest = rest[(nul + 1)...]
        }
        if child.pending.count + rest.count <= Zygote.maxOutcomeBytes { child.pending += rest }
        guard child.records.count >= 2, let job = child.job else { return }
        let outcome = child.records.removeFirst()
        let usage = child.records.removeFirst()
        // The runtime flushed the cell's prints before writing its outcome: they are in the pipes already.
        for fd in [child.stdoutFd, child.stderrFd] where fd >= 0 {
            var waiting = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while child.job != nil, (fd == child.stdoutFd || fd == child.stderrFd), poll(&waiting, 1, 0) > 0 {
                relay(fd: fd, buffer: &buffer)
            }
        }
        // Killed by an output flood meanwhile: the child's exit finishes the job.
        guard child.job === job, child.waitStatus == nil, !job.outputLimited else {
            job.outcome = Array(outcome.prefix(Zygote.maxOutcomeBytes))
            return
        }
        struct CellUsage: Decodable { var cpu_ms: Int; var max_rss_kb: Int }
        let cell = try? JSONDecoder().decode(CellUsage.self, from: Data(usage))
        let cpuMs = max(0, (cell?.cpu_ms ?? job.cpuMsBefore) - job.cpuMsBefore)
        child.cpuMsSoFar = cell?.cpu_ms ?? child.cpuMsSoFar
        job.outcome = Array(outcome.prefix(Zygote.maxOutcomeBytes))
        var report = ChildReport(
            wallMs: Int((monotonicSeconds() - job.started) * 1000), cpuMs: cpuMs, maxRssKb: cell?.max_rss_kb ?? 0,
            stdoutTruncated: job.stdoutTruncated, stderrTruncated: job.stderrTruncated, zygoteThreads: child.zygoteThreads)
        report.interpreterAlive = true
        report.freshInterpreter = job.fresh
        child.job = nil
        finish(job, report: report)
    }

    /// Kills the child's process group and everything left in its slot.
    private func kill(_ child: Child) {
        if child.waitStatus == nil { Glibc.kill(-child.pid, SIGKILL); Glibc.kill(child.pid, SIGKILL) }
        cgroups?.killAll(slot: child.slot)
        if child.drainDeadline == nil { child.drainDeadline = monotonicSeconds() + 2 }
    }

    /// Stops a session's interpreter (its cell in flight, if any, ends as killed).
    private func close(session key: String) {
        guard let child = sessions.removeValue(forKey: key) else { return }
        child.closing = true
        if child.commandFd >= 0 { Glibc.close(child.commandFd); child.commandFd = -1 }
        kill(child)
    }

    private func reap() {
        while true {
            var status: Int32 = 0
            var usage = rusage()
            let pid = wait4(-1, &status, WNOHANG, &usage)
            if pid <= 0 { return }
            // As pid 1 of the namespace the zygote also reaps orphans of finished jobs; only children matter.
            guard let child = children.first(where: { $0.pid == pid }) else { continue }
            child.waitStatus = status
            child.usage = usage
            // Descendants that outlive the child would hold its pipes open and could touch /mnt/data. A closed
            // session's interpreter may die after the slot's next child joined the cgroup: its descendants were
            // killed at close, and the newcomer must live.
            Glibc.kill(-child.pid, SIGKILL)
            if !children.contains(where: { $0 !== child && $0.slot == child.slot && $0.waitStatus == nil }) {
                cgroups?.killAll(slot: child.slot)
            }
            child.drainDeadline = monotonicSeconds() + 2
            if let key = child.session, sessions[key] === child { sessions[key] = nil }
        }
    }

    private func enforceDeadlines() {
        let now = monotonicSeconds()
        for child in children {
            if child.waitStatus == nil, let job = child.job, now >= job.deadline, !job.timedOut {
                job.timedOut = true
                kill(child)
            }
            if child.waitStatus != nil, let d = child.drainDeadline, now >= d {
                for fd in child.fds { Glibc.close(fd) }
                child.stdoutFd = -1; child.stderrFd = -1; child.resultFd = -1
            }
        }
    }

    /// Children that exited and whose pipes are drained: report the execution they were running, forget them.
    private func finishExitedChildren() {
        for child in children where child.waitStatus != nil && !child.pipesOpen {
            children.removeAll { $0 === child }
            if child.commandFd >= 0 { Glibc.close(child.commandFd) }
            defer { ci_child_report_destroy(child.report) }
            guard let job = child.job else { continue }
            child.job = nil
            let status = child.waitStatus!
            let signal = ci_wifsignaled(status) != 0 ? ci_wtermsig(status) : nil
            let cpuMs = max(0, milliseconds(child.usage.ru_utime) + milliseconds(child.usage.ru_stime) - job.cpuMsBefore)
            let blockedNr = child.report.pointee.blocked_syscall
            let sandboxError: String? = ci_wifexited(status) != 0 && ci_wexitstatus(status) == 121
                ? withUnsafeBytes(of: child.report.pointee.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                : nil
            let oom = (cgroups?.oomKills(slot: child.slot) ?? 0) > job.oomKillsBefore
            if child.session != nil {
                // A cell cut short: whatever complete outcome record arrived is its outcome.
                if job.outcome.isEmpty { job.outcome = child.records.first ?? [] }
            }
            var report = ChildReport(
                exitCode: ci_wifexited(status) != 0 ? ci_wexitstatus(status) : nil,
                signal: signal,
                wallMs: Int((monotonicSeconds() - job.started) * 1000),
                cpuMs: cpuMs,
                maxRssKb: Int(child.usage.ru_maxrss),
                timedOut: job.timedOut,
                cpuLimited: signal == SIGXCPU || (signal == SIGKILL && cpuMs >= job.limits.cpuSeconds * 1000),
                memoryLimited: oom,
                outputLimited: job.outputLimited,
                stdoutTruncated: job.stdoutTruncated,
                stderrTruncated: job.stderrTruncated,
                sandboxError: sandboxError?.isEmpty == false ? sandboxError : nil,
                zygoteThreads: child.zygoteThreads)
            report.blockedSyscallNumber = blockedNr >= 0 ? blockedNr : nil
            report.freshInterpreter = job.fresh
            if child.session != nil && report.exitCode == 0 && !child.closing {
                // The interpreter exited by itself in the middle of a cell (os._exit(0)): not a clean finish.
                report.exitCode = nil
            }
            finish(job, report: report)
        }
    }

    private func finish(_ job: Job, report: ChildReport) {
        if !job.outcome.isEmpty { send(Frame(kind: .outcome, job: job.id, payload: job.outcome)) }
        sendJSON(.exited, job: job.id, report)
    }

    private func shutdown(code: Int32) -> Never {
        for child in children { kill(child) }
        cgroups?.remove()
        exit(code)
    }
}

private func milliseconds(_ t: timeval) -> Int { Int(t.tv_sec) * 1000 + Int(t.tv_usec) / 1000 }

/// Reads exactly `buffer.count` bytes; false on EOF or error.
private func readExactly(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
    var offset = 0
    while offset < buffer.count {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + offset, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        offset += n
    }
    return true
}
