import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// A forked child as the zygote knows it: a pid, a slot, nothing of what it prints or computes.
struct Child {
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
struct Isolating {
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
///
/// Here: its state, the poll loop and the engine's frames. Forking and handing children over: Zygote+Spawn;
/// the child's own side after the fork: ChildMain; limits set from outside: Zygote+Limits; killing, reaping
/// and slot draining: Zygote+Reaping. Every part runs on the one thread of the zygote.
final class Zygote {
    let config: WorkerConfig
    let python: EmbeddedPython
    let namespaces: ZygoteNamespaces.Entered
    let cgroups: SlotCgroups?
    let control: Int32
    let sigchld: Int32
    var decoder = FrameDecoder()
    var filters: [String: [UInt8]] = [:]
    var children: [pid_t: Child] = [:]
    /// Children still confining themselves, by the read end of their ready pipe.
    var isolating: [Int32: Isolating] = [:]
    /// Children reaped whose slot's cgroup still counts a process (one that left the pid namespace's teardown
    /// late, or a host without a pid namespace per child): their `exited`, which frees the slot for the next
    /// execution's uid and group, waits until the group is empty.
    var draining: [(slot: Int, id: UInt32, exit: ChildExit, since: Double)] = []
    /// (memory bytes, processes) last written to each slot's cgroups: most executions use the same profile.
    var slotSettings: [Int: [Int64]] = [:]
    let baseAddressSpace: UInt64
    /// Our own pid namespace: after each fork into a new one, the namespace for further children is reset to it.
    let ownPidNamespace: Int32

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

    func shutdown(code: Int32) -> Never {
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

func milliseconds(_ t: timeval) -> Int { Int(t.tv_sec) * 1000 + Int(t.tv_usec) / 1000 }
