import Foundation
import InterpreterCore
import Synchronization
import Testing
@testable import Sandbox
#if canImport(Glibc)
import Glibc
#endif

/// Where workers on this host make their groups, as the worker's planner sees it from here.
private enum HostCgroups {
    static let bases: [String] = {
        let host = CgroupHost(
            mounts: CgroupText.mounts(mountinfo: (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""),
            membership: CgroupText.membership((try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""),
            controllersAt: { dir in
                (try? String(contentsOfFile: "\(dir)/cgroup.controllers", encoding: .utf8)).map(CgroupText.controllers)
            },
            writable: { access($0, W_OK) == 0 })
        return Array(Set(CgroupPlanner.plan(host, leaf: "codeinterp.leaf").candidates.flatMap(\.bases))).sorted()
    }()

    static var usable: Bool { getuid() == 0 && !bases.isEmpty }

    /// The worker groups under every base whose name starts with `prefix`, as full paths.
    static func groups(_ prefix: String) -> [String] {
        bases.flatMap { base in
            ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).filter { $0.hasPrefix(prefix) }
                .map { "\(base)/\($0)" }
        }.sorted()
    }

    static func inode(_ path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    /// The file of a slot group that holds its memory limit (v1 or v2).
    static func memoryLimit(_ slotDir: String) -> String? {
        for file in ["memory.limit_in_bytes", "memory.max"] {
            if let text = try? String(contentsOfFile: "\(slotDir)/\(file)", encoding: .utf8) {
                return text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return nil
    }
}

/// Engines of their own whose worker is started through a small script: with a cgroup name of the test's, and
/// optionally in a pid namespace of its own, as another container or a CLI run under `unshare` would be.
private func cgroupEngine(_ label: String, cgroupName: String, ownPidNamespace: Bool, uidBase: UInt32) throws -> ExecutionEngine {
    var config = EngineFixture.smallConfiguration("cgroups-\(label)", uidBase: uidBase, preload: [])
    // Slot groups are emptied between executions only without children waiting in them.
    config.warmChildren = 0
    let script = "\(config.dataDirectory)-worker.sh"
    let launch = ownPidNamespace ? "exec unshare --pid --fork --kill-child --mount-proc " : "exec "
    // Close-on-exec: a process another suite forks meanwhile must not hold the script open for writing, or
    // executing it fails with ETXTBSY.
    let fd = open(script, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
    #expect(fd >= 0)
    let text = Array("#!/bin/sh\n\(launch)\(config.workerExecutable) --cgroup-name \(cgroupName) \"$@\"\n".utf8)
    #expect(write(fd, text, text.count) == text.count)
    close(fd)
    config.workerExecutable = script
    return try ExecutionEngine(configuration: config)
}

/// Starts the engine; a fork elsewhere in the test process may still hold the fresh script open for a moment.
private func start(_ engine: ExecutionEngine) async throws {
    for attempt in 1...20 {
        do {
            try await engine.start()
            return
        } catch let error as EngineError where error.message.contains("Text file busy") && attempt < 20 {
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

@Suite("cgroups belong to the instance that made them", .serialized, .enabled(if: HostCgroups.usable))
struct CgroupTests {
    /// Not "codeinterp-...": other instances on this host (the default name's cleanup covers "codeinterp-")
    /// must not be able to touch these groups, so that what happens to them is the two engines' doing.
    let tag = "codeinterpt\(UInt32.random(in: 0...UInt32.max))"

    @Test func twoEnginesInSiblingPidNamespacesServeTogetherAndLeaveNoGroup() async throws {
        // B's cleanup of stale groups ("codeinterptN-") covers A's names ("codeinterptN-a-..."): exactly the
        // case where an instance in another pid namespace used to take a live instance's idle slot groups.
        let a = try cgroupEngine("a", cgroupName: "\(tag)-a", ownPidNamespace: false, uidBase: 2_300_000)
        let b = try cgroupEngine("b", cgroupName: tag, ownPidNamespace: true, uidBase: 2_400_000)
        var stopped = false
        defer { if !stopped { a.shutdown(); b.shutdown() } }

        try await start(a)
        let groupsOfA = HostCgroups.groups("\(tag)-a-")
        #expect(!groupsOfA.isEmpty)
        let slotsOfA = groupsOfA.flatMap { group in (0..<2).map { "\(group)/slot\($0)" } }
        let inodesBefore = slotsOfA.map(HostCgroups.inode)
        #expect(inodesBefore.allSatisfy { $0 != nil })

        try await start(b)
        let groupsOfB = HostCgroups.groups("\(tag)-").filter { !$0.contains("\(tag)-a-") }
        #expect(!groupsOfB.isEmpty)

        // Both serve at the same time.
        let code = "import time, os\ntime.sleep(1)\nprint('alive', os.getpid())"
        async let fromA = a.execute(ExecutionRequest(code: code, timeoutSeconds: 20))
        async let fromB = b.execute(ExecutionRequest(code: code, timeoutSeconds: 20))
        let (ra, rb) = try await (fromA, fromB)
        #expect(ra.status == .ok, "\(ra.stderr) \(ra.error.map { "\($0.value)" } ?? "")")
        #expect(rb.status == .ok, "\(rb.stderr) \(rb.error.map { "\($0.value)" } ?? "")")
        #expect(ra.stdout.hasPrefix("alive"))
        #expect(rb.stdout.hasPrefix("alive"))
        // A's groups are the ones A made: B did not remove them (to be made again on A's next fork).
        #expect(slotsOfA.map(HostCgroups.inode) == inodesBefore)
        let again = try await a.execute(ExecutionRequest(code: "print(6 * 7)"))
        #expect(again.stdout == "42\n")

        a.shutdown()
        b.shutdown()
        stopped = true
        #expect(HostCgroups.groups("\(tag)-") == [], "groups left after both engines stopped")
    }

    @Test func aSlotGroupRemovedFromUnderARunningEngineIsMadeAgain() async throws {
        let engine = try cgroupEngine("c", cgroupName: "\(tag)-c", ownPidNamespace: false, uidBase: 2_500_000)
        var stopped = false
        defer { if !stopped { engine.shutdown() } }
        try await start(engine)
        let first = try await engine.execute(ExecutionRequest(code: "print('first')", memoryBytes: 300 << 20))
        #expect(first.status == .ok)
        let slots = HostCgroups.groups("\(tag)-c-").map { "\($0)/slot0" }
        #expect(!slots.isEmpty)
        let limits = slots.map(HostCgroups.memoryLimit)
        #expect(limits.contains { $0 != nil && $0 != "max" })

        // What another instance's faulty cleanup, or an operator, does: the slot's groups go away.
        for slot in slots {
            var removed = false
            for _ in 0..<100 where !removed {
                removed = rmdir(slot) == 0
                if !removed { usleep(20_000) }
            }
            #expect(removed, "rmdir \(slot): \(String(cString: strerror(errno)))")
        }

        let second = try await engine.execute(ExecutionRequest(code: "print('second')", memoryBytes: 300 << 20))
        #expect(second.status == .ok, "\(second.stderr) \(second.error.map { "\($0.value)" } ?? "")")
        #expect(second.stdout == "second\n")
        #expect(slots.allSatisfy { access($0, F_OK) == 0 })
        // Limits are written when a child is made for the slot (ahead of demand): the recreated group has one again.
        #expect(slots.map(HostCgroups.memoryLimit).contains { $0 != nil && $0 != "max" }, "the recreated group has no memory limit")

        engine.shutdown()
        stopped = true
        #expect(HostCgroups.groups("\(tag)-c-") == [])
    }

    /// A stateless slot goes to the next execution only once its group counts no process: a leftover the child's
    /// end did not take along (here a process of the zygote's namespace moved into the slot, as one would stay on
    /// a host without a pid namespace per child) is killed before the slot is handed out, not left to share the
    /// next execution's uid and group.
    @Test func aSlotIsFreedOnlyOnceItsGroupIsEmpty() async throws {
        let engine = EngineFixture.engine
        _ = try await EngineFixture.run("1")
        guard let worker = engine.workerProcessID,
              let zygote = (try? String(contentsOfFile: "/proc/\(worker)/task/\(worker)/children", encoding: .utf8))?
                .split(separator: " ").first.flatMap({ Int32($0) }) else {
            Issue.record("cannot find the zygote")
            return
        }
        // A process in the zygote's pid namespace (which it can see and kill), outside the execution's.
        let leftover = Process()
        leftover.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        leftover.arguments = ["--target", "\(zygote)", "--pid", "--", "/bin/sleep", "120"]
        try leftover.run()
        defer { if leftover.isRunning { leftover.terminate() } }
        var sleeper: Int32?
        for _ in 0..<500 where sleeper == nil {
            sleeper = (try? String(contentsOfFile: "/proc/\(leftover.processIdentifier)/task/\(leftover.processIdentifier)/children",
                                   encoding: .utf8))?.split(separator: " ").first.flatMap { Int32($0) }
            if sleeper == nil { usleep(10_000) }
        }
        guard let sleeper else {
            Issue.record("nsenter started no process")
            return
        }

        let moved = MovedInto()
        let r = try await engine.execute(ExecutionRequest(
            code: "import time\nprint(open('/proc/self/cgroup').read(), flush=True)\ntime.sleep(3)\n'done'")) { kind, bytes in
            guard kind == .stdout, moved.group.withLock({ $0 == nil }) else { return }
            // v2: "0::/path"; v1: a line per hierarchy, the pids one counts the slot's processes.
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").map { $0.split(separator: ":", maxSplits: 2) }
            let group = lines.first { $0.count == 3 && $0[1] == "pids" }.map { "/sys/fs/cgroup/pids\($0[2])" }
                ?? lines.first { $0.count == 3 && $0[1].isEmpty }.map { "/sys/fs/cgroup\($0[2])" }
            guard let group else { return }
            let written = (try? "\(sleeper)".write(toFile: group + "/cgroup.procs", atomically: false, encoding: .utf8)) != nil
            moved.group.withLock { $0 = written ? group : "" }
        }
        #expect(r.status == .ok && r.result?["text/plain"] == "'done'", "\(r.status) \(r.stderr)")
        guard let group = moved.group.withLock({ $0 }), !group.isEmpty else {
            Issue.record("could not move a process into the execution's slot group")
            return
        }
        // The slot was emptied for the next execution: the leftover was killed, well before its 120 s.
        leftover.waitUntilExit()
        #expect(leftover.terminationReason == .uncaughtSignal && leftover.terminationStatus == SIGKILL,
                "the leftover in \(group) ended with \(leftover.terminationReason.rawValue)/\(leftover.terminationStatus)")
    }
}

/// Where the test moved its leftover process (set once, from the output callback).
private final class MovedInto: Sendable {
    let group = Mutex<String?>(nil)
}
