import InterpreterCore
#if canImport(Glibc)
import Glibc
#endif

/// One cgroup per slot (memory + pids, on cgroup v1 or v2), so that a job's processes are limited, counted and
/// killed as a set, fork bombs and orphans included. Where the groups go and what each file means is decided in
/// `CgroupLayout` (InterpreterCore); this type does the reads and writes, from the single-threaded zygote.
///
/// Ownership: the zygote alone is in `<name>/zygote`. Another instance, in any pid namespace or container, tells a
/// live owner from the leftovers of a crash by that group's `pids.current` (v1) or `cgroup.events` (v2), which
/// read the same from everywhere; `cgroup.procs` does not (it lists only the pids the reader's namespace sees).
final class SlotCgroups {
    /// Where a worker's own processes go when a delegated v2 subtree must hand its controllers down (a group with
    /// processes of its own cannot). Not a worker group: no `removeStale` prefix matches it.
    static let leaf = "codeinterp.leaf"

    let name: String
    let slots: Int
    let layout: CgroupLayout
    /// Where the zygote was under each base before it joined its group; it goes back there before removing it.
    private let homes: [String?]
    /// (memory bytes, processes) last written into each slot, to write again into a group that was recreated.
    private var limits: [Int: (Int64, Int)] = [:]

    var description: String { layout.description(name: name) }

    private init(name: String, slots: Int, layout: CgroupLayout, homes: [String?]) {
        self.name = name
        self.slots = slots
        self.layout = layout
        self.homes = homes
    }

    // MARK: Choosing and preparing where the groups go

    struct Prepared {
        var layout: CgroupLayout?
        /// Why there are no cgroups (or why better layouts were passed over).
        var reasons: [String]
    }

    /// Chooses the layout and, on v2, makes its base hand the memory and pids controllers down. Runs before the
    /// zygote enters its pid namespace: a delegated subtree's processes (the engine that spawned us) can only be
    /// moved into a leaf from a namespace that sees them.
    static func prepare() -> Prepared {
        let plan = CgroupPlanner.plan(currentHost(), leaf: leaf)
        var reasons = plan.reasons
        for layout in plan.candidates {
            if layout.version == .v1 { return Prepared(layout: layout, reasons: reasons) }
            if let failure = handDownControllers(layout) {
                reasons.append(failure)
            } else {
                return Prepared(layout: layout, reasons: reasons)
            }
        }
        return Prepared(layout: nil, reasons: reasons)
    }

    static func currentHost() -> CgroupHost {
        CgroupHost(
            mounts: CgroupText.mounts(mountinfo: readSmallFile("/proc/self/mountinfo") ?? ""),
            membership: CgroupText.membership(readSmallFile("/proc/self/cgroup") ?? ""),
            controllersAt: { dir in readSmallFile("\(dir)/cgroup.controllers").map(CgroupText.controllers) },
            writable: { dir in access(dir, W_OK) == 0 && access("\(dir)/cgroup.procs", W_OK) == 0 })
    }

    /// v2: enables memory and pids in the base's cgroup.subtree_control. A group that holds processes cannot
    /// (unless it is the root); then, in a subtree that is ours to arrange (the root of a container's cgroup
    /// namespace, or a group systemd marked delegated), this worker and its ancestors move into a leaf. Anything
    /// else in the group is someone else's, and stays: the base is not used. Returns why it failed, or nil.
    private static func handDownControllers(_ layout: CgroupLayout) -> String? {
        let base = layout.bases[0]
        let control = "\(base)/cgroup.subtree_control"
        let needed = Set(CgroupLayout.controllers)
        if needed.isSubset(of: CgroupText.controllers(readSmallFile(control) ?? "")) { return nil }
        if writeFile(control, CgroupLayout.enableControllers) { return nil }
        let firstErrno = errno
        guard firstErrno == EBUSY else {
            return "cgroup v2 \(base) cannot hand memory and pids down: \(String(cString: strerror(firstErrno)))"
        }
        guard base == layout.hierarchyRoot || isMarkedDelegated(base) else {
            return "cgroup v2 \(base) holds processes and is not a delegated subtree (Delegate=yes)"
        }
        let present = CgroupText.pids(readSmallFile("\(base)/cgroup.procs") ?? "")
        let ours = Set(selfAndAncestors())
        let foreign = present.filter { !ours.contains($0) }
        guard foreign.isEmpty else {
            return "cgroup v2 \(base) holds processes other than codeinterp's (\(foreign.prefix(5).map(String.init).joined(separator: ", ")))"
        }
        let leafDir = "\(base)/\(leaf)"
        if mkdir(leafDir, 0o755) != 0 && errno != EEXIST {
            return "cannot make \(leafDir): \(String(cString: strerror(errno)))"
        }
        for pid in present where !writeFile("\(leafDir)/cgroup.procs", String(pid)) {
            return "cannot move process \(pid) into \(leafDir): \(String(cString: strerror(errno)))"
        }
        if writeFile(control, CgroupLayout.enableControllers) { return nil }
        return "cgroup v2 \(base) cannot hand memory and pids down: \(String(cString: strerror(errno)))"
    }

