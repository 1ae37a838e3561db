import Synchronization

/// Concurrency slots of the worker. A slot is a uid and a cgroup pair; an execution holds one from fork to the last
/// collected file, and waits in FIFO order when all are taken.
final class SlotPool: Sendable {
    private struct State {
        var free: [Int]
        var waiters: [(id: UInt64, continuation: CheckedContinuation<Int, any Error>)] = []
        var nextWaiter: UInt64 = 0
    }
    private let state: Mutex<State>
    private let maxWaiting: Int

    init(count: Int, maxWaiting: Int = .max) {
        state = Mutex(State(free: Array((0..<count).reversed())))
        self.maxWaiting = maxWaiting
    }

    func acquire() async throws -> Int {
        let waiterId = state.withLock { s -> UInt64 in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int, any Error>) in
                let slot: Int?? = state.withLock { s in
                    if let slot = s.free.popLast() { return slot }
                    if s.waiters.count >= maxWaiting { return .some(nil) }
                    s.waiters.append((waiterId, c))
                    return nil
                }
                switch slot {
                case .some(.some(let slot)): c.resume(returning: slot)
                case .some(.none):
                    c.resume(throwing: EngineError(.busy, "all \(maxWaiting) places in the execution queue are taken"))
                case .none: break
                }
            }
        } onCancel: {
            let c = state.withLock { s -> CheckedContinuation<Int, any Error>? in
                guard let i = s.waiters.firstIndex(where: { $0.id == waiterId }) else { return nil }
                return s.waiters.remove(at: i).continuation
            }
            c?.resume(throwing: CancellationError())
        }
    }

    /// A free slot now, or nil (never waits; waiters keep their turn).
    func tryAcquire() -> Int? {
        state.withLock { s in s.waiters.isEmpty ? s.free.popLast() : nil }
    }

    func release(_ slot: Int) {
        let waiter = state.withLock { s -> CheckedContinuation<Int, any Error>? in
            if s.waiters.isEmpty {
                s.free.append(slot)
                return nil
            }
            return s.waiters.removeFirst().continuation
        }
        waiter?.resume(returning: slot)
    }
}
