import Synchronization

/// Bounds the executions this server has accepted: `running` may run, `queued` more may wait; beyond that a
/// request is refused at once (429) instead of piling up behind the engine's slots.
final class ExecutionGate: Sendable {
    private let count = Mutex(0)
    let capacity: Int

    init(running: Int, queued: Int) {
        capacity = max(1, running) + max(0, queued)
    }

    func tryEnter() -> Bool {
        count.withLock { n in
            guard n < capacity else { return false }
            n += 1
            return true
        }
    }

    func leave() {
        count.withLock { $0 -= 1 }
    }

    var inFlight: Int { count.withLock { $0 } }
}

/// A place in the execution gate, given back when the last holder (the handler, or the streaming body and its
/// task) lets go of it, even if a response body is never written.
final class GateTicket: Sendable {
    let gate: ExecutionGate
    init(_ gate: ExecutionGate) { self.gate = gate }
    deinit { gate.leave() }
}