    /// systemd marks the groups it delegates with an extended attribute (`trusted.` for the system manager,
    /// `user.` readable by the unprivileged).
    private static func isMarkedDelegated(_ dir: String) -> Bool {
        // <sys/xattr.h> is not part of the Glibc module: getxattr is looked up in libc (RTLD_DEFAULT is NULL).
        typealias GetXattr = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int
        guard let symbol = dlsym(nil, "getxattr") else { return false }
        let getxattr = unsafeBitCast(symbol, to: GetXattr.self)
        for attribute in ["trusted.delegate", "user.delegate"] {
            var value = [UInt8](repeating: 0, count: 8)
            let n = getxattr(dir, attribute, &value, value.count)
            if n > 0 && value[0] == UInt8(ascii: "1") { return true }
        }
        return false
    }

    /// This process and the chain of its parents as this pid namespace sees them.
    private static func selfAndAncestors() -> [Int32] {
        var chain = [getpid()]
        while chain.count < 64, let last = chain.last, last > 1,
              let parent = readSmallFile("/proc/\(last)/stat").flatMap(CgroupText.parentPid(stat:)), parent > 0 {
            chain.append(parent)
        }
        return chain
    }

    // MARK: Making, using and removing one worker's groups

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Makes the groups of worker `name` and moves the calling process (the zygote, already in its namespaces)
    /// into `<name>/zygote`; nil where the host offers no usable cgroups.
    static func create(name: String, slots: Int) -> SlotCgroups? {
        guard let layout = prepare().layout else { return nil }
        return try? create(name: name, slots: slots, layout: layout)
    }

    static func create(name: String, slots: Int, layout: CgroupLayout) throws(Failure) -> SlotCgroups {
        let homes = CgroupPlanner.homes(layout, mounts: CgroupText.mounts(mountinfo: readSmallFile("/proc/self/mountinfo") ?? ""),
                                        membership: CgroupText.membership(readSmallFile("/proc/self/cgroup") ?? ""))
        let groups = SlotCgroups(name: name, slots: slots, layout: layout, homes: homes)
        do {
            try groups.makeOwnGroups()
        } catch {
            groups.remove()
            throw error
        }
        return groups
    }

    /// v1 makes the pids hierarchy's groups first: they are the ones another instance judges ownership by.
    private func makeOwnGroups() throws(Failure) {
        func fail(_ what: String) -> Failure { Failure(description: "\(what): \(String(cString: strerror(errno)))") }
        for base in layout.bases.indices.reversed() {
            // Another instance's removeStale may take a group between our mkdir and our join (it cannot once
            // the zygote is in it): start over a few times.
            var joined = false
            for _ in 0..<3 where !joined {
                guard makeDirectory(layout.group(name, base: base)) else { throw fail("mkdir \(layout.group(name, base: base))") }
                if layout.version == .v2 && !writeFile("\(layout.group(name))/cgroup.subtree_control", CgroupLayout.enableControllers) {
                    if errno == ENOENT { continue }
                    throw fail("enable memory and pids in \(layout.group(name))")
                }
                guard makeDirectory(layout.zygote(name, base: base)) else {
                    if errno == ENOENT { continue }
                    throw fail("mkdir \(layout.zygote(name, base: base))")
                }
                // "0" is the writer itself, whatever pid namespace it is in.
                if writeFile("\(layout.zygote(name, base: base))/cgroup.procs", "0") {
                    joined = true
                } else if errno != ENOENT {
                    throw fail("join \(layout.zygote(name, base: base))")
                }
            }
            guard joined else { throw Failure(description: "\(layout.group(name, base: base)) kept disappearing") }
        }
        for slot in 0..<slots where !ensure(slot: slot) {
            throw fail("mkdir \(layout.slot(name, slot))")
        }
    }

