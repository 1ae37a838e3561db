import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// Killing children, reaping them, and holding back their `exited` until their slot is empty.
extension Zygote {
    /// Kills the child; the kernel then kills every process of its pid namespace.
    func kill(_ child: Child) {
        Glibc.kill(child.pid, SIGKILL)
        if ownPidNamespace < 0 {
            // No pid namespace per child on this host: the process group and the slot's cgroup are all we have.
            Glibc.kill(-child.pid, SIGKILL)
            cgroups?.killAll(slot: child.slot)
        }
    }

    func reap() {
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
    func finishDraining() {
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
}
