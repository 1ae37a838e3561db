// The pure part of the slot cgroups: which cgroup version a host runs, where a worker may make its groups, the
// files of each group and the parsing of the kernel's small files. No I/O here: the worker reads the files and
// asks these functions, and the tests feed them text from real hosts.

public enum CgroupVersion: String, Sendable, Equatable {
    case v1, v2
}

/// A cgroup filesystem mounted in this mount namespace: one line of /proc/self/mountinfo.
public struct CgroupMount: Sendable, Equatable {
    public var version: CgroupVersion
    /// The directory it is mounted on.
    public var mountPoint: String
    /// The cgroup seen at the mount point: `/` unless a subtree was bind-mounted.
    public var root: String
    /// v1: the controllers bound to this hierarchy. v2: empty (a v2 directory lists them in cgroup.controllers).
    public var controllers: Set<String>
    public var readOnly: Bool

    public init(version: CgroupVersion, mountPoint: String, root: String = "/", controllers: Set<String> = [],
                readOnly: Bool = false) {
        self.version = version
        self.mountPoint = mountPoint
        self.root = root
        self.controllers = controllers
        self.readOnly = readOnly
    }

    /// The directory of `cgroup` (a path as /proc/PID/cgroup shows it), or nil when the mount does not show it.
    public func directory(of cgroup: String) -> String? {
        let inside: Substring
        if root == "/" {
            inside = Substring(cgroup)
        } else if cgroup == root {
            inside = ""
        } else if cgroup.hasPrefix(root + "/") {
            inside = cgroup.dropFirst(root.count)
        } else {
            return nil
        }
        // Outside this process's cgroup namespace the kernel writes `/..`: not reachable through this mount.
        guard inside.isEmpty || inside.hasPrefix("/"), !inside.split(separator: "/").contains("..") else { return nil }
        let trimmed = inside.hasSuffix("/") ? inside.dropLast() : inside
        return mountPoint + trimmed
    }
}

/// Which cgroups a process is in: one /proc/PID/cgroup file.
public struct CgroupMembership: Sendable, Equatable {
    /// The path in the unified (v2) hierarchy, `0::PATH`; nil where the file has no such line.
    public var unified: String?
    /// The path in each v1 hierarchy, by controller (`memory`, `pids`, `name=systemd`).
    public var v1: [String: String]

    public init(unified: String? = nil, v1: [String: String] = [:]) {
        self.unified = unified
        self.v1 = v1
    }
}

/// Parsers of the kernel's cgroup files. Malformed lines are skipped, never fatal: a line the kernel adds in a
/// later version must not cost a host its cgroups.
public enum CgroupText {
    /// The cgroup mounts among the lines of /proc/self/mountinfo.
    public static func mounts(mountinfo: String) -> [CgroupMount] {
        var mounts: [CgroupMount] = []
        for line in mountinfo.split(separator: "\n") {
            // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 3 < fields.count else { continue }
            let type = fields[dash + 1]
            let version: CgroupVersion
            switch type {
            case "cgroup": version = .v1
            case "cgroup2": version = .v2
            default: continue
            }
            let options = fields[5].split(separator: ",")
            var controllers: Set<String> = []
            if version == .v1 {
                let known: Set<Substring> = ["rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children",
                                            "noprefix", "xattr", "cpuset_v2_mode", "favordynmods"]
                for option in fields[dash + 3].split(separator: ",")
                where !known.contains(option) && !option.hasPrefix("release_agent=") {
                    controllers.insert(String(option))
                }
            }
            mounts.append(CgroupMount(version: version, mountPoint: unescape(fields[4]), root: unescape(fields[3]),
                                      controllers: controllers, readOnly: options.contains("ro")))
        }
        return mounts
    }

