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
