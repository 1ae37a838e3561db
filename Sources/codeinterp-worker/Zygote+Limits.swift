import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// Limits set on live children from outside: nothing here relies on the child to keep them.
extension Zygote {
    /// Limits from outside: a session's CPU allowance for its next cell, a request's lower memory. Neither needs
    /// CAP_SYS_RESOURCE (a container's root rarely has it): CPU is watched here, memory is the slot's cgroup.
    func apply(_ limits: ChildLimits, to id: UInt32) throws {
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

    func enforceCPUAllowances() {
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
}
