import CSandbox
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// The namespaces every child shares, entered once by the zygote (a pid namespace per child would cost ~5 ms).
///
/// After `enter()` returns, this process is pid 1 of a new pid namespace, with an empty network namespace, its own
/// IPC and UTS namespaces, and a private mount namespace. The process that called it stays behind as a waiter that
/// exits with the zygote's status.
enum ZygoteNamespaces {
    struct Entered {
        var report: IsolationReport
        /// The host network namespace, for profiles that allow the network (children setns back into it).
        var hostNetworkFd: Int32?
    }

    static func enter() -> Entered {
        var report = IsolationReport()
        report.root = geteuid() == 0
        let hostNet = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)
        var flags = CI_CLONE_NEWNS | CI_CLONE_NEWNET | CI_CLONE_NEWIPC | CI_CLONE_NEWUTS | CI_CLONE_NEWPID
        if !report.root {
            // Unprivileged: a user namespace grants the capabilities to build the rest, mapped to our own uid only.
            flags |= CI_CLONE_NEWUSER
        }
        let uid = getuid(), gid = getgid()
        if ci_unshare(flags) == 0 {
            report.pidNamespace = true
            report.networkNamespace = true
            report.ipcNamespace = true
            report.utsNamespace = true
            report.userNamespace = !report.root
            if !report.root {
                writeFile("/proc/self/setgroups", "deny")
                // Our own uid inside too, not 0: code must not believe it is root (it holds no capability either).
                writeFile("/proc/self/uid_map", "\(uid) \(uid) 1")
                writeFile("/proc/self/gid_map", "\(gid) \(gid) 1")
                report.notes.append("not root: every execution runs as this one host uid (no uid per slot; RLIMIT_NPROC counts all of them together); "
                    + "executions are still apart (a pid namespace each, no capabilities, not dumpable)")
            }
        } else {
            let e = errno
            report.notes.append("namespaces unavailable (\(String(cString: strerror(e)))): no network, pid or mount isolation")
            if hostNet >= 0 { close(hostNet) }
            return Entered(report: report, hostNetworkFd: nil)
        }
        // Becoming pid 1 of the new pid namespace takes a fork: the original process waits and mirrors the exit.
        let pid = fork()
        if pid > 0 {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            _exit(ci_wifexited(status) != 0 ? ci_wexitstatus(status) : 128 + ci_wtermsig(status))
        }
        if pid < 0 {
            report.notes.append("fork into the pid namespace failed")
            return Entered(report: report, hostNetworkFd: hostNet >= 0 ? hostNet : nil)
        }
        // If the waiter dies (the engine died and took it along), so does the whole namespace.
        ci_set_parent_death_signal(SIGKILL)
        mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil)
        // A /proc of our own pid namespace, where our children's pids are the ones fork returned (their CPU time
        // is read there). Children mount their own.
        if mount("proc", "/proc", "proc", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), nil) == 0 {
            report.zygoteProc = true
        } else {
            report.notes.append("cannot mount a /proc for the zygote's pid namespace: a session's CPU limit holds per session, not per cell")
        }
        _ = "sandbox".withCString { sethostname($0, 7) }
        return Entered(report: report, hostNetworkFd: hostNet >= 0 ? hostNet : nil)
    }
}

/// One cgroup per slot and controller (v1 memory + pids), so a job's processes can be limited, counted and killed
/// as a set, fork bombs and orphans included.
struct SlotCgroups {
    static let root = "/sys/fs/cgroup"
    let name: String
    let slots: Int

    /// Creates the slot groups, or returns nil where cgroup v1 memory and pids controllers are not writable.
    /// The zygote itself joins `<name>/zygote`: a group with a process in it is in use, which is how another
    /// zygote's `removeStale` tells it from the leftovers of a crash (pids cannot tell: every zygote lives in a
    /// pid namespace of its own, and another namespace's pid 41 is not ours).
    static func create(name: String, slots: Int) -> SlotCgroups? {
        for controller in ["memory", "pids"] {
            let base = "\(root)/\(controller)/\(name)"
            mkdir(base, 0o755)
            mkdir("\(base)/zygote", 0o755)
            guard writeFile("\(base)/zygote/cgroup.procs", String(getpid())) else { return nil }
            for slot in 0..<slots {
                let dir = "\(base)/slot\(slot)"
                if mkdir(dir, 0o755) != 0 && errno != EEXIST { return nil }
            }
        }
        return SlotCgroups(name: name, slots: slots)
    }

    func dir(_ controller: String, _ slot: Int) -> String { "\(SlotCgroups.root)/\(controller)/\(name)/slot\(slot)" }

    /// Files the child writes its pid into, joining the slot's groups.
    func procsFiles(slot: Int) -> [String] { ["\(dir("memory", slot))/cgroup.procs", "\(dir("pids", slot))/cgroup.procs"] }

    func configure(slot: Int, memoryBytes: Int64, processes: Int) {
        writeFile("\(dir("memory", slot))/memory.limit_in_bytes", String(memoryBytes))
        writeFile("\(dir("pids", slot))/pids.max", String(processes))
    }

    /// The kernel's count of OOM kills in the slot's memory group (monotonic).
    func oomKills(slot: Int) -> Int {
        guard let text = readSmallFile("\(dir("memory", slot))/memory.oom_control") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
            return Int(line.dropFirst(9)) ?? 0
        }
        return 0
    }

    /// SIGKILLs every process left in the slot; true when the slot is empty.
    @discardableResult
    func killAll(slot: Int) -> Bool {
        for _ in 0..<50 {
            guard let text = readSmallFile("\(dir("pids", slot))/cgroup.procs") else { return true }
            let pids = text.split(separator: "\n").compactMap { pid_t($0) }
            if pids.isEmpty { return true }
            for p in pids { kill(p, SIGKILL) }
            usleep(1000)
        }
        return false
    }

    func remove() {
        for controller in ["memory", "pids"] {
            // Out of our own group first: a group with a process in it cannot be removed.
            writeFile("\(SlotCgroups.root)/\(controller)/cgroup.procs", String(getpid()))
            for slot in 0..<slots { rmdir(dir(controller, slot)) }
            rmdir("\(SlotCgroups.root)/\(controller)/\(name)/zygote")
            rmdir("\(SlotCgroups.root)/\(controller)/\(name)")
        }
    }

    /// Removes the groups of workers that died without cleaning up: no process left in their `zygote` group.
    static func removeStale(prefix: String) {
        for controller in ["memory", "pids"] {
            let base = "\(root)/\(controller)"
            for name in directoryEntryNames(atPath: base) ?? [] where name.hasPrefix(prefix) {
                let owner = readSmallFile("\(base)/\(name)/zygote/cgroup.procs") ?? ""
                guard owner.allSatisfy(\.isWhitespace) else { continue }
                for group in directoryEntryNames(atPath: "\(base)/\(name)") ?? [] where group.hasPrefix("slot") || group == "zygote" {
                    rmdir("\(base)/\(name)/\(group)")
                }
                rmdir("\(base)/\(name)")
            }
        }
    }
}