    /// Files the child writes its pid into, joining the slot's groups. A slot group that was removed from under
    /// us is made again first (with its last limits), so the child's join does not fail.
    func procsFiles(slot: Int) -> [String] {
        ensure(slot: slot)
        return layout.procsFiles(name, slot: slot)
    }

    /// Sets the slot's memory and process limits, making its group again if it went missing. False when the
    /// group cannot be made or limited: the caller fails that execution rather than run it unlimited.
    @discardableResult
    func configure(slot: Int, memoryBytes: Int64, processes: Int) -> Bool {
        limits[slot] = (memoryBytes, processes)
        guard ensure(slot: slot) else { return false }
        return writeLimits(slot: slot)
    }

    private func writeLimits(slot: Int) -> Bool {
        guard let (memoryBytes, processes) = limits[slot] else { return true }
        for write in layout.limitWrites(name, slot: slot, memoryBytes: memoryBytes, processes: processes) {
            if !writeFile(write.path, write.value) && write.required { return false }
        }
        return true
    }

    /// Makes the slot's groups that are missing (and, on v2, the worker's group above them with its controllers).
    @discardableResult
    private func ensure(slot: Int) -> Bool {
        var made = false
        for base in layout.bases.indices {
            let dir = layout.slot(name, slot, base: base)
            if access(dir, F_OK) == 0 { continue }
            if layout.version == .v2 {
                let control = "\(layout.group(name))/cgroup.subtree_control"
                guard makeDirectory(layout.group(name)) else { return false }
                if !Set(CgroupLayout.controllers).isSubset(of: CgroupText.controllers(readSmallFile(control) ?? "")) {
                    guard writeFile(control, CgroupLayout.enableControllers) else { return false }
                }
            } else {
                guard makeDirectory(layout.group(name, base: base)) else { return false }
            }
            guard makeDirectory(dir) else { return false }
            made = true
        }
        return !made || writeLimits(slot: slot)
    }

    /// The kernel's count of OOM kills in the slot's memory group (monotonic while the group lives).
    func oomKills(slot: Int) -> Int {
        CgroupLayout.oomKills(readSmallFile(layout.oomFile(name, slot: slot)))
    }

    /// Whether nothing of the slot's last child is left: no process in the group, and (where the controller
    /// says) no task the pids controller still counts. A group that is gone holds nothing.
    func isDrained(slot: Int) -> Bool {
        guard layout.isEmpty(readSmallFile(layout.emptinessFile(name, slot: slot))) else { return false }
        guard let text = readSmallFile(layout.pidsCurrentFile(name, slot: slot)),
              let count = text.split(whereSeparator: \.isWhitespace).first.flatMap({ Int($0) }) else { return true }
        return count == 0
    }

    /// SIGKILLs every process left in the slot; true when the slot is empty.
    @discardableResult
    func killAll(slot: Int) -> Bool {
        SlotCgroups.killAll(layout: layout, name: name, slot: slot)
    }

    private static func killAll(layout: CgroupLayout, name: String, slot: Int) -> Bool {
        for _ in 0..<50 {
            if layout.isEmpty(readSmallFile(layout.emptinessFile(name, slot: slot))) { return true }
            // cgroup.kill (v2, Linux 5.14+) also catches processes forked while we kill; else one by one.
            if !(layout.killFile(name, slot: slot).map { writeFile($0, "1") } ?? false) {
                for pid in CgroupText.pids(readSmallFile(layout.procsFile(name, slot: slot)) ?? "") { kill(pid, SIGKILL) }
            }
            usleep(1000)
        }
        return layout.isEmpty(readSmallFile(layout.emptinessFile(name, slot: slot)))
    }

