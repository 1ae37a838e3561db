import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// A forked child as the zygote knows it: a pid, a slot, nothing of what it prints or computes.
private struct Child {
    let id: UInt32
    let pid: pid_t
    let slot: Int
    let oomKillsBefore: Int
    /// Sent SIGKILL: its slot may be handed to the next child while the kernel finishes this one.
    var killed = false
    /// A session's cell: the CPU time (ms) past which the zygote kills the child.
    var cpuDeadlineMs: Int?
    var cpuLimited = false
}

/// A child forked but still confining itself: its descriptors go to the engine once it is done (or dead).
private struct Isolating {
    let id: UInt32
    let pid: pid_t
    let threads: Int
    /// The engine's ends of the child's pipes (ChildDescriptor order).
    let engineEnds: [Int32]
    /// Its own /mnt/data (a tmpfs), once the child has sent it on the ready channel.
    var dataDirectory: Int32 = -1
}

/// The zygote: a single-threaded poll loop that forks isolated children ahead of their code, hands their
/// descriptors to the engine, sets limits on them from outside, kills and reaps them.
///
/// It holds no tenant data: a child's stdout, stderr, outcome and code travel between the child and the engine on
/// pipes the zygote closed its ends of right after the fork. What the next fork copies is the preloaded
/// interpreter and this loop's bookkeeping (pids and slots).
final class Zygote {
    private let config: WorkerConfig
    private let python: EmbeddedPython
    private let namespaces: ZygoteNamespaces.Entered
    private let cgroups: SlotCgroups?
    private let control: Int32
    private let sigchld: Int32
    private var decoder = FrameDecoder()
    private var filters: [String: [UInt8]] = [:]
    private var children: [pid_t: Child] = [:]
    /// Children still confining themselves, by the read end of their ready pipe.
    private var isolating: [Int32: Isolating] = [:]
    /// Children reaped whose slot's cgroup still counts a process (one that left the pid namespace's teardown
    /// late, or a host without a pid namespace per child): their `exited`, which frees the slot for the next
    /// execution's uid and group, waits until the group is empty.
    private var draining: [(slot: Int, id: UInt32, exit: ChildExit, since: Double)] = []
    /// (memory bytes, processes) last written to each slot's cgroups: most executions use the same profile.
    private var slotSettings: [Int: [Int64]] = [:]
    private let baseAddressSpace: UInt64
    /// Our own pid namespace: after each fork into a new one, the namespace for further children is reset to it.
    private let ownPidNamespace: Int32

