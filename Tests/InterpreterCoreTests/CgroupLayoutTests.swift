import Foundation
import Testing
@testable import InterpreterCore

/// mountinfo and /proc/self/cgroup as real hosts write them.
private enum Hosts {
    /// Debian 12, Ubuntu 22.04+, Fedora: the unified hierarchy only.
    static let v2Mountinfo = """
        22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
        26 23 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
        28 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
        """
    /// Older systemd hosts: v1 controllers with a cgroup2 mount beside them that has none.
    static let hybridMountinfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:11 - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """
    static let hybridCgroup = """
        9:name=systemd:/
        8:pids:/
        2:cpu,cpuacct:/
        4:memory:/user.slice/user-1000.slice/session-2.scope
        0::/
        """
    /// A container with its own cgroup namespace: it sees its own group as the root.
    static let containerMountinfo = """
        650 600 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate,memory_recursiveprot
        """

    static func host(_ mountinfo: String, _ cgroup: String, controllers: [String: Set<String>] = [:],
                     writable: Set<String> = []) -> CgroupHost {
        CgroupHost(mounts: CgroupText.mounts(mountinfo: mountinfo), membership: CgroupText.membership(cgroup),
                   controllersAt: { controllers[$0] }, writable: { writable.contains($0) })
    }
}

@Suite struct CgroupTextTests {
    @Test func mountinfoOfAHybridHostListsV1ControllersAndTheEmptyUnifiedMount() {
        let mounts = CgroupText.mounts(mountinfo: Hosts.hybridMountinfo)
        #expect(mounts.count == 5)
        #expect(mounts.first { $0.controllers.contains("memory") }?.mountPoint == "/sys/fs/cgroup/memory")
        #expect(mounts.first { $0.controllers.contains("pids") }?.mountPoint == "/sys/fs/cgroup/pids")
        #expect(mounts.first { $0.mountPoint == "/sys/fs/cgroup/cpu,cpuacct" }?.controllers == ["cpu", "cpuacct"])
        #expect(mounts.first { $0.mountPoint == "/sys/fs/cgroup/systemd" }?.controllers == ["name=systemd"])
        #expect(mounts.filter { $0.version == .v2 }.map(\.mountPoint) == ["/sys/fs/cgroup/unified"])
    }

    @Test func mountinfoOfAV2HostHasOneUnifiedMount() {
        let mounts = CgroupText.mounts(mountinfo: Hosts.v2Mountinfo)
        #expect(mounts == [CgroupMount(version: .v2, mountPoint: "/sys/fs/cgroup")])
    }

    @Test func readOnlyMountsEscapedPathsAndBindMountedSubtrees() {
        let mounts = CgroupText.mounts(mountinfo: """
            700 650 0:30 /docker/abc /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw
            701 650 0:31 / /mnt/my\\040cgroups rw,relatime shared:3 master:1 - cgroup cgroup rw,pids
            """)
        #expect(mounts.count == 2)
        #expect(mounts[0].readOnly)
        #expect(mounts[0].root == "/docker/abc")
        #expect(mounts[0].directory(of: "/docker/abc/x") == "/sys/fs/cgroup/x")
        #expect(mounts[0].directory(of: "/docker/abc") == "/sys/fs/cgroup")
        #expect(mounts[0].directory(of: "/docker/abcdef") == nil)
        #expect(mounts[0].directory(of: "/other") == nil)
        #expect(mounts[1].mountPoint == "/mnt/my cgroups")
        #expect(mounts[1].controllers == ["pids"])
        #expect(!mounts[1].readOnly)
    }

    @Test(arguments: ["", "garbage", "1 2 3", "26 23 0:24 / /sys/fs/cgroup rw - cgroup2",
                      "26 23 0:24 / /sys/fs/cgroup rw shared:4 cgroup2 cgroup2 rw"])
    func malformedMountinfoLinesAreSkipped(_ line: String) {
        #expect(CgroupText.mounts(mountinfo: line + "\n" + Hosts.v2Mountinfo).count == 1)
    }

    @Test func membershipOfAHybridHost() {
        let m = CgroupText.membership(Hosts.hybridCgroup)
        #expect(m.unified == "/")
        #expect(m.v1["memory"] == "/user.slice/user-1000.slice/session-2.scope")
        #expect(m.v1["pids"] == "/")
        #expect(m.v1["cpuacct"] == "/")
        #expect(m.v1["name=systemd"] == "/")
    }

    @Test func membershipOfAV2OnlyHostAndOfAContainer() {
        #expect(CgroupText.membership("0::/system.slice/codeinterp.service\n")
            == CgroupMembership(unified: "/system.slice/codeinterp.service"))
        #expect(CgroupText.membership("0::/\n") == CgroupMembership(unified: "/"))
        // Paths may hold colons; a removed group is marked.
        #expect(CgroupText.membership("0::/a:b (deleted)\n").unified == "/a:b")
    }

    @Test func malformedMembershipLinesAreSkipped() {
        let m = CgroupText.membership("nonsense\nx::/a\n4:memory\n5:pids:relative\n\n0::/ok\n")
        #expect(m == CgroupMembership(unified: "/ok"))
    }

    @Test func keyedValuesOfEventFiles() {
        let events = CgroupText.keyedValues("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n")
        #expect(events["oom_kill"] == 2)
        #expect(events["max"] == 12)
        #expect(CgroupText.keyedValues("populated 1\nfrozen 0\n") == ["populated": 1, "frozen": 0])
        #expect(CgroupText.keyedValues("oom_kill\noom_kill x\n a b c\n").isEmpty)
    }

    @Test func controllersPidsAndParents() {
        #expect(CgroupText.controllers("cpuset cpu io memory hugetlb pids rdma misc\n").isSuperset(of: ["memory", "pids"]))
        #expect(CgroupText.controllers("\n").isEmpty)
        #expect(CgroupText.pids("12\n345\n\nx\n-1\n") == [12, 345])
        // v2 lists a process another pid namespace holds as 0: never a pid to signal (kill(0) is our own group).
        #expect(CgroupText.pids("0\n0\n").isEmpty)
        #expect(CgroupText.parentPid(stat: "4242 (python3) S 17 4242 4242 0 -1 4194560") == 17)
        #expect(CgroupText.parentPid(stat: "4242 (a (b) c) R 99 1 1") == 99)
        #expect(CgroupText.parentPid(stat: "4242 (truncated") == nil)
    }
}

@Suite struct CgroupPlannerTests {
    @Test func aHybridHostUsesV1AndSaysWhyNotV2() {
        let host = Hosts.host(Hosts.hybridMountinfo, Hosts.hybridCgroup, controllers: ["/sys/fs/cgroup/unified": []],
                              writable: ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"])
        let plan = CgroupPlanner.plan(host, leaf: "codeinterp.leaf")
        #expect(plan.candidates == [CgroupLayout(version: .v1, bases: ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"])])
        #expect(plan.reasons.contains { $0.contains("/sys/fs/cgroup/unified") && $0.contains("memory, pids") })
    }

    @Test func aV2HostAsRootTriesItsOwnGroupThenTheRoot() {
        let own = "/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope"
        let host = Hosts.host(Hosts.v2Mountinfo, "0::/user.slice/user-0.slice/session-3.scope\n",
                              controllers: [own: ["memory", "pids", "cpu"], "/sys/fs/cgroup": ["memory", "pids", "io"]],
                              writable: [own, "/sys/fs/cgroup"])
        let plan = CgroupPlanner.plan(host, leaf: "codeinterp.leaf")
        #expect(plan.candidates.map(\.bases) == [[own], ["/sys/fs/cgroup"]])
        #expect(plan.candidates.map(\.delegated) == [true, false])
        #expect(plan.candidates.allSatisfy { $0.version == .v2 && $0.hierarchyRoot == "/sys/fs/cgroup" })
    }

    @Test func aDelegatedServiceUnprivilegedUsesItsSubtreeOnly() {
        let own = "/sys/fs/cgroup/system.slice/codeinterp.service"
        let host = Hosts.host(Hosts.v2Mountinfo, "0::/system.slice/codeinterp.service\n",
                              controllers: [own: ["memory", "pids"], "/sys/fs/cgroup": ["memory", "pids"]], writable: [own])
        let plan = CgroupPlanner.plan(host, leaf: "codeinterp.leaf")
        #expect(plan.candidates == [CgroupLayout(version: .v2, bases: [own], delegated: true, hierarchyRoot: "/sys/fs/cgroup")])
        #expect(plan.reasons.contains { $0.contains("/sys/fs/cgroup is not writable") })
    }

    @Test func aWorkerInTheLeafOfMovedProcessesCountsAsInItsParent() {
        let own = "/sys/fs/cgroup/system.slice/codeinterp.service"
        let host = Hosts.host(Hosts.v2Mountinfo, "0::/system.slice/codeinterp.service/codeinterp.leaf\n",
                              controllers: [own: ["memory", "pids"]], writable: [own])
        #expect(CgroupPlanner.plan(host, leaf: "codeinterp.leaf").candidates.map(\.bases) == [[own]])
    }

    @Test func aContainerWithItsOwnCgroupNamespaceUsesItsRoot() {
        let host = Hosts.host(Hosts.containerMountinfo, "0::/\n", controllers: ["/sys/fs/cgroup": ["cpu", "memory", "pids"]],
                              writable: ["/sys/fs/cgroup"])
        let plan = CgroupPlanner.plan(host, leaf: "codeinterp.leaf")
        #expect(plan.candidates == [CgroupLayout(version: .v2, bases: ["/sys/fs/cgroup"], delegated: false,
                                                 hierarchyRoot: "/sys/fs/cgroup")])
    }

    @Test func aContainerWithAReadOnlyMountHasNoCgroupsAndSaysSo() {
        let host = Hosts.host(Hosts.containerMountinfo.replacingOccurrences(of: " rw,nosuid", with: " ro,nosuid"), "0::/\n",
                              controllers: ["/sys/fs/cgroup": ["memory", "pids"]], writable: ["/sys/fs/cgroup"])
        let plan = CgroupPlanner.plan(host, leaf: "codeinterp.leaf")
        #expect(plan.candidates.isEmpty)
        #expect(plan.reasons.contains { $0.contains("read-only") })
    }

    @Test func controllersMissingOrNothingWritableMeansNoCgroups() {
        let noPids = Hosts.host(Hosts.v2Mountinfo, "0::/\n", controllers: ["/sys/fs/cgroup": ["memory", "cpu"]],
                                writable: ["/sys/fs/cgroup"])
        let plan = CgroupPlanner.plan(noPids, leaf: "codeinterp.leaf")
        #expect(plan.candidates.isEmpty)
        #expect(plan.reasons.contains { $0.contains("no pids controller") })
        #expect(plan.reasons.contains { $0.contains("no cgroup v1 memory hierarchy") })

        let readOnlyFiles = Hosts.host(Hosts.hybridMountinfo, Hosts.hybridCgroup, controllers: ["/sys/fs/cgroup/unified": []])
        #expect(CgroupPlanner.plan(readOnlyFiles, leaf: "codeinterp.leaf").candidates.isEmpty)
    }

    @Test func aProcessOutsideItsCgroupNamespaceRootSeesNoV2Directory() {
        let host = Hosts.host(Hosts.containerMountinfo, "0::/../../system.slice/x.service\n",
                              controllers: ["/sys/fs/cgroup": ["memory", "pids"]], writable: ["/sys/fs/cgroup"])
        let plan = CgroupPlanner.plan(host, leaf: "codeinterp.leaf")
        #expect(plan.candidates.isEmpty)
    }

    @Test func homesAreWhereTheProcessIsUnderEachBase() {
        let mounts = CgroupText.mounts(mountinfo: Hosts.hybridMountinfo)
        let v1 = CgroupLayout(version: .v1, bases: ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"])
        #expect(CgroupPlanner.homes(v1, mounts: mounts, membership: CgroupText.membership(Hosts.hybridCgroup))
            == ["/sys/fs/cgroup/memory/user.slice/user-1000.slice/session-2.scope", "/sys/fs/cgroup/pids"])
        let v2 = CgroupLayout(version: .v2, bases: ["/sys/fs/cgroup/a.service"], delegated: true, hierarchyRoot: "/sys/fs/cgroup")
        #expect(CgroupPlanner.homes(v2, mounts: CgroupText.mounts(mountinfo: Hosts.v2Mountinfo),
                                    membership: CgroupMembership(unified: "/a.service/codeinterp.leaf"))
            == ["/sys/fs/cgroup/a.service/codeinterp.leaf"])
        #expect(CgroupPlanner.homes(v2, mounts: [], membership: CgroupMembership(unified: "/")) == [nil])
    }

    @Test func workerGroupsAreTheOnesWithThePrefix() {
        #expect(CgroupPlanner.isWorkerGroup("codeinterp-12-3456", prefix: "codeinterp-"))
        #expect(!CgroupPlanner.isWorkerGroup("codeinterp.leaf", prefix: "codeinterp-"))
        #expect(!CgroupPlanner.isWorkerGroup("codeinterp-", prefix: "codeinterp-"))
        #expect(!CgroupPlanner.isWorkerGroup("system.slice", prefix: "codeinterp-"))
    }
}

@Suite struct CgroupLayoutFilesTests {
    let v1 = CgroupLayout(version: .v1, bases: ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"])
    let v2 = CgroupLayout(version: .v2, bases: ["/sys/fs/cgroup/svc"], delegated: true, hierarchyRoot: "/sys/fs/cgroup")

    @Test func v1FilesSplitBetweenTheMemoryAndThePidsHierarchy() {
        #expect(v1.procsFiles("ci-1", slot: 2) == ["/sys/fs/cgroup/memory/ci-1/slot2/cgroup.procs",
                                                  "/sys/fs/cgroup/pids/ci-1/slot2/cgroup.procs"])
        #expect(v1.ownerFile("ci-1") == "/sys/fs/cgroup/pids/ci-1/zygote/pids.current")
        #expect(v1.oomFile("ci-1", slot: 0) == "/sys/fs/cgroup/memory/ci-1/slot0/memory.oom_control")
        #expect(v1.killFile("ci-1", slot: 0) == nil)
        #expect(v1.procsFile("ci-1", slot: 0) == "/sys/fs/cgroup/pids/ci-1/slot0/cgroup.procs")
        #expect(v1.limitWrites("ci-1", slot: 1, memoryBytes: 1 << 30, processes: 64) == [
            CgroupWrite("/sys/fs/cgroup/memory/ci-1/slot1/memory.limit_in_bytes", "1073741824"),
            CgroupWrite("/sys/fs/cgroup/pids/ci-1/slot1/pids.max", "64"),
        ])
    }

    @Test func v2FilesAreInOneGroupPerSlot() {
        #expect(v2.procsFiles("ci-1", slot: 0) == ["/sys/fs/cgroup/svc/ci-1/slot0/cgroup.procs"])
        #expect(v2.ownerFile("ci-1") == "/sys/fs/cgroup/svc/ci-1/zygote/cgroup.events")
        #expect(v2.oomFile("ci-1", slot: 3) == "/sys/fs/cgroup/svc/ci-1/slot3/memory.events")
        #expect(v2.killFile("ci-1", slot: 3) == "/sys/fs/cgroup/svc/ci-1/slot3/cgroup.kill")
        #expect(v2.emptinessFile("ci-1", slot: 3) == "/sys/fs/cgroup/svc/ci-1/slot3/cgroup.events")
        #expect(v2.limitWrites("ci-1", slot: 0, memoryBytes: 512 << 20, processes: 0) == [
            CgroupWrite("/sys/fs/cgroup/svc/ci-1/slot0/memory.max", "536870912"),
            CgroupWrite("/sys/fs/cgroup/svc/ci-1/slot0/memory.swap.max", "0", required: false),
            CgroupWrite("/sys/fs/cgroup/svc/ci-1/slot0/pids.max", "max"),
        ])
    }

    @Test func limitValuesForNoLimit() {
        #expect(CgroupLayout.memoryValue(0, .v1) == "-1")
        #expect(CgroupLayout.memoryValue(-5, .v2) == "max")
        #expect(CgroupLayout.processValue(-1) == "max")
        #expect(CgroupLayout.processValue(256) == "256")
    }

    @Test func ownershipIsReadFromCountsThatEveryNamespaceSees() {
        #expect(v1.ownerAlive("2\n") == true)
        #expect(v1.ownerAlive("0\n") == false)
        #expect(v1.ownerAlive("") == nil)
        #expect(v1.ownerAlive("max") == nil)
        #expect(v1.ownerAlive(nil) == nil)
        #expect(v2.ownerAlive("populated 1\nfrozen 0\n") == true)
        #expect(v2.ownerAlive("populated 0\nfrozen 0\n") == false)
        #expect(v2.ownerAlive("frozen 0\n") == nil)
        #expect(v2.ownerAlive(nil) == nil)
    }

    @Test func emptinessAndOomKills() {
        #expect(v1.isEmpty(""))
        #expect(!v1.isEmpty("4242\n"))
        #expect(v1.isEmpty(nil))
        #expect(v2.isEmpty("populated 0\nfrozen 0\n"))
        #expect(!v2.isEmpty("populated 1\nfrozen 0\n"))
        #expect(CgroupLayout.oomKills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3)
        #expect(CgroupLayout.oomKills("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n") == 1)
        #expect(CgroupLayout.oomKills("oom_kill three\n") == 0)
        #expect(CgroupLayout.oomKills(nil) == 0)
    }

    @Test func descriptionsSayVersionControllersAndWhere() {
        #expect(v1.description(name: "ci-1") == "v1 memory+pids at /sys/fs/cgroup/memory/ci-1 and /sys/fs/cgroup/pids/ci-1")
        #expect(v2.description(name: "ci-1").hasPrefix("v2 memory+pids at /sys/fs/cgroup/svc/ci-1 (in the delegated subtree"))
        let root = CgroupLayout(version: .v2, bases: ["/sys/fs/cgroup"])
        #expect(root.description(name: "ci-1").contains("hierarchy's root"))
    }
}