    /// Removes this worker's groups: kills what is left in the slots, moves the zygote back where it came from,
    /// then removes the directories, retrying while the kernel finishes taking exiting tasks out. True when
    /// nothing of ours is left.
    @discardableResult
    func remove() -> Bool {
        for slot in 0..<slots { killAll(slot: slot) }
        leaveOwnGroup()
        let deadline = monotonicSeconds() + 1
        var removed = true
        for base in layout.bases.indices {
            for slot in 0..<slots {
                removed = SlotCgroups.removeDirectory(layout.slot(name, slot, base: base), until: deadline) && removed
            }
            removed = SlotCgroups.removeDirectory(layout.zygote(name, base: base), until: deadline) && removed
            removed = SlotCgroups.removeDirectory(layout.group(name, base: base), until: deadline) && removed
        }
        return removed
    }

    /// A group with a process in it cannot be removed: the zygote goes back to its first group, or (v2, if that
    /// now hands controllers down and takes no processes) to the leaf, or to the root of the hierarchy.
    private func leaveOwnGroup() {
        for base in layout.bases.indices {
            if let home = homes[base], writeFile("\(home)/cgroup.procs", "0") { continue }
            if layout.version == .v2 {
                let leafDir = "\(layout.bases[0])/\(SlotCgroups.leaf)"
                if makeDirectory(leafDir), writeFile("\(leafDir)/cgroup.procs", "0") { continue }
                writeFile("\(layout.hierarchyRoot)/cgroup.procs", "0")
            } else {
                writeFile("\(layout.bases[base])/cgroup.procs", "0")
            }
        }
    }

    /// Removes the groups of workers that died without cleaning up. A group counts as dead only when its zygote
    /// group exists and the kernel says it is empty; a `<name>` without one is being made (or is a crash's
    /// empty leftover, removed only if it has no children).
    static func removeStale(prefix: String) {
        guard let layout = prepare().layout else { return }
        removeStale(prefix: prefix, layout: layout)
    }

    static func removeStale(prefix: String, layout: CgroupLayout) {
        var names = Set<String>()
        for base in layout.bases {
            for entry in directoryEntryNames(atPath: base) ?? [] where CgroupPlanner.isWorkerGroup(entry, prefix: prefix) {
                names.insert(entry)
            }
        }
        for name in names.sorted() {
            let ownerGroupGone = layout.version == .v1 && access(layout.group(name, base: layout.bases.count - 1), F_OK) != 0
            func alive() -> Bool? { ownerGroupGone ? false : layout.ownerAlive(readSmallFile(layout.ownerFile(name))) }
            switch alive() {
            case true?:
                continue
            case nil:
                for base in layout.bases.indices { rmdir(layout.group(name, base: base)) }
            case false?:
                for base in layout.bases.indices {
                    let group = layout.group(name, base: base)
                    // Judged again right before: the owner may have been starting up a moment ago.
                    guard alive() != true else { break }
                    for entry in directoryEntryNames(atPath: group) ?? [] where entry.hasPrefix("slot") {
                        if let slot = Int(entry.dropFirst(4)) { _ = killAll(layout: layout, name: name, slot: slot) }
                        rmdir("\(group)/\(entry)")
                    }
                    rmdir(layout.zygote(name, base: base))
                    rmdir(group)
                }
            }
        }
    }

    private func makeDirectory(_ path: String) -> Bool { SlotCgroups.makeDirectory(path) }

    private static func makeDirectory(_ path: String) -> Bool {
        mkdir(path, 0o755) == 0 || errno == EEXIST
    }

    private static func removeDirectory(_ path: String, until deadline: Double) -> Bool {
        while true {
            if rmdir(path) == 0 || errno == ENOENT { return true }
            guard errno == EBUSY || errno == ENOTEMPTY || errno == EINTR, monotonicSeconds() < deadline else { return false }
            usleep(10_000)
        }
    }
}