    /// The lines `ID:CONTROLLERS:PATH` of /proc/PID/cgroup.
    public static func membership(_ text: String) -> CgroupMembership {
        var membership = CgroupMembership()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, Int(parts[0]) != nil, parts[2].hasPrefix("/") else { continue }
            var path = String(parts[2])
            if path.hasSuffix(" (deleted)") { path = String(path.dropLast(10)) }
            if parts[0] == "0" && parts[1].isEmpty {
                membership.unified = path
            } else {
                for controller in parts[1].split(separator: ",") { membership.v1[String(controller)] = path }
            }
        }
        return membership
    }

    /// `key value` lines: memory.events, memory.oom_control, cgroup.events, pids.events.
    public static func keyedValues(_ text: String) -> [String: Int64] {
        var values: [String: Int64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let value = Int64(parts[1]) else { continue }
            values[String(parts[0])] = value
        }
        return values
    }

    /// A space-separated list of controllers: cgroup.controllers, cgroup.subtree_control.
    public static func controllers(_ text: String) -> Set<String> {
        Set(text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
    }

    /// The pids of a cgroup.procs file. v2 shows a process of a pid namespace the reader cannot see as 0, which
    /// is no pid to signal.
    public static func pids(_ text: String) -> [Int32] {
        text.split(separator: "\n").compactMap { Int32($0) }.filter { $0 > 0 }
    }

    /// The parent pid in the text of /proc/PID/stat (`pid (comm) state ppid ...`; comm may hold spaces and parens).
    public static func parentPid(stat: String) -> Int32? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count >= 2 else { return nil }
        return Int32(fields[1])
    }

    /// Mountinfo escapes space, tab, newline and backslash as three octal digits.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        let utf8 = Array(field.utf8)
        var bytes: [UInt8] = []
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
               let code = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(code)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A value to write into a cgroup file. `required` writes that fail make the group unusable; the others are
/// refinements a kernel may lack (memory.swap.max without swap accounting).
public struct CgroupWrite: Sendable, Equatable {
    public var path: String
    public var value: String
    public var required: Bool

    public init(_ path: String, _ value: String, required: Bool = true) {
        self.path = path
        self.value = value
        self.required = required
    }
}

/// Where a worker makes its groups and the files of each. A worker named N makes, under every base:
/// `N/zygote` (the zygote alone: the group that says the owner is alive) and `N/slotK` (the processes of slot K).
/// On v2, N enables the memory and pids controllers for its children and holds no process itself (the rule of
/// no internal processes), so the zygote is a leaf sibling of the slots.
public struct CgroupLayout: Sendable, Equatable {
    public static let controllers = ["memory", "pids"]

    public var version: CgroupVersion
    /// The directories the worker's groups go under: v1 the memory then the pids hierarchy, v2 one directory.
    public var bases: [String]
    /// v2: the base is the worker's own, delegated cgroup rather than the root of the hierarchy.
    public var delegated: Bool
    /// The root of the hierarchy the base is in (v2; v1: the bases themselves).
    public var hierarchyRoot: String

    public init(version: CgroupVersion, bases: [String], delegated: Bool = false, hierarchyRoot: String? = nil) {
        self.version = version
        self.bases = bases
        self.delegated = delegated
        self.hierarchyRoot = hierarchyRoot ?? bases.first ?? "/"
    }

    public func group(_ name: String, base: Int = 0) -> String { "\(bases[base])/\(name)" }
    public func zygote(_ name: String, base: Int = 0) -> String { "\(group(name, base: base))/zygote" }
    public func slot(_ name: String, _ slot: Int, base: Int = 0) -> String { "\(group(name, base: base))/slot\(slot)" }

    /// Index of the base whose groups count and kill processes (v1: the pids hierarchy).
    var processBase: Int { version == .v1 ? bases.count - 1 : 0 }

    /// The file that says whether the owner of group `name` is alive, read alike from every pid namespace and
    /// container: v1 `pids.current` of its zygote group (cgroup.procs lists only the pids the reader's namespace
    /// can see), v2 `cgroup.events`. v1 decides for the memory hierarchy by the pids one.
    public func ownerFile(_ name: String) -> String {
        version == .v1 ? "\(zygote(name, base: processBase))/pids.current" : "\(zygote(name))/cgroup.events"
    }

    /// Whether the owner file's text says a process is in the group; nil when the text does not tell (missing or
    /// malformed: then the group is not someone else's to remove).
    public func ownerAlive(_ text: String?) -> Bool? {
        guard let text else { return nil }
        switch version {
        case .v1:
            guard let count = Int64(text.split(whereSeparator: { $0.isWhitespace }).first ?? "") else { return nil }
            return count > 0
        case .v2:
            guard let populated = CgroupText.keyedValues(text)["populated"] else { return nil }
            return populated != 0
        }
    }

