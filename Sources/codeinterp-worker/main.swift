import CSandbox
import Foundation
import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

// The zygote. Spawned by the engine with a socket on --control-fd; never started by people.
// Single-threaded by design: no Dispatch, no async, no Foundation.Process. Forking is only safe that way.

let started = monotonicSeconds()
let config: WorkerConfig
do { config = try WorkerConfig.parse(CommandLine.arguments) } catch {
    FileHandle.standardError.write(Data("codeinterp-worker: \(error)\n".utf8))
    exit(2)
}
// A session's interpreter that died leaves a broken command pipe: a failed write, not a dead zygote.
signal(SIGPIPE, SIG_IGN)
// No parent-death signal here: it fires when the *thread* that spawned us exits, and the engine spawns from a
// thread of Swift's pool, which ends after a few idle seconds. The engine's death closes the control socket
// instead, which the zygote's loop sees (and the zygote itself dies with this process, see ZygoteNamespaces).

// Thread pools of numerical libraries would make the zygote multi-threaded (pandas pulls in OpenMP).
for (k, v) in ["OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMEXPR_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": config.mplConfigDir] {
    setenv(k, v, 1)
}
mkdir(config.mplConfigDir, 0o755)

// Unique on the machine: zygotes in other pid namespaces can have the same pid.
let cgroupName = "\(config.cgroupName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
// Before the namespaces: a delegated subtree's processes (the engine's) can only be moved from where they are seen.
let cgroupPlan = SlotCgroups.prepare()
if let layout = cgroupPlan.layout { SlotCgroups.removeStale(prefix: "\(config.cgroupName)-", layout: layout) }
var namespaces = ZygoteNamespaces.enter()
// After them: the zygote alone joins its group (the process left behind to wait for it stays out, so the
// group can be removed on a clean stop).
var cgroupReasons = cgroupPlan.reasons
let cgroups: SlotCgroups? = cgroupPlan.layout.flatMap { layout in
    do { return try SlotCgroups.create(name: cgroupName, slots: config.slots, layout: layout) } catch {
        cgroupReasons.append("\(error)")
        return nil
    }
}
namespaces.report.uidPerSlot = namespaces.report.root
namespaces.report.cgroups = cgroups?.description
if cgroups == nil {
    let why = cgroupReasons.isEmpty ? "no cgroup filesystem mounted" : cgroupReasons.joined(separator: "; ")
    namespaces.report.notes.append("no cgroups (\(why)): memory is limited per process by RLIMIT_AS only (an "
        + "execution's processes together are not), no pids limit for an execution as a whole, an OOM kill is "
        + "reported as a plain kill, leftover processes are found by process group only")
}

let python: EmbeddedPython
do { python = try EmbeddedPython(executable: config.python) } catch {
    FileHandle.standardError.write(Data("codeinterp-worker: \(error)\n".utf8))
    exit(3)
}
let (loaded, failed) = python.preload(config.preload, packages: config.packages)
python.warmup()
// Before the first fork and before the zygote measures its address space (the base of every child's RLIMIT_AS).
let hugePageBytes = ci_collapse_into_huge_pages()

let zygote: Zygote
do {
    zygote = try Zygote(config: config, python: python, namespaces: namespaces, cgroups: cgroups)
} catch {
    FileHandle.standardError.write(Data("codeinterp-worker: \(error)\n".utf8))
    exit(4)
}
zygote.sendJSON(.hello, job: 0, WorkerHello(
    pid: getpid(), threads: Int(ci_thread_count()), python: python.version, preloaded: loaded, failedPreloads: failed,
    isolation: namespaces.report, startupMs: Int((monotonicSeconds() - started) * 1000), hugePageBytes: Int(hugePageBytes)))
zygote.run()
