import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// One execution in flight: the forked child and the pipes the zygote relays.
private final class Job {
    let id: UInt32
    let pid: pid_t
    let slot: Int
    let limits: Limits
    let report: UnsafeMutablePointer<ci_child_report>
    let started = monotonicSeconds()
    let oomKillsBefore: Int
    let zygoteThreads: Int
    var stdoutFd: Int32
    var stderrFd: Int32
    var resultFd: Int32
    var stdoutKept = 0
    var stderrKept = 0
    var discarded = 0
    var stdoutTruncated = false
    var stderrTruncated = false
    var outcome: [UInt8] = []
    var waitStatus: Int32?
    var usage = rusage()
    var timedOut = false
    var outputLimited = false
    /// When the child had exited (or was killed), pipes still open after this grace are force-closed.
    var drainDeadline: Double?

    init(id: UInt32, pid: pid_t, slot: Int, limits: Limits, report: UnsafeMutablePointer<ci_child_report>,
         oomKillsBefore: Int, zygoteThreads: Int, pipes: (Int32, Int32, Int32)) {
        self.id = id
        self.pid = pid
        self.slot = slot
        self.limits = limits
        self.report = report
        self.oomKillsBefore = oomKillsBefore
        self.zygoteThreads = zygoteThreads
        (stdoutFd, stderrFd, resultFd) = pipes
    }

    var deadline: Double { started + limits.wallSeconds }
    var pipesOpen: Bool { stdoutFd >= 0 || stderrFd >= 0 || resultFd >= 0 }
}