    /// Whether a slot's group has a process left: v1 by its cgroup.procs, v2 by `populated` in cgroup.events.
    public func emptinessFile(_ name: String, slot: Int) -> String {
        version == .v1 ? "\(self.slot(name, slot, base: processBase))/cgroup.procs" : "\(self.slot(name, slot))/cgroup.events"
    }

    public func isEmpty(_ text: String?) -> Bool {
        guard let text else { return true }
        switch version {
        case .v1: return CgroupText.pids(text).isEmpty
        case .v2: return (CgroupText.keyedValues(text)["populated"] ?? 0) == 0
        }
    }

    /// The files a child writes its pid into to join slot `slot`.
    public func procsFiles(_ name: String, slot: Int) -> [String] {
        bases.indices.map { "\(self.slot(name, slot, base: $0))/cgroup.procs" }
    }

    /// The slot's processes, to signal one by one where there is no cgroup.kill.
    public func procsFile(_ name: String, slot: Int) -> String { "\(self.slot(name, slot, base: processBase))/cgroup.procs" }

    /// The kernel's count of the slot's tasks, exiting ones included (a task is uncharged only once released).
    public func pidsCurrentFile(_ name: String, slot: Int) -> String { "\(self.slot(name, slot, base: processBase))/pids.current" }

    /// v2's one-write kill of every process in a group (Linux 5.14+).
    public func killFile(_ name: String, slot: Int) -> String? {
        version == .v2 ? "\(self.slot(name, slot))/cgroup.kill" : nil
    }

    /// The limits of a slot, in the order to write them.
    public func limitWrites(_ name: String, slot: Int, memoryBytes: Int64, processes: Int) -> [CgroupWrite] {
        switch version {
        case .v1:
            return [CgroupWrite("\(self.slot(name, slot, base: 0))/memory.limit_in_bytes", CgroupLayout.memoryValue(memoryBytes, .v1)),
                    CgroupWrite("\(self.slot(name, slot, base: processBase))/pids.max", CgroupLayout.processValue(processes))]
        case .v2:
            let dir = self.slot(name, slot)
            // Without swap.max the limit would only move the excess to swap, slowly, instead of ending it.
            return [CgroupWrite("\(dir)/memory.max", CgroupLayout.memoryValue(memoryBytes, .v2)),
                    CgroupWrite("\(dir)/memory.swap.max", "0", required: false),
                    CgroupWrite("\(dir)/pids.max", CgroupLayout.processValue(processes))]
        }
    }

    /// The file and key of the kernel's monotonic count of OOM kills in a slot.
    public func oomFile(_ name: String, slot: Int) -> String {
        version == .v1 ? "\(self.slot(name, slot, base: 0))/memory.oom_control" : "\(self.slot(name, slot))/memory.events"
    }

    public static func oomKills(_ text: String?) -> Int {
        Int(text.flatMap { CgroupText.keyedValues($0)["oom_kill"] } ?? 0)
    }

    /// v2: what a group must write into its cgroup.subtree_control for its children to have the controllers.
    public static let enableControllers = "+memory +pids"

    public static func memoryValue(_ bytes: Int64, _ version: CgroupVersion) -> String {
        bytes > 0 ? String(bytes) : (version == .v1 ? "-1" : "max")
    }

    public static func processValue(_ count: Int) -> String { count > 0 ? String(count) : "max" }

    /// For people (`doctor`): version, controllers and where.
    public func description(name: String) -> String {
        switch version {
        case .v1:
            return "v1 memory+pids at \(bases.indices.map { group(name, base: $0) }.joined(separator: " and "))"
        case .v2:
            let where_ = delegated ? "in the delegated subtree \(bases[0])" : "under the hierarchy's root \(bases[0])"
            return "v2 memory+pids at \(group(name)) (\(where_))"
        }
    }
}

/// What a host offers, as the planner needs it. The closures read the host (the worker) or a table (the tests).
public struct CgroupHost {
    public var mounts: [CgroupMount]
    public var membership: CgroupMembership
    /// The controllers a v2 directory offers its own processes and children (its cgroup.controllers).
    public var controllersAt: (String) -> Set<String>?
    /// Whether this process may make groups in a directory and move processes within it.
    public var writable: (String) -> Bool

