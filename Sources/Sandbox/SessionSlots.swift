import Foundation
import Synchronization

/// The worker slots reserved for sessions' interpreters, and which session holds which.
///
/// A session keeps its slot (uid and cgroup) while its interpreter lives. When every slot is taken, the interpreter
/// idle the longest is stopped to make room: its session keeps its files and starts a fresh interpreter on its next
/// execution. When every interpreter is busy, callers wait, at most `maxWaiting` of them.
///
/// Slots beyond `maxLive` are for spare interpreters, forked and isolated before any session asked for them: a
/// session that needs a new interpreter adopts a spare, and gives the slot it was granted back.
final class SessionSlots: Sendable {
    struct Grant: Sendable {
        var slot: Int
        /// The session's interpreter was already running in this slot.
        var wasLive: Bool
        /// A session whose idle interpreter was stopped to free the slot; the caller tells the worker.
        var evicted: String?
    }

    private struct Entry {
        var slot: Int
        var lastUsed: UInt64
        var busy: Bool
    }

    private struct State {
        var free: [Int]
        var live: [String: Entry] = [:]
        /// Slots held by spare interpreters, with the child in each (nil while it is being forked). A child's exit
        /// frees its slot only while the slot is still that child's: once adopted and freed, the slot may already
        /// hold the next spare.
        var spares: [Int: UInt32?] = [:]
        var waiters: [CheckedContinuation<Void, Never>] = []
        var clock: UInt64 = 0
    }

    private let state: Mutex<State>
    private let maxWaiting: Int
    private let maxLive: Int
    private let maxSpares: Int

    /// `slots` holds `maxLive` slots for sessions' interpreters and the rest for spares.
    init(slots: Range<Int>, maxLive: Int, maxWaiting: Int) {
        precondition(maxLive > 0 && maxLive <= slots.count)
        state = Mutex(State(free: Array(slots.reversed())))
        self.maxLive = maxLive
        maxSpares = slots.count - maxLive
        self.maxWaiting = maxWaiting
    }

    var liveCount: Int { state.withLock { $0.live.count } }

    func acquire(session: String) async throws -> Grant {
        while true {
            try Task.checkCancellation()
            enum Step { case granted(Grant), wait, full }
            let step = state.withLock { s -> Step in
                s.clock += 1
                if var entry = s.live[session] {
                    // Executions of one session are serialized by the caller; a busy entry here is a bug upstream.
                    if entry.busy { return .wait }
                    entry.busy = true
                    entry.lastUsed = s.clock
                    s.live[session] = entry
                    return .granted(Grant(slot: entry.slot, wasLive: true, evicted: nil))
                }
                if s.live.count < maxLive, let slot = s.free.popLast() {
                    s.live[session] = Entry(slot: slot, lastUsed: s.clock, busy: true)
                    return .granted(Grant(slot: slot, wasLive: false, evicted: nil))
                }
                if let (victim, entry) = s.live.filter({ !$0.value.busy }).min(by: { $0.value.lastUsed < $1.value.lastUsed }) {
                    s.live[victim] = nil
                    s.live[session] = Entry(slot: entry.slot, lastUsed: s.clock, busy: true)
                    return .granted(Grant(slot: entry.slot, wasLive: false, evicted: victim))
                }
                return s.waiters.count >= maxWaiting ? .full : .wait
            }
            switch step {
            case .granted(let grant): return grant
            case .full: throw EngineError(.busy, "every session interpreter is busy and \(maxWaiting) executions are waiting")
            case .wait:
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    state.withLock { $0.waiters.append(c) }
                }
            }
        }
    }

    /// The execution is over. `alive`: the interpreter still runs (else its slot is freed).
    func release(session: String, alive: Bool) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if var entry = s.live[session] {
                if alive {
                    entry.busy = false
                    s.live[session] = entry
                } else {
                    s.live[session] = nil
                    s.free.append(entry.slot)
                }
            }
            return s.waiters.isEmpty ? nil : s.waiters.removeFirst()
        }
        waiter?.resume()
    }

    /// Forgets a session (deleted or expired); returns whether it held an interpreter slot.
    @discardableResult
    func remove(session: String) -> Bool {
        let (held, waiter) = state.withLock { s -> (Bool, CheckedContinuation<Void, Never>?) in
            guard let entry = s.live.removeValue(forKey: session) else { return (false, nil) }
            s.free.append(entry.slot)
            return (true, s.waiters.isEmpty ? nil : s.waiters.removeFirst())
        }
        waiter?.resume()
        return held
    }

    /// A slot for a spare interpreter, when one is free and fewer spares than their share exist.
    func takeSpare() -> Int? {
        state.withLock { s in
            guard s.spares.count < maxSpares, let slot = s.free.popLast() else { return nil }
            s.spares[slot] = .some(nil)
            return slot
        }
    }

    /// A spare interpreter ended without being adopted: its slot is free again. False when it had been adopted
    /// (the session it went to holds the slot now).
    @discardableResult
    func releaseSpare(_ slot: Int, child: UInt32?) -> Bool {
        let (released, waiter) = state.withLock { s -> (Bool, CheckedContinuation<Void, Never>?) in
            guard let holder = s.spares[slot], holder == child else { return (false, nil) }
            s.spares[slot] = nil
            s.free.append(slot)
            return (true, s.waiters.isEmpty ? nil : s.waiters.removeFirst())
        }
        waiter?.resume()
        return released
    }

    /// The session (granted a slot, no interpreter yet) takes the spare interpreter in `spare` instead: that
    /// slot becomes the session's, and the one it was granted is free again.
    func adopt(session: String, spare: Int) -> Bool {
        let (adopted, waiter) = state.withLock { s -> (Bool, CheckedContinuation<Void, Never>?) in
            guard var entry = s.live[session], s.spares[spare] != nil else { return (false, nil) }
            s.spares[spare] = nil
            s.free.append(entry.slot)
            entry.slot = spare
            s.live[session] = entry
            return (true, s.waiters.isEmpty ? nil : s.waiters.removeFirst())
        }
        waiter?.resume()
        return adopted
    }

    /// The spare forked into `slot` is `child`.
    func spareForked(_ slot: Int, child: UInt32) {
        state.withLock { s in if s.spares[slot] != nil { s.spares[slot] = .some(child) } }
    }

    /// The slot of a session's running interpreter, if it has one.
    func slot(of session: String) -> Int? {
        state.withLock { $0.live[session]?.slot }
    }
}