/// The zygote: a single-threaded poll loop that forks one isolated child per execution and relays its output.
final class Zygote {
    private let config: WorkerConfig
    private let python: EmbeddedPython
    private let namespaces: ZygoteNamespaces.Entered
    private let cgroups: SlotCgroups?
    private let control: Int32
    private let sigchld: Int32
    private var decoder = FrameDecoder()
    private var filters: [String: [UInt8]] = [:]
    private var jobs: [UInt32: Job] = [:]
    /// (memory bytes, processes) last written to each slot's cgroups: most executions use the same profile.
    private var slotSettings: [Int: [Int64]] = [:]
    private let baseAddressSpace: UInt64
    private static let maxOutcomeBytes = 64 << 20

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
            for job in jobs.values {
                for fd in [job.stdoutFd, job.stderrFd, job.resultFd] where fd >= 0 {
                    fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                }
            }
            let now = monotonicSeconds()
            var wake = Double.infinity
            for job in jobs.values {
                wake = min(wake, job.waitStatus == nil ? job.deadline : (job.drainDeadline ?? .infinity))
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
            finishCompletedJobs()
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
                if let job = jobs[frame.job] { killJob(job) }
            case .shutdown:
                shutdown(code: 0)
            default:
                break
            }
        }
    }

    private func start(job id: UInt32, _ request: ExecuteRequest) throws {
        guard jobs[id] == nil else { throw WorkerError("job \(id) is already running") }
        guard let filter = filters[request.filterKey] else { throw WorkerError("unknown seccomp filter \(request.filterKey)") }
        guard request.slot >= 0 && request.slot < config.slots else { throw WorkerError("slot \(request.slot) out of range") }
        guard !jobs.values.contains(where: { $0.slot == request.slot }) else { throw WorkerError("slot \(request.slot) is busy") }
        // Forking a multi-threaded process copies locks held by threads that do not exist in the child.
        let threads = Int(ci_thread_count())
        guard threads == 1 else { throw WorkerError("refusing to fork: the zygote has \(threads) threads") }

        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1], res: [Int32] = [-1, -1]
        try check("pipe") { ci_pipe_cloexec(&out) }
        try check("pipe") { ci_pipe_cloexec(&err) }
        try check("pipe") { ci_pipe_cloexec(&res) }
        guard let report = ci_child_report_create() else { throw WorkerError("mmap failed") }
        let settings = [request.limits.memoryBytes + (64 << 20), Int64(request.limits.processes)]
        if let cgroups, slotSettings[request.slot] != settings {
            cgroups.configure(slot: request.slot, memoryBytes: settings[0], processes: request.limits.processes)
            slotSettings[request.slot] = settings
        }
        let oomBefore = cgroups?.oomKills(slot: request.slot) ?? 0

        let plan = IsolationPlan(
            workdir: request.workdir,
            uid: namespaces.report.root ? config.uidBase + UInt32(request.slot) : nil,
            limits: request.limits, network: request.network, hostNetworkFd: namespaces.hostNetworkFd,
            cgroupProcs: cgroups?.procsFiles(slot: request.slot) ?? [], filter: filter, report: report,
            baseAddressSpace: baseAddressSpace, namespaces: namespaces.report.root || namespaces.report.userNamespace)

        EmbeddedPython.beforeFork()
        let pid = ci_fork()
        if pid == 0 {
            EmbeddedPython.afterForkInChild()
            childMain(plan: plan, code: request.code, out: out[1], err: err[1], res: res[1])
        }
        EmbeddedPython.afterForkInParent()
        close(out[1]); close(err[1]); close(res[1])
        guard pid > 0 else {
            close(out[0]); close(err[0]); close(res[0])
            ci_child_report_destroy(report)
            throw WorkerError("fork: \(String(cString: strerror(errno)))")
        }
        for fd in [out[0], err[0], res[0]] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        jobs[id] = Job(id: id, pid: pid, slot: request.slot, limits: request.limits, report: report,
                       oomKillsBefore: oomBefore, zygoteThreads: threads, pipes: (out[0], err[0], res[0]))
    }

    /// The child: wire stdio, confine, run the cell, exit. Never returns.
    private func childMain(plan: IsolationPlan, code: String, out: Int32, err: Int32, res: Int32) -> Never {
        ci_unblock_all_signals_and_reset()
        let devnull = open("/dev/null", O_RDONLY)
        dup2(devnull, 0)
        dup2(out, 1)
        dup2(err, 2)
        dup2(res, 3)
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
        python.runCell(code, resultFd: 3)
        _exit(0)
    }

    private func relay(fd: Int32, buffer: inout [UInt8]) {
        guard let job = jobs.values.first(where: { $0.stdoutFd == fd || $0.stderrFd == fd || $0.resultFd == fd }) else { return }
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        if n <= 0 {
            close(fd)
            if job.stdoutFd == fd { job.stdoutFd = -1 }
            if job.stderrFd == fd { job.stderrFd = -1 }
            if job.resultFd == fd { job.resultFd = -1 }
            return
        }
        let chunk = Array(buffer[0..<n])
        if fd == job.resultFd {
            if job.outcome.count + n <= Zygote.maxOutcomeBytes { job.outcome += chunk }
            return
        }
        let isStdout = fd == job.stdoutFd
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
                killJob(job)
            }
        }
        if isStdout { job.stdoutKept += keep } else { job.stderrKept += keep }
    }

    /// Kills the job's process group and everything left in its slot.
    private func killJob(_ job: Job) {
        if job.waitStatus == nil { kill(-job.pid, SIGKILL); kill(job.pid, SIGKILL) }
        cgroups?.killAll(slot: job.slot)
        if job.drainDeadline == nil { job.drainDeadline = monotonicSeconds() + 2 }
    }

    private func reap() {
        while true {
            var status: Int32 = 0
            var usage = rusage()
            let pid = wait4(-1, &status, WNOHANG, &usage)
            if pid <= 0 { return }
            // As pid 1 of the namespace the zygote also reaps orphans of finished jobs; only job leaders matter.
            guard let job = jobs.values.first(where: { $0.pid == pid }) else { continue }
            job.waitStatus = status
            job.usage = usage
            // Descendants that outlive the child would hold its pipes open and could touch /mnt/data.
            kill(-job.pid, SIGKILL)
            cgroups?.killAll(slot: job.slot)
            job.drainDeadline = monotonicSeconds() + 2
        }
    }

    private func enforceDeadlines() {
        let now = monotonicSeconds()
        for job in jobs.values {
            if job.waitStatus == nil && now >= job.deadline && !job.timedOut {
                job.timedOut = true
                killJob(job)
            }
            if job.waitStatus != nil, let d = job.drainDeadline, now >= d {
                for fd in [job.stdoutFd, job.stderrFd, job.resultFd] where fd >= 0 { close(fd) }
                job.stdoutFd = -1; job.stderrFd = -1; job.resultFd = -1
            }
        }
    }

    private func finishCompletedJobs() {
        for job in jobs.values where job.waitStatus != nil && !job.pipesOpen {
            jobs[job.id] = nil
            let status = job.waitStatus!
            let signal = ci_wifsignaled(status) != 0 ? ci_wtermsig(status) : nil
            let cpuMs = Int(job.usage.ru_utime.tv_sec * 1000) + Int(job.usage.ru_utime.tv_usec / 1000)
                + Int(job.usage.ru_stime.tv_sec * 1000) + Int(job.usage.ru_stime.tv_usec / 1000)
            let blockedNr = job.report.pointee.blocked_syscall
            let sandboxError: String? = ci_wifexited(status) != 0 && ci_wexitstatus(status) == 121
                ? withUnsafeBytes(of: job.report.pointee.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                : nil
            let oom = (cgroups?.oomKills(slot: job.slot) ?? 0) > job.oomKillsBefore
            var report = ChildReport(
                exitCode: ci_wifexited(status) != 0 ? ci_wexitstatus(status) : nil,
                signal: signal,
                wallMs: Int((monotonicSeconds() - job.started) * 1000),
                cpuMs: cpuMs,
                maxRssKb: Int(job.usage.ru_maxrss),
                timedOut: job.timedOut,
                cpuLimited: signal == SIGXCPU || (signal == SIGKILL && cpuMs >= job.limits.cpuSeconds * 1000),
                memoryLimited: oom,
                outputLimited: job.outputLimited,
                stdoutTruncated: job.stdoutTruncated,
                stderrTruncated: job.stderrTruncated,
                sandboxError: sandboxError?.isEmpty == false ? sandboxError : nil,
                zygoteThreads: job.zygoteThreads)
            report.blockedSyscallNumber = blockedNr >= 0 ? blockedNr : nil
            ci_child_report_destroy(job.report)
            if !job.outcome.isEmpty { send(Frame(kind: .outcome, job: job.id, payload: job.outcome)) }
            sendJSON(.exited, job: job.id, report)
        }
    }

    private func shutdown(code: Int32) -> Never {
        for job in jobs.values { killJob(job) }
        cgroups?.remove()
        exit(code)
    }
}