    public init(mounts: [CgroupMount], membership: CgroupMembership, controllersAt: @escaping (String) -> Set<String>?,
                writable: @escaping (String) -> Bool) {
        self.mounts = mounts
        self.membership = membership
        self.controllersAt = controllersAt
        self.writable = writable
    }
}

/// Chooses where a worker makes its groups.
public enum CgroupPlanner {
    public struct Plan: Sendable, Equatable {
        /// The layouts to try, best first (v2: the delegated subtree, then the root). Empty: no cgroups.
        public var candidates: [CgroupLayout]
        /// Why each layout that was not possible is not, for `doctor`.
        public var reasons: [String]
    }

    /// `leaf` is the name of the group the worker's own processes move into when a delegated subtree must hand
    /// its controllers down (a group with processes cannot): a worker found in it counts as being in its parent.
    public static func plan(_ host: CgroupHost, leaf: String) -> Plan {
        var candidates: [CgroupLayout] = []
        var reasons: [String] = []
        let needed = Set(CgroupLayout.controllers)

        if let path = host.membership.unified,
           let mount = host.mounts.first(where: { $0.version == .v2 && $0.directory(of: path) != nil }),
           let own = mount.directory(of: path) {
            let rootDir = mount.mountPoint
            var base = own
            if base.hasSuffix("/" + leaf) { base = String(base.dropLast(leaf.count + 1)) }
            var dirs = [(base, base != rootDir)]
            if base != rootDir { dirs.append((rootDir, false)) }
            for (dir, delegated) in dirs {
                let offered = host.controllersAt(dir) ?? []
                let missing = needed.subtracting(offered).sorted()
                if mount.readOnly {
                    reasons.append("cgroup v2 at \(mount.mountPoint) is mounted read-only")
                    break
                } else if !missing.isEmpty {
                    reasons.append("cgroup v2 \(dir) offers no \(missing.joined(separator: ", ")) controller")
                } else if !host.writable(dir) {
                    reasons.append("cgroup v2 \(dir) is not writable by this process\(delegated ? " (not a delegated subtree)" : "")")
                } else {
                    candidates.append(CgroupLayout(version: .v2, bases: [dir], delegated: delegated, hierarchyRoot: rootDir))
                }
            }
        } else if host.mounts.contains(where: { $0.version == .v2 }) {
            reasons.append("this process is in no cgroup v2 directory a mount shows")
        }

        var v1Bases: [String] = []
        for controller in CgroupLayout.controllers {
            guard let mount = host.mounts.first(where: { $0.version == .v1 && $0.controllers.contains(controller) }) else {
                reasons.append("no cgroup v1 \(controller) hierarchy")
                continue
            }
            if mount.readOnly {
                reasons.append("cgroup v1 \(controller) at \(mount.mountPoint) is mounted read-only")
            } else if !host.writable(mount.mountPoint) {
                reasons.append("cgroup v1 \(controller) at \(mount.mountPoint) is not writable by this process")
            } else {
                v1Bases.append(mount.mountPoint)
            }
        }
        if v1Bases.count == CgroupLayout.controllers.count {
            candidates.append(CgroupLayout(version: .v1, bases: v1Bases))
        }
        return Plan(candidates: candidates, reasons: reasons)
    }

    /// Where this process is now under each base of `layout` (it moves back there before removing its groups);
    /// nil for a base it cannot tell.
    public static func homes(_ layout: CgroupLayout, mounts: [CgroupMount], membership: CgroupMembership) -> [String?] {
        switch layout.version {
        case .v2:
            let home = membership.unified.flatMap { path in
                mounts.lazy.filter { $0.version == .v2 && $0.mountPoint == layout.hierarchyRoot }
                    .compactMap { $0.directory(of: path) }.first
            }
            return [home]
        case .v1:
            return zip(layout.bases, CgroupLayout.controllers).map { base, controller in
                guard let path = membership.v1[controller] else { return nil }
                return mounts.lazy.filter { $0.version == .v1 && $0.mountPoint == base }.compactMap { $0.directory(of: path) }.first
            }
        }
    }

    /// Whether `name` (an entry under a base) is a group that a worker with `prefix` makes (the leaf of moved
    /// processes is named apart, so it never is).
    public static func isWorkerGroup(_ name: String, prefix: String) -> Bool {
        name.hasPrefix(prefix) && name.count > prefix.count
    }
}
