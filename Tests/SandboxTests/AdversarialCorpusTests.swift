import Foundation
import InterpreterCore
import Synchronization
import Testing
@testable import Sandbox

/// Every case of `AdversarialCorpus`: the attack has its outcome, what it leaves behind is checked, and a benign
/// execution after it still works. scripts/test runs this as root and as an unprivileged user, inside an outer
/// pid + network namespace.
@Suite("Adversarial corpus", .serialized)
struct AdversarialCorpusTests {
    @Test func theCorpusCoversEveryCategory() {
        let cases = AdversarialCorpus.cases
        #expect(cases.count >= 80)
        #expect(Set(cases.map(\.name)).count == cases.count, "two cases share a name")
        for category in [HostileCase.Category.escape, .data, .network, .resources, .persistence] {
            #expect(cases.contains { $0.category == category }, "no \(category.rawValue) case")
        }
    }

    @Test(arguments: AdversarialCorpus.cases)
    func isContained(_ hostile: HostileCase) async throws {
        let engine = EngineFixture.engine
        var neighbour: Task<ExecutionResult, any Error>?
        if let code = hostile.neighbour {
            let ready = ReadySignal()
            neighbour = Task {
                // Released either way: a neighbour that ended without getting ready must not hang the test.
                defer { ready.fire(ready: false) }
                return try await engine.execute(ExecutionRequest(code: code, timeoutSeconds: 30)) { kind, bytes in
                    if kind == .stdout, String(decoding: bytes, as: UTF8.self).contains("ready") { ready.fire(ready: true) }
                }
            }
            guard await ready.wait() else {
                Issue.record("the neighbour of \(hostile.name) never got ready: \(String(describing: try? await neighbour?.value))")
                return
            }
        }
        let r = try await EngineFixture.run(hostile.code, timeout: hostile.timeout)
        neighbour?.cancel()
        _ = try? await neighbour?.value

        if let gap = hostile.knownGap {
            withKnownIssue(Comment(rawValue: gap)) { Self.expect(r, hostile) }
        } else {
            Self.expect(r, hostile)
            if let problem = try hostile.check?(r) { Issue.record("\(hostile.name): \(problem)") }
        }
        if let then = hostile.then {
            let after = try await EngineFixture.run(then.code)
            #expect(after.status == .ok && after.result?["text/plain"] == then.expect,
                    "after \(hostile.name): \(after.status) \(after.result?["text/plain"] ?? "") \(after.error.map { "\($0.name): \($0.value)" } ?? "")")
        }
        let benign = try await EngineFixture.run("import numpy as np\nint(np.arange(10).sum())")
        #expect(benign.status == .ok && benign.result?["text/plain"] == "45",
                "a benign execution after \(hostile.name): \(benign.status) \(benign.error.map { "\($0.name): \($0.value)" } ?? "")")
    }

    static func expect(_ r: ExecutionResult, _ hostile: HostileCase) {
        let seen = "\(r.status.rawValue) \(r.blockedSyscall ?? "") value=\(r.result?["text/plain"] ?? "nil") "
            + (r.error.map { "\($0.name): \($0.value.prefix(300))" } ?? "") + (r.status == .ok ? "" : " stderr: \(r.stderr.suffix(300))")
        let why = Comment(rawValue: "\(hostile.name) must end \(hostile.expect) (\(hostile.why)); it ended \(seen)")
        switch hostile.expect {
        case .blocked(let call):
            #expect(r.status == .blockedSyscall && r.blockedSyscall == call, why)
        case .value(let reprs):
            #expect(r.status == .ok && reprs.contains(r.result?["text/plain"] ?? "<no value>"), why)
        case .raises(let name):
            #expect(r.status == .error && r.error?.name == name, why)
        case .stopped(let status):
            #expect(r.status == status, why)
        }
    }
}

/// Fired once (by the neighbour's output, or by its end), awaited by the test: whether it got ready.
final class ReadySignal: Sendable {
    private struct State {
        var outcome: Bool?
        var waiters: [CheckedContinuation<Bool, Never>] = []
    }
    private let state = Mutex(State())

    func fire(ready: Bool) {
        let (waiters, outcome) = state.withLock { s -> ([CheckedContinuation<Bool, Never>], Bool) in
            if s.outcome == nil { s.outcome = ready }
            defer { s.waiters = [] }
            return (s.waiters, s.outcome!)
        }
        for w in waiters { w.resume(returning: outcome) }
    }

    func wait() async -> Bool {
        await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let outcome = state.withLock { s -> Bool? in
                if s.outcome == nil { s.waiters.append(c) }
                return s.outcome
            }
            if let outcome { c.resume(returning: outcome) }
        }
    }
}
