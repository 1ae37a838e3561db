import Foundation
import InterpreterCore
import Testing
@testable import Sandbox

/// Stateless executions run in children forked and isolated before their request came: each is used once.
@Suite("Warm children", .serialized)
struct WarmPoolTests {
    let engine = EngineFixture.engine

    /// Waits (bounded) until `condition` holds; the pool refills in the background.
    func eventually(_ seconds: Double = 30, _ condition: () -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    @Test func executionsAfterTheFirstFindAWarmChild() async throws {
        _ = try await EngineFixture.run("1")
        #expect(try await eventually { engine.pool.stats.idle >= engine.pool.target })
        let r = try await EngineFixture.run("2")
        #expect(r.status == .ok)
        #expect(r.usage.warmStart == true)
        #expect(r.usage.queueMs != nil && r.usage.startMs != nil && r.usage.runMs != nil && r.usage.collectMs != nil && r.usage.storeMs != nil)
    }

    @Test func consecutiveExecutionsShareNoProcessFileVariableOrRandomState() async throws {
        let code = """
            import os, random, sys, numpy
            leftovers = (os.path.exists('left.txt'), 'planted' in globals() or hasattr(sys, 'planted'))
            open('left.txt', 'w').write('x')
            planted = sys.planted = True
            (os.getpid(), random.random(), float(numpy.random.rand()), leftovers)
            """
        var seen: [String] = []
        for _ in 0..<4 {
            let r = try await EngineFixture.run(code)
            #expect(r.status == .ok, "\(r.error?.value ?? "")")
            let text = try #require(r.result?["text/plain"])
            #expect(text.hasSuffix("(False, False))"), "state of an earlier execution is visible: \(text)")
            seen.append(text)
        }
        // pid 1 of its own namespace every time (a fresh process: nothing planted in `sys` survived), other random
        // numbers every time.
        #expect(seen.allSatisfy { $0.hasPrefix("(1, ") })
        let parts = seen.map { $0.dropFirst().split(separator: ",").prefix(3).map { $0.trimmingCharacters(in: .whitespaces) } }
        for i in 1..<3 { #expect(Set(parts.map { $0[i] }).count == seen.count, "repeated across executions: \(parts.map { $0[i] })") }
    }

    @Test func aWaitingChildThatDiesIsReplaced() async throws {
        // An engine of its own: killing the shared engine's waiting children could hit one a neighbour just took.
        let engine = try ExecutionEngine(configuration: EngineFixture.smallConfiguration("pool", uidBase: 2_600_000, preload: []))
        defer { engine.shutdown() }
        _ = try await engine.execute(ExecutionRequest(code: "1"))
        #expect(try await eventually { engine.pool.stats.idle >= 1 })
        let victims = engine.pool.idleChildren
        #expect(!victims.isEmpty)
        for v in victims { v.kill() }
        for v in victims { _ = await v.waitForExit() }
        #expect(try await eventually { engine.pool.stats.idle >= engine.pool.target }, "the pool did not refill: \(engine.pool.stats)")
        #expect(Set(engine.pool.idleChildren.map(\.id)).isDisjoint(with: victims.map(\.id)))
        let r = try await engine.execute(ExecutionRequest(code: "'after'"))
        #expect(r.status == .ok && r.result?["text/plain"] == "'after'")
        #expect(r.usage.warmStart == true)
    }

    @Test func anExecutionThatFindsThePoolEmptyTakesTheChildBeingForkedForIt() async throws {
        // Back to back, each execution arrives while the child forked to replace the last one is still being made
        // (or is ready): it takes that one, it does not fork a second child to race the first for the CPU.
        let engine = try ExecutionEngine(configuration: EngineFixture.smallConfiguration("pool-wait", uidBase: 2_650_000, preload: []))
        defer { engine.shutdown() }
        let runs = 6
        for i in 0..<runs {
            let r = try await engine.execute(ExecutionRequest(code: "\(i)"))
            #expect(r.status == .ok && r.result?["text/plain"] == "\(i)")
            #expect(r.usage.warmStart == true, "execution \(i) forked its own child: \(engine.pool.stats)")
        }
        let stats = engine.pool.stats
        #expect(stats.hits + stats.waitedForRefill == runs, "\(stats)")
    }

    @Test func theNextChildIsForkedAfterTheExecutionWhileAnotherWaits() async throws {
        // The fork and isolation of a replacement would take a core while the execution runs; with another child
        // still waiting nobody needs it sooner, so it starts when the execution is over.
        var config = EngineFixture.smallConfiguration("pool-after", uidBase: 2_750_000, preload: [])
        config.slots = 2
        let engine = try ExecutionEngine(configuration: config)
        defer { engine.shutdown() }
        _ = try await engine.execute(ExecutionRequest(code: "1"))
        #expect(try await eventually { engine.pool.stats.idle == engine.pool.target }, "\(engine.pool.stats)")
        #expect(engine.pool.target == 2)
        let spawned = engine.pool.stats.spawned
        // The execution outlasts the look by seconds, so a slow machine cannot make it end first.
        let running = Task { try await engine.execute(ExecutionRequest(code: "import time\ntime.sleep(6)\n'slept'")) }
        #expect(try await eventually(10) { engine.pool.stats.idle == 1 }, "\(engine.pool.stats)")
        try await Task.sleep(for: .seconds(1))
        #expect(engine.pool.stats.spawned == spawned, "a child was forked while the execution ran: \(engine.pool.stats)")
        let r = try await running.value
        #expect(r.status == .ok && r.result?["text/plain"] == "'slept'" && r.usage.warmStart == true)
        #expect(try await eventually { engine.pool.stats.idle == engine.pool.target }, "refilled after it: \(engine.pool.stats)")
        #expect(engine.pool.stats.spawned == spawned + 1)

        // The last waiting child taken: its replacement is forked at once, for the execution after.
        let first = Task { try await engine.execute(ExecutionRequest(code: "import time\ntime.sleep(2)")) }
        #expect(try await eventually(10) { engine.pool.stats.idle == 1 })
        let second = Task { try await engine.execute(ExecutionRequest(code: "import time\ntime.sleep(2)")) }
        #expect(try await eventually(10) { engine.pool.stats.spawned > spawned + 1 }, "\(engine.pool.stats)")
        _ = try await (first.value, second.value)
    }

    @Test func aChartTakesThePrimedChildWhichLeftNothingBehind() async throws {
        // One waiting child per pool renders a throwaway chart ahead (the zygote's pages a render writes are copied
        // off the request path). A chart takes that child; other code takes another and leaves it waiting.
        var config = EngineFixture.smallConfiguration("pool-primed", uidBase: 2_900_000, preload: ["matplotlib.pyplot"])
        config.slots = 2
        let engine = try ExecutionEngine(configuration: config)
        defer { engine.shutdown() }
        await engine.prewarm()
        #expect(try await eventually { engine.pool.stats.idle == engine.pool.target && engine.pool.stats.primedIdle == 1 },
                "\(engine.pool.stats)")
        let plain = try await engine.execute(ExecutionRequest(code: "6 * 7"))
        #expect(plain.status == .ok && plain.result?["text/plain"] == "42" && plain.usage.warmStart == true)
        #expect(engine.pool.stats.primedTakes == 0, "code that draws nothing took the primed child: \(engine.pool.stats)")

        // What the prime drew is gone: no figure open, none of its names, figure numbers from 1 again.
        let chart = try await engine.execute(ExecutionRequest(code: """
            import matplotlib.pyplot as plt
            left = (plt.get_fignums(), sorted(k for k in globals() if k.startswith('_prime')))
            fig, ax = plt.subplots()
            ax.plot([1, 4, 9])
            fig.savefig('/mnt/data/chart.png')
            (left, fig.number)
            """))
        #expect(chart.status == .ok, "\(chart.error?.value ?? "")")
        #expect(chart.result?["text/plain"] == "(([], []), 1)")
        #expect(engine.pool.stats.primedTakes == 1, "the chart did not get the primed child: \(engine.pool.stats)")
        let file = try #require(chart.files.first { $0.name == "chart.png" })
        let bytes = try Data(contentsOf: URL(fileURLWithPath: try #require(file.storePath)))
        #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(chart.displays.count == 1, "the chart's own figure is its only display: \(chart.displays)")

        // Once the chart is answered, another waiting child is primed for the next one.
        #expect(try await eventually { engine.pool.stats.primedIdle == 1 }, "\(engine.pool.stats)")

        // While executions run, no child is asked to prime (the render would take a core from them): a long one
        // takes an unprimed child, a chart the primed one, the last waiting; the refill forks at once, and the
        // child it keeps waits unprimed until both are over (cancelled here: they would run for a minute).
        let asked = engine.pool.stats.primesAsked
        let long = Task { try await engine.execute(ExecutionRequest(code: "import time\ntime.sleep(60)")) }
        #expect(try await eventually { engine.pool.stats.idle == 1 }, "\(engine.pool.stats)")
        let drawing = Task { try await engine.execute(ExecutionRequest(code: "import time, matplotlib.pyplot as plt\nplt.plot([1, 2])\ntime.sleep(60)")) }
        #expect(try await eventually { engine.pool.stats.primedTakes == 2 }, "\(engine.pool.stats)")
        #expect(try await eventually { engine.pool.stats.idle >= 1 }, "the refill kept no child: \(engine.pool.stats)")
        try await Task.sleep(for: .milliseconds(500))
        #expect(engine.pool.stats.primesAsked == asked, "a child was primed while executions ran: \(engine.pool.stats)")
        long.cancel()
        drawing.cancel()
        _ = (await long.result, await drawing.result)
        #expect(try await eventually { engine.pool.stats.primedIdle == 1 }, "primed once quiet: \(engine.pool.stats)")
        #expect(engine.pool.stats.primesAsked == asked + 1)

        // Spare session interpreters are never primed: the pages would stay with the session all its life.
        #expect(engine.sessionPool.stats.idle >= 1 && engine.sessionPool.stats.primesAsked == 0, "\(engine.sessionPool.stats)")
    }

    @Test func thePoolRefillsAfterABurstLargerThanItself() async throws {
        let burst = engine.pool.target * 3
        let before = engine.pool.stats
        let results = try await withThrowingTaskGroup(of: ExecutionResult.self) { group in
            for i in 0..<burst { group.addTask { try await EngineFixture.run("import time\ntime.sleep(0.2)\n\(i)") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0.status == .ok }, "\(results.map(\.status))")
        #expect(Set(results.compactMap { $0.result?["text/plain"] }).count == burst)
        // Every execution took a child of its own: a waiting one or one forked on demand (other suites share the
        // pool, so at least `burst`).
        let after = engine.pool.stats
        #expect((after.hits - before.hits) + (after.misses - before.misses) >= burst, "\(before) → \(after)")
        #expect(try await eventually { engine.pool.stats.idle >= engine.pool.target }, "\(engine.pool.stats)")
    }

    @Test func aProfileChangedOnDiskTakesEffectForTheNextExecution() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ci-profile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: EngineFixture.packageRoot.appendingPathComponent("sandbox-profiles/default.json").path,
                                         toPath: dir + "/default.json")
        let path = dir + "/changing.json"
        // Open files is a limit the child sets on itself while it is made, ahead of the request.
        try #"{"extends": "default", "limits": {"open_files": 200}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        let code = "import resource\nresource.getrlimit(resource.RLIMIT_NOFILE)[0]"
        let first = try await EngineFixture.run(code, profile: path)
        #expect(first.status == .ok && first.result?["text/plain"] == "200")
        #expect(try await eventually { engine.pool.stats.idle >= 1 })
        try #"{"extends": "default", "limits": {"open_files": 100}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        let second = try await EngineFixture.run(code, profile: path)
        #expect(second.result?["text/plain"] == "100", "a waiting child of the old profile was used")
    }

    /// A new session's first cell runs in a spare interpreter forked ahead of it; the session's uploaded files
    /// are there, writable, and stay the session's when the interpreter is later replaced.
    @Test func aNewSessionStartsInASpareInterpreterWithItsFiles() async throws {
        let engine = try ExecutionEngine(configuration: EngineFixture.smallConfiguration("spare", uidBase: 2_700_000, preload: []))
        defer { engine.shutdown() }
        await engine.prewarm()
        #expect(try await eventually { engine.sessionPool.stats.idle >= 1 }, "no spare interpreter: \(engine.sessionPool.stats)")
        let spare = try #require(engine.sessionPool.idleChildren.first)

        let session = try engine.createSession(SessionOptions())
        _ = try engine.addSessionFile(sessionId: session.id, name: "in.txt", bytes: Array("uploaded".utf8))
        let first = try await engine.execute(ExecutionRequest(code: """
            import os
            text = open('in.txt').read()
            open('in.txt', 'a').write('+edited')
            open('out.txt', 'w').write('written')
            (text, os.getpid(), os.stat('in.txt').st_uid == os.getuid())
            """, sessionId: session.id))
        #expect(first.status == .ok, "\(first.error?.value ?? "")")
        #expect(first.result?["text/plain"] == "('uploaded', 1, True)")
        #expect(first.usage.warmStart == true)
        #expect(engine.state.withLock { $0.interpreters[session.id]?.child } === spare, "the cell did not run in the spare")
        #expect(Set(first.files.map(\.path)) == ["/mnt/data/in.txt", "/mnt/data/out.txt"])

        // An upload after the adoption lands in the directory the interpreter sees.
        _ = try engine.addSessionFile(sessionId: session.id, name: "later.txt", bytes: Array("later".utf8))
        let second = try await engine.execute(ExecutionRequest(code: "(text, open('later.txt').read(), open('in.txt').read())",
                                                               sessionId: session.id))
        #expect(second.result?["text/plain"] == "('uploaded', 'later', 'uploaded+edited')")

        // The pool made another spare; a second session takes it (one interpreter slot: the first session's
        // interpreter makes room), and the first session's files outlive its interpreter.
        #expect(try await eventually { engine.sessionPool.stats.idle >= 1 }, "no new spare: \(engine.sessionPool.stats)")
        let other = try engine.createSession(SessionOptions())
        let elsewhere = try await engine.execute(ExecutionRequest(code: "import os\nsorted(os.listdir('.'))", sessionId: other.id))
        #expect(elsewhere.result?["text/plain"] == "[]", "another session's files are visible")
        #expect(elsewhere.usage.warmStart == true)
        let back = try await engine.execute(ExecutionRequest(code: "open('in.txt').read() + open('out.txt').read()", sessionId: session.id))
        #expect(back.status == .ok, "\(back.error?.value ?? "")")
        #expect(back.result?["text/plain"] == "'uploaded+editedwritten'")
        #expect(back.stderr.contains("restarted"))
    }

    @Test func aSpareInterpreterKilledWhileWaitingIsReplaced() async throws {
        let engine = try ExecutionEngine(configuration: EngineFixture.smallConfiguration("spare-killed", uidBase: 2_800_000, preload: []))
        defer { engine.shutdown() }
        await engine.prewarm()
        #expect(try await eventually { engine.sessionPool.stats.idle >= 1 })
        let victims = engine.sessionPool.idleChildren
        for v in victims { v.kill() }
        for v in victims { _ = await v.waitForExit() }
        #expect(try await eventually { engine.sessionPool.stats.idle >= 1 }, "no spare after the kill: \(engine.sessionPool.stats)")
        #expect(Set(engine.sessionPool.idleChildren.map(\.id)).isDisjoint(with: victims.map(\.id)))
        let session = try engine.createSession(SessionOptions())
        let r = try await engine.execute(ExecutionRequest(code: "x = 41\nx + 1", sessionId: session.id))
        #expect(r.status == .ok && r.result?["text/plain"] == "42")
        #expect(r.usage.warmStart == true)
    }
}
