import CSandbox
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// Everything a child needs to confine itself before user code runs.
struct IsolationPlan {
    var workdir: String
    /// Unprivileged uid/gid of the slot; nil where the host cannot give one (not root).
    var uid: UInt32?
    var limits: Limits
    var network: Bool
    var hostNetworkFd: Int32?
    var cgroupProcs: [String]
    var filter: [UInt8]
    /// The zygote's address-space size; the code's memory allowance comes on top of it.
    var baseAddressSpace: UInt64
    var namespaces: Bool
    /// The child is pid 1 of a pid namespace of its own (else it shares the zygote's, with process groups only).
    var ownPidNamespace: Bool
    /// A session's interpreter: its CPU is watched cell by cell by the zygote, not capped for its whole life.
    var session: Bool
    /// Slots that share one uid when there is no uid per slot (RLIMIT_NPROC counts them together).
    var sharedUidSlots: Int
    /// The operator's Python packages (`codeinterp packages`): bound read-only at the same path.
    var packages: String? = nil
    /// /mnt/data is a tmpfs of this many bytes (not `workdir`), sent to the zygote on the ready channel.
    var dataBytes: Int64? = nil
}

/// The isolation sequence of a child, in order. Runs in the forked child of the single-threaded zygote, as root
/// (or root of the zygote's user namespace), pid 1 of a fresh pid namespace, and ends with the seccomp filter,
/// after which only user code runs. Nothing here depends on the code: the engine forks children ahead of demand.
///
///  1. own session, join the slot's cgroups
///  2. network and IPC namespaces of its own (empty), or the host's network where the profile allows it
///  3. own mount namespace; a new root on tmpfs: read-only /usr and /etc (secrets masked), minimal /dev,
///     a /proc of this pid namespace only, tmpfs /tmp and /dev/shm, /mnt/data bound from the host workdir (or a
///     tmpfs of the execution's byte budget, whose directory goes to the engine)
///  4. pivot into it, make / read-only, cwd /mnt/data
///  5. rlimits (a session's CPU is watched from outside, cell by cell)
///  6. drop the capability bounding set, the slot uid with no groups (root), every capability (user namespace),
///     not dumpable (no /proc/PID/mem, no ptrace, no core)
///  7. clean environment; 8. close inherited descriptors;
///  9. no_new_privs, SIGSYS reporter, seccomp filter (last)
func isolate(_ plan: IsolationPlan, reportFd: Int32, readyFd: Int32) throws(SystemCallError) {
    setsid()
    for file in plan.cgroupProcs {
        guard writeFile(file, String(getpid())) else { throw SystemCallError(operation: "join cgroup \(file)", errno: errno) }
    }

    if plan.namespaces {
        // A network and an IPC namespace of its own. The zygote's are empty but shared by every child: through them
        // one execution could reach a concurrent one's abstract Unix sockets (and list them in /proc/net/unix), and
        // a System V shared memory segment or semaphore would outlive its execution for the next one to attach.
        // Objects of a namespace of our own go when the execution's last process does.
        try check("unshare network and IPC namespaces") {
            ci_unshare(CI_CLONE_NEWIPC | (plan.network && plan.hostNetworkFd != nil ? 0 : CI_CLONE_NEWNET))
        }
    }
    if plan.network, let fd = plan.hostNetworkFd {
        try check("enter the host network namespace") { ci_setns(fd, CI_CLONE_NEWNET) }
    }

    if plan.namespaces {
        try buildRoot(plan, readyFd: readyFd)
    } else {
        try check("chdir \(plan.workdir)") { chdir(plan.workdir) }
    }

    let l = plan.limits
    try check("RLIMIT_AS") { ci_setrlimit(CI_RLIMIT_AS, plan.baseAddressSpace + UInt64(l.memoryBytes), plan.baseAddressSpace + UInt64(l.memoryBytes)) }
    // RLIMIT_CPU counts a process's whole life and only CAP_SYS_RESOURCE could raise it again, so a session
    // gets none: the zygote kills it when a cell uses up its allowance.
    if !plan.session {
        try check("RLIMIT_CPU") { ci_setrlimit(CI_RLIMIT_CPU, UInt64(l.cpuSeconds), UInt64(l.cpuSeconds + 1)) }
    }
    try check("RLIMIT_FSIZE") { ci_setrlimit(CI_RLIMIT_FSIZE, UInt64(l.fileSizeBytes), UInt64(l.fileSizeBytes)) }
    try check("RLIMIT_NOFILE") { ci_setrlimit(CI_RLIMIT_NOFILE, UInt64(l.openFiles), UInt64(l.openFiles)) }
    try check("RLIMIT_CORE") { ci_setrlimit(CI_RLIMIT_CORE, 0, 0) }
    // Counted per uid: with a uid per slot it is this execution's; with one uid for all (a user namespace) it
    // bounds every execution together, so it is the per-execution limit times the slots.
    let processes = plan.uid != nil ? l.processes : l.processes * plan.sharedUidSlots
    try check("RLIMIT_NPROC") { ci_setrlimit(CI_RLIMIT_NPROC, UInt64(processes), UInt64(processes)) }

    if plan.namespaces {
        // Needs CAP_SETPCAP, which the uid change below takes away.
        try check("drop the capability bounding set") { ci_drop_bounding_set() }
    }
    if let uid = plan.uid {
        try check("setgroups") { setgroups(0, nil) }
        try check("setresgid \(uid)") { ci_setresgid(uid) }
        try check("setresuid \(uid)") { ci_setresuid(uid) }
    }
    // Root of a user namespace keeps every capability in it until told otherwise.
    try check("drop capabilities") { ci_clear_capabilities() }
    try check("not dumpable") { ci_set_not_dumpable() }

    clearenv()
    let env = [
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "USER": "sandbox",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/matplotlib",
        "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    ]
    for (k, v) in env { setenv(k, v, 1) }

    // 0-2 stdio, 3 result, 4 command, 5 report (ChildDescriptor).
    ci_close_from(6)

    try check("no_new_privs") { ci_set_no_new_privs() }
    let blocked = ChildReportRecord.blockedSyscallTemplate, cpu = ChildReportRecord.signalled(SIGXCPU).frame.encoded()
    try check("SIGSYS handler") {
        ci_install_sigsys_reporter(reportFd, blocked.bytes, blocked.bytes.count, blocked.numberOffset, cpu, cpu.count)
    }
    let loaded = plan.filter.withUnsafeBytes { ci_load_seccomp_filter($0.baseAddress, $0.count) }
    if loaded != 0 { throw SystemCallError(operation: "load seccomp filter", errno: errno) }
}

/// Step 3 and 4: a fresh root on tmpfs with only what Python and the scientific stack need.
private func buildRoot(_ plan: IsolationPlan, readyFd: Int32) throws(SystemCallError) {
    try check("unshare mount namespace") { ci_unshare(CI_CLONE_NEWNS) }
    try check("make mounts private") { mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil) }
    // Opened in the new namespace (a bind source must belong to it) and before anything is mounted over its path.
    let workdirFd = plan.dataBytes != nil ? -1 : open(plan.workdir, CI_O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
    guard workdirFd >= 0 || plan.dataBytes != nil else { throw SystemCallError(operation: "open workdir \(plan.workdir)", errno: errno) }
    // Likewise the operator's packages (absent until some are added).
    let packagesFd = plan.packages.map { open($0, CI_O_PATH | O_DIRECTORY | O_CLOEXEC) } ?? -1
    if let uid = plan.uid, workdirFd >= 0 {
        try check("chown workdir") { fchownat(workdirFd, "", uid, uid, CI_AT_EMPTY_PATH) }
    }

    let root = "/tmp"
    try mountFs("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for dir in ["usr", "etc", "proc", "dev", "dev/shm", "tmp", "mnt", "mnt/data", "run", "var", "run/codeinterp"] {
        try check("mkdir /\(dir)") { mkdir("\(root)/\(dir)", 0o755) }
    }
    // Merged-/usr hosts have /bin -> usr/bin; mirror whatever the host has.
    for link in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
        var buf = [CChar](repeating: 0, count: 256)
        let n = readlink("/\(link)", &buf, buf.count - 1)
        if n > 0 {
            let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            try check("symlink /\(link)") { symlink(target, "\(root)/\(link)") }
        } else if access("/\(link)", F_OK) == 0 {
            try check("mkdir /\(link)") { mkdir("\(root)/\(link)", 0o755) }
            try bindReadOnly("/\(link)", "\(root)/\(link)")
        }
    }
    try check("symlink /var/tmp") { symlink("/tmp", "\(root)/var/tmp") }
    try bindReadOnly("/usr", "\(root)/usr")

    // /etc read-only, with what could hold secrets masked and a passwd that knows the sandbox user.
    let uid = plan.uid ?? getuid()
    try writeNewFile("\(root)/run/codeinterp/passwd",
                     "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:\(uid):\(uid):sandbox:/tmp:/bin/sh\n")
    try writeNewFile("\(root)/run/codeinterp/group", "root:x:0:\nsandbox:x:\(uid):\n")
    try writeNewFile("\(root)/run/codeinterp/empty", "")
    try bindReadOnly("/etc", "\(root)/etc")
    try bindReadOnly("\(root)/run/codeinterp/passwd", "\(root)/etc/passwd")
    try bindReadOnly("\(root)/run/codeinterp/group", "\(root)/etc/group")
    for secret in ["shadow", "gshadow", "shadow-", "gshadow-", "sudoers", "ssh", "codeinterp", "ssl/private"] {
        var st = stat()
        guard lstat("/etc/\(secret)", &st) == 0 else { continue }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            try mountFs("tmpfs", "\(root)/etc/\(secret)", "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0755")
        } else if (st.st_mode & S_IFMT) == S_IFREG {
            try bindReadOnly("\(root)/run/codeinterp/empty", "\(root)/etc/\(secret)")
        }
    }

    for device in ["null", "zero", "full", "random", "urandom"] {
        try writeNewFile("\(root)/dev/\(device)", "")
        try mountFs("/dev/\(device)", "\(root)/dev/\(device)", nil, MS_BIND, nil)
    }
    for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                           ("stderr", "/proc/self/fd/2")] {
        try check("symlink /dev/\(name)") { symlink(target, "\(root)/dev/\(name)") }
    }
    let tmpOptions = "size=\(plan.limits.tmpBytes),mode=1777"
    try mountFs("tmpfs", "\(root)/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, tmpOptions)
    try mountFs("tmpfs", "\(root)/tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmpOptions)
    if let packages = plan.packages, packagesFd >= 0 {
        // At the path the zygote put on sys.path, so that what it preloaded from there and what the code imports
        // resolve alike. After /tmp's tmpfs, which would hide it when the data directory is under /tmp.
        var path = root
        for part in packages.split(separator: "/") {
            path += "/" + part
            if access(path, F_OK) != 0 { try check("mkdir \(path)") { mkdir(path, 0o755) } }
        }
        try bindReadOnly("/proc/self/fd/\(packagesFd)", path)
        close(packagesFd)
    }
    // The child's own pid namespace: only the execution's processes exist here. hidepid=2 matters where the
    // host gave no pid namespace per child (other slots' processes are then hidden by uid).
    try mountFs("proc", "\(root)/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    if let bytes = plan.dataBytes {
        // The byte budget: a tmpfs of its own, which the kernel ends with ENOSPC. The engine reaches it only
        // through the descriptor sent here (it is in no other mount namespace), and it goes with the last of them.
        let owner = plan.uid.map { ",uid=\($0),gid=\($0)" } ?? ""
        try mountFs("tmpfs", "\(root)/mnt/data", "tmpfs", MS_NOSUID | MS_NODEV, "size=\(bytes),mode=0700\(owner)")
        let dataFd = try check("open /mnt/data") { open("\(root)/mnt/data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        var byte: UInt8 = 1
        let sent = withUnsafeBytes(of: &byte) { b in withUnsafePointer(to: dataFd) { ci_send_with_fds(readyFd, b.baseAddress, 1, $0, 1) } }
        close(dataFd)
        guard sent == 1 else { throw SystemCallError(operation: "hand /mnt/data to the zygote", errno: errno) }
    } else {
        try mountFs("/proc/self/fd/\(workdirFd)", "\(root)/mnt/data", nil, MS_BIND, nil)
        try remount("\(root)/mnt/data", extra: 0)
        close(workdirFd)
    }

    // pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it.
    try check("chdir new root") { chdir(root) }
    try check("pivot_root") { ci_pivot_root(".", ".") }
    try check("detach old root") { umount2(".", Int32(MNT_DETACH)) }
    try check("chdir /") { chdir("/") }
    try check("make / read-only") { mount(nil, "/", nil, UInt(MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV), nil) }
    try check("chdir /mnt/data") { chdir("/mnt/data") }
}

private func mountFs(_ source: String, _ target: String, _ type: String?, _ flags: Int, _ data: String?) throws(SystemCallError) {
    try check("mount \(target)") { mount(source, target, type, UInt(flags), data) }
}

private func bindReadOnly(_ source: String, _ target: String) throws(SystemCallError) {
    try mountFs(source, target, nil, MS_BIND | MS_REC, nil)
    try remount(target, extra: MS_RDONLY)
}

/// Remounts a bind mount with nosuid/nodev (+ extra), keeping flags the kernel locks (a user namespace may not
/// clear noexec or ro set by the host).
private func remount(_ target: String, extra: Int) throws(SystemCallError) {
    let locked = ci_locked_mount_flags(target)
    guard locked >= 0 else { throw SystemCallError(operation: "statvfs \(target)", errno: errno) }
    let flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | extra | locked
    try check("remount \(target)") { mount(nil, target, nil, UInt(flags), nil) }
}

private func writeNewFile(_ path: String, _ text: String) throws(SystemCallError) {
    let fd = try check("create \(path)") { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
    defer { close(fd) }
    guard writeAll(fd, Array(text.utf8)) else { throw SystemCallError(operation: "write \(path)", errno: errno) }
}