    init(config: WorkerConfig, python: EmbeddedPython, namespaces: ZygoteNamespaces.Entered, cgroups: SlotCgroups?) throws(WorkerError) {
        self.config = config
        self.python = python
        self.namespaces = namespaces
        self.cgroups = cgroups
        self.control = config.controlFd
        sigchld = ci_signalfd_sigchld()
        guard sigchld >= 0 else { throw WorkerError("signalfd: \(String(cString: strerror(errno)))") }
        baseAddressSpace = ci_vm_size()
        ownPidNamespace = namespaces.report.pidNamespace ? open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC) : -1
    }

    func send(_ frame: Frame, fds: [Int32] = []) {
        let bytes = frame.encoded()
        let sent = bytes.withUnsafeBytes { buf -> Bool in
            // The descriptors ride on the first byte of the frame; the rest goes like any other write.
            let n = fds.withUnsafeBufferPointer { ci_send_with_fds(control, buf.baseAddress, buf.count, $0.baseAddress, Int32(fds.count)) }
            guard n > 0 else { return false }
            return n == buf.count || writeAll(control, Array(bytes[n...]))
        }
        // The engine is gone: nothing left to serve.
        if !sent { shutdown(code: 0) }
    }

    func sendJSON<T: Encodable>(_ kind: FrameKind, job: UInt32, _ value: T, fds: [Int32] = []) {
        let data = (try? JSONEncoder().encode(value)) ?? Data()
        send(Frame(kind: kind, job: job, payload: Array(data)), fds: fds)
    }

    func run() -> Never {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds = [pollfd(fd: control, events: Int16(POLLIN), revents: 0), pollfd(fd: sigchld, events: Int16(POLLIN), revents: 0)]
            let readyPipes = Array(isolating.keys)
            fds += readyPipes.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            // While a session's cell runs, its CPU time is checked ten times a second.
            let watching = children.values.contains { $0.cpuDeadlineMs != nil && !$0.killed }
            let n = poll(&fds, nfds_t(fds.count), !draining.isEmpty ? 5 : watching ? 100 : -1)
            if n < 0 && errno != EINTR { shutdown(code: 1) }
            if watching { enforceCPUAllowances() }
            if !draining.isEmpty { finishDraining() }
            if fds[0].revents != 0 {
                let r = read(control, &buffer, buffer.count)
                if r <= 0 && !(r < 0 && errno == EINTR) { shutdown(code: 0) }
                if r > 0 {
                    buffer.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<r])) }
                    drainFrames()
                }
            }
            for (i, fd) in readyPipes.enumerated() where fds[2 + i].revents != 0 { readyChannel(fd) }
            if fds[1].revents != 0 {
                ci_drain_signalfd(sigchld)
                reap()
            }
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
            case .spawn:
                do {
                    let request = try JSONDecoder().decode(SpawnRequest.self, from: Data(frame.payload))
                    try spawn(id: frame.job, request)
                } catch {
                    sendJSON(.rejected, job: frame.job, ["message": "\(error)"])
                }
            case .limits:
                do {
                    let limits = try JSONDecoder().decode(ChildLimits.self, from: Data(frame.payload))
                    try apply(limits, to: frame.job)
                    send(Frame(kind: .ack, job: frame.job))
                } catch {
                    sendJSON(.rejected, job: frame.job, ["message": "\(error)"])
                }
            case .kill:
                if let child = children.values.first(where: { $0.id == frame.job }) {
                    children[child.pid]?.killed = true
                    kill(child)
                }
            case .shutdown:
                shutdown(code: 0)
            default:
                break
            }
        }
    }

    private func spawn(id: UInt32, _ request: SpawnRequest) throws {
        guard let filter = filters[request.filterKey] else { throw WorkerError("unknown seccomp filter \(request.filterKey)") }
        guard request.slot >= 0 && request.slot < config.slots else { throw WorkerError("slot \(request.slot) out of range") }
        guard !children.values.contains(where: { $0.slot == request.slot && !$0.killed }) else {
            throw WorkerError("slot \(request.slot) is busy")
        }
        // Forking a multi-threaded process copies locks held by threads that do not exist in the child.
        let threads = Int(ci_thread_count())
        guard threads == 1 else { throw WorkerError("refusing to fork: the zygote has \(threads) threads") }

        // Pipes, in ChildDescriptor order; the child keeps one end of each, the engine gets the other.
        var pipes: [[Int32]] = []
        defer { for p in pipes { for fd in p where fd >= 0 { Glibc.close(fd) } } }
        for _ in ChildDescriptor.allCases {
            var p: [Int32] = [-1, -1]
            try check("pipe") { ci_pipe_cloexec(&p) }
            pipes.append(p)
        }
        // The child closes its end once it is confined (with every other descriptor, isolation step 8): then, and
        // not before, the engine may hand it work and move its /mnt/data. A socket: before that, a child with a
        // /mnt/data of its own sends its directory on it.
        var ready: [Int32] = [-1, -1]
        try check("socketpair") { ci_socketpair_cloexec(&ready) }
        _ = fcntl(ready[0], F_SETFL, fcntl(ready[0], F_GETFL) | O_NONBLOCK)
        pipes.append(ready)
        let settings = [request.limits.memoryBytes + (64 << 20), Int64(request.limits.processes)]
        if let cgroups, slotSettings[request.slot] != settings {
            guard cgroups.configure(slot: request.slot, memoryBytes: settings[0], processes: request.limits.processes) else {
                throw WorkerError("cannot set up the cgroup of slot \(request.slot) (\(cgroups.description)): not running without its limits")
            }
            slotSettings[request.slot] = settings
        }
        let plan = IsolationPlan(
            workdir: request.workdir,
            uid: namespaces.report.root ? config.uidBase + UInt32(request.slot) : nil,
            limits: request.limits, network: request.network, hostNetworkFd: namespaces.hostNetworkFd,
            cgroupProcs: cgroups?.procsFiles(slot: request.slot) ?? [], filter: filter,
            baseAddressSpace: baseAddressSpace, namespaces: namespaces.report.root || namespaces.report.userNamespace,
            ownPidNamespace: ownPidNamespace >= 0, session: request.session, sharedUidSlots: config.slots,
            packages: config.packages, dataBytes: request.dataBytes)
        let oomBefore = cgroups?.oomKills(slot: request.slot) ?? 0

        // A pid namespace per child: the interpreter is its pid 1, and when it ends the kernel ends every process
        // it started. unshare(CLONE_NEWPID) affects only the next fork; setns puts further forks back in ours.
        if ownPidNamespace >= 0 { try check("unshare pid namespace") { ci_unshare(CI_CLONE_NEWPID) } }
        EmbeddedPython.beforeFork()
        let pid = ci_fork()
        let forkErrno = errno
        if pid == 0 {
            EmbeddedPython.afterForkInChild()
            childMain(plan: plan, pipes: pipes, readyFd: ready[1], session: request.session)
        }
        EmbeddedPython.afterForkInParent()
        if ownPidNamespace >= 0 && ci_setns(ownPidNamespace, CI_CLONE_NEWPID) != 0 {
            // Every further child would land in this one's namespace: no longer safe to serve.
            FileHandle.standardError.write(Data("codeinterp-worker: cannot return to the zygote's pid namespace\n".utf8))
            shutdown(code: 5)
        }
        guard pid > 0 else { throw WorkerError("fork: \(String(cString: strerror(forkErrno)))") }
        children[pid] = Child(id: id, pid: pid, slot: request.slot, oomKillsBefore: oomBefore)
        // Ours: the read ends of the child's output pipes and the write end of its command pipe.
        var engineEnds: [Int32] = []
        for d in ChildDescriptor.allCases {
            let keep = d == .command ? 1 : 0
            engineEnds.append(pipes[d.rawValue][keep])
            pipes[d.rawValue][keep] = -1
            Glibc.close(pipes[d.rawValue][1 - keep])
            pipes[d.rawValue][1 - keep] = -1
        }
        Glibc.close(ready[1])
        pipes.removeLast()
        isolating[ready[0]] = Isolating(id: id, pid: pid, threads: threads, engineEnds: engineEnds)
    }

    /// Something on a child's ready channel: its /mnt/data directory, or the end of the channel (the child is
    /// confined, or dead).
    private func readyChannel(_ fd: Int32) {
        var byte: UInt8 = 0
        var received: [Int32] = [-1, -1]
        while true {
            var count: Int32 = 0
            let n = received.withUnsafeMutableBufferPointer { ci_recv_with_fds(fd, &byte, 1, $0.baseAddress, 2, &count) }
            for d in received.prefix(Int(count)) {
                if isolating[fd]?.dataDirectory == -1 { isolating[fd]?.dataDirectory = d } else { Glibc.close(d) }
            }
            if n > 0 { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            announce(readyPipe: fd)
            return
        }
    }

    /// The child behind `readyPipe` is confined (or dead): its descriptors go to the engine.
    private func announce(readyPipe: Int32) {
        guard let child = isolating.removeValue(forKey: readyPipe) else { return }
        Glibc.close(readyPipe)
        let data = child.dataDirectory >= 0 ? [child.dataDirectory] : []
        sendJSON(.spawned, job: child.id, SpawnedChild(pid: child.pid, zygoteThreads: child.threads, dataDirectory: !data.isEmpty),
                 fds: child.engineEnds + data)
        for fd in child.engineEnds + data { Glibc.close(fd) }
    }

    /// The child: wire its descriptors, confine itself, then run cells from the command pipe (one, or a
    /// session's many). Never returns.
    private func childMain(plan: IsolationPlan, pipes: [[Int32]], readyFd: Int32, session: Bool) -> Never {
        ci_unblock_all_signals_and_reset()
        // Out of the way first: a pipe may already sit on a number another one is about to take.
        // The ready pipe above the child's six descriptors, where isolation step 8 closes it.
        let ready = fcntl(readyFd, F_DUPFD_CLOEXEC, 16)
        Glibc.close(readyFd)
        let ends = ChildDescriptor.allCases.map { d in fcntl(pipes[d.rawValue][d == .command ? 0 : 1], F_DUPFD_CLOEXEC, 16) }
        let devnull = open("/dev/null", O_RDONLY)
        dup2(devnull, 0)
        for d in ChildDescriptor.allCases { dup2(ends[d.rawValue], d.childFd) }
        let report = ChildDescriptor.report.childFd
        do {
            try isolate(plan, reportFd: report, readyFd: ready)
        } catch {
            _ = writeAll(report, Array("Esandbox setup failed at \(error)".utf8.prefix(1000)))
            _exit(121)
        }
        python.afterFork()
        cellLoop(oneShot: !session)
    }

    /// Reads a cell, runs it, answers with two NUL-terminated records on fd 3 (the runtime's outcome JSON, then
    /// `{"cpu_ms":..,"max_rss_kb":..}` of the interpreter's life so far). A one-shot child then exits.
    private func cellLoop(oneShot: Bool) -> Never {
        let command = ChildDescriptor.command.childFd, result = ChildDescriptor.result.childFd
        while true {
            var header = [UInt8](repeating: 0, count: CellMessage.headerSize)
            guard readExactly(command, &header) else { _exit(0) }
            let (length, memory) = CellMessage.decodeHeader(header)
            var code = [UInt8](repeating: 0, count: length)
            guard readExactly(command, &code) else { _exit(0) }
            if memory > 0 {
                // Lower only. A session keeps its hard limit, so a later cell may have the profile's again.
                var current = rlimit()
                getrlimit(__rlimit_resource_t(UInt32(CI_RLIMIT_AS)), &current)
                let hard = UInt64(current.rlim_max)
                let soft = min(hard, baseAddressSpace + memory)
                _ = ci_setrlimit(CI_RLIMIT_AS, soft, oneShot ? soft : hard)
            }
            python.runCell(String(decoding: code, as: UTF8.self), resultFd: result, keepOpen: true, oneShot: oneShot)
            var me = rusage(), children = rusage()
            getrusage(RUSAGE_SELF.rawValue, &me)
            getrusage(RUSAGE_CHILDREN.rawValue, &children)
            let cpuMs = milliseconds(me.ru_utime) + milliseconds(me.ru_stime)
                + milliseconds(children.ru_utime) + milliseconds(children.ru_stime)
            // A one-shot child that is alone now (one thread, no other process in its namespace, no signal handler
            // of the user's able to run) can change nothing any more: the engine may collect /mnt/data without
            // waiting for the kernel to tear this process down.
            var alone = false
            if oneShot {
                ci_block_all_signals()
                alone = ci_thread_count() == 1
                    && (directoryEntryNames(atPath: "/proc") ?? []).filter({ $0.allSatisfy { $0.isNumber } }) == ["\(getpid())"]
            }
            let usage = "{\"cpu_ms\":\(cpuMs),\"max_rss_kb\":\(max(me.ru_maxrss, children.ru_maxrss)),\"alone\":\(alone)}"
            guard writeAll(result, [0] + Array(usage.utf8) + [0]) else { _exit(0) }
            if oneShot { _exit(0) }
        }
    }

    /// Limits from outside: a session's CPU allowance for its next cell, a request's lower memory. Neither needs
    /// CAP_SYS_RESOURCE (a container's root rarely has it): CPU is watched here, memory is the slot's cgroup.
    private func apply(_ limits: ChildLimits, to id: UInt32) throws {
        guard let child = children.values.first(where: { $0.id == id }) else { throw WorkerError("no child \(id)") }
        if let cpu = limits.cpuSeconds {
            guard let used = cpuMilliseconds(of: child.pid) else {
                throw WorkerError("cannot read the CPU time of child \(child.pid)")
            }
            children[child.pid]?.cpuDeadlineMs = used + cpu * 1000
        }
        if let memory = limits.memoryBytes, let cgroups {
            let settings = [memory + (64 << 20), slotSettings[child.slot]?.last ?? 0]
            cgroups.configure(slot: child.slot, memoryBytes: settings[0], processes: Int(settings[1]))
            slotSettings[child.slot] = settings
        }
    }

    private func enforceCPUAllowances() {
        for child in children.values {
            guard let deadline = child.cpuDeadlineMs, !child.killed, let used = cpuMilliseconds(of: child.pid), used > deadline else { continue }
            children[child.pid]?.cpuLimited = true
            children[child.pid]?.killed = true
            kill(child)
        }
    }

    /// CPU time of a child and the descendants it reaped, from our own /proc (see ZygoteNamespaces).
    private func cpuMilliseconds(of pid: pid_t) -> Int? {
        guard namespaces.report.zygoteProc, let stat = readSmallFile("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3; utime, stime, cutime, cstime are fields 14-17.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 14 else { return nil }
        let ticks = fields[11...14].compactMap { Int($0) }.reduce(0, +)
        return ticks * 1000 / max(1, sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Kills the child; the kernel then kills every process of its pid namespace.
    private func kill(_ child: Child) {
        Glibc.kill(child.pid, SIGKILL)
        if ownPidNamespace < 0 {
            // No pid namespace per child on this host: the process group and the slot's cgroup are all we have.
            Glibc.kill(-child.pid, SIGKILL)
            cgroups?.killAll(slot: child.slot)
        }
    }

    private func reap() {
        while true {
            var status: Int32 = 0
            var usage = rusage()
            let pid = wait4(-1, &status, WNOHANG, &usage)
            if pid <= 0 { return }
            // As pid 1 of its namespace the zygote may also reap strays of hosts without per-child namespaces.
            guard let child = children.removeValue(forKey: pid) else { continue }
            // Died while confining itself: the engine learns of it before it learns of its end.
            if let fd = isolating.first(where: { $0.value.pid == pid })?.key { announce(readyPipe: fd) }
            if ownPidNamespace < 0 {
                Glibc.kill(-child.pid, SIGKILL)
                cgroups?.killAll(slot: child.slot)
            }
            let exit = ChildExit(
                exitCode: ci_wifexited(status) != 0 ? ci_wexitstatus(status) : nil,
                signal: ci_wifsignaled(status) != 0 ? ci_wtermsig(status) : nil,
                cpuMs: milliseconds(usage.ru_utime) + milliseconds(usage.ru_stime),
                maxRssKb: Int(usage.ru_maxrss),
                oomKilled: (cgroups?.oomKills(slot: child.slot) ?? 0) > child.oomKillsBefore)
            var report = exit
            report.cpuLimited = child.cpuLimited
            // (A session's slot may already hold its next child, forked after this one was killed: then the group
            // is that child's, and nothing in it is this one's to kill.)
            if let cgroups, !children.values.contains(where: { $0.slot == child.slot }), !cgroups.isDrained(slot: child.slot) {
                cgroups.killAll(slot: child.slot)
                draining.append((child.slot, child.id, report, monotonicSeconds()))
                continue
            }
            sendJSON(.exited, job: child.id, report)
        }
    }

    /// Sends the `exited` of reaped children whose slot group is empty now; kills what is still in the others. A
    /// group that stays populated (a process this namespace cannot see, or one stuck in the kernel) is reported
    /// as leaked after a while, so that the execution ends and its slot is never handed out again.
    private func finishDraining() {
        guard let cgroups else { return }
        var still: [(slot: Int, id: UInt32, exit: ChildExit, since: Double)] = []
        for entry in draining {
            if cgroups.isDrained(slot: entry.slot) || children.values.contains(where: { $0.slot == entry.slot }) {
                sendJSON(.exited, job: entry.id, entry.exit)
            } else if monotonicSeconds() - entry.since > 5 {
                var exit = entry.exit
                exit.slotLeaked = true
                FileHandle.standardError.write(Data("codeinterp-worker: slot \(entry.slot) keeps processes after its child's end\n".utf8))
                sendJSON(.exited, job: entry.id, exit)
            } else {
                cgroups.killAll(slot: entry.slot)
                still.append(entry)
            }
        }
        draining = still
    }

    private func shutdown(code: Int32) -> Never {
        for (fd, child) in isolating { for end in [fd, child.dataDirectory] + child.engineEnds where end >= 0 { Glibc.close(end) } }
        isolating = [:]
        for child in children.values { kill(child) }
        // Wait (briefly) for the children, so that their groups are empty and can be removed.
        let deadline = monotonicSeconds() + 2
        while !children.isEmpty && monotonicSeconds() < deadline {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0 { children[pid] = nil } else if pid < 0 && errno == ECHILD { break } else { usleep(2000) }
        }
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
