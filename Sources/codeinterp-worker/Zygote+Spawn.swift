import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// Forking a child and handing it to the engine once it has confined itself.
extension Zygote {
    func spawn(id: UInt32, _ request: SpawnRequest) throws {
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
    func readyChannel(_ fd: Int32) {
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
    func announce(readyPipe: Int32) {
        guard let child = isolating.removeValue(forKey: readyPipe) else { return }
        Glibc.close(readyPipe)
        let data = child.dataDirectory >= 0 ? [child.dataDirectory] : []
        sendJSON(.spawned, job: child.id, SpawnedChild(pid: child.pid, zygoteThreads: child.threads, dataDirectory: !data.isEmpty),
                 fds: child.engineEnds + data)
        for fd in child.engineEnds + data { Glibc.close(fd) }
    }
}
